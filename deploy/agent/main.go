// Command vxvrf-agent is the node agent the DaemonSet runs: it installs the
// plugin binaries, renders this node's conflist from the cluster config and
// the Kubernetes Nodes, and keeps the VXLAN flood lists in step with the
// cluster (client-go informers). --uninstall removes what it installed.
// See deploy/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vxvrf/cni/deploy/internal/agent"
	"github.com/vxvrf/cni/deploy/internal/install"
	"github.com/vxvrf/cni/pkg/buildinfo"
)

func main() {
	log.SetFlags(log.LstdFlags | log.Lmsgprefix)
	log.SetPrefix("vxvrf-agent: ")
	if err := run(os.Args[1:]); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("vxvrf-agent", flag.ContinueOnError)
	var (
		cfg        agent.Config
		kubeconfig = fl.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file; empty: the in-cluster service account")
		healthAddr = fl.String("health-addr", "127.0.0.1:9466", "address of /healthz and /readyz (with --uninstall --wait: served once the node is clean); empty: none")
		uninstall  = fl.Bool("uninstall", false, "remove the conflist; once the node has no attachment of the network, also its shared devices, firewall objects, state and the binaries; then exit (or wait, with --wait)")
		wait       = fl.Bool("wait", false, "with --uninstall: stay running after the uninstall (a DaemonSet's pod must not exit)")
		chroot     = fl.String("chroot", "", "with --uninstall: the host's root mounted here; uninstall from inside it, so the plugins' GC finds the host's iptables and state directories")
	)
	o := &cfg.Install
	applyPlugins := o.AddFlags(fl)
	fl.StringVar(&o.Config, "config", "/etc/vxvrf/cluster.json", "cluster config (JSON): the conflist and optional per-node overrides")
	fl.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	fl.StringVar(&cfg.Family, "underlay-family", "", "ipv4 or ipv6: the family of the VTEP addresses (default: the family of this node's first InternalIP)")
	fl.DurationVar(&cfg.Resync, "resync", 10*time.Minute, "informer resync period: a full reconcile at least this often (0: never)")
	if done, err := install.ParseFlags(fl, args, "vxvrf-agent"); done {
		return err
	}
	applyPlugins()
	o.Logf = log.Printf
	cfg.Logf = log.Printf
	o.Local.Name = cfg.NodeName
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if *uninstall {
		name := agent.ConflistName(o.Config)
		if *chroot != "" {
			// The plugin names come from the image, before leaving it.
			names, err := o.PluginNames()
			if err != nil {
				return err
			}
			o.Plugins = names
			if err := syscall.Chroot(*chroot); err != nil {
				return fmt.Errorf("chroot %s: %w", *chroot, err)
			}
			if err := os.Chdir("/"); err != nil {
				return err
			}
		}
		rep, err := agent.Uninstall(ctx, o, name)
		for _, l := range rep.Lines() {
			log.Print(l)
		}
		if err != nil {
			return err
		}
		if *wait && len(rep.Attachments) > 0 {
			// Exit so the kubelet retries (with back-off) until the node
			// is drained; only a clean node keeps this pod running.
			return fmt.Errorf("not done: %d attachment(s) of the network left", len(rep.Attachments))
		}
		if *wait {
			log.Print("uninstall done; waiting for SIGTERM")
			if *healthAddr != "" {
				// Only now: a Ready uninstall pod means a clean node.
				go func() {
					if err := agent.ServeUninstalled(ctx, *healthAddr); err != nil {
						log.Print(err)
					}
				}()
			}
			<-ctx.Done()
		}
		return nil
	}

	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	rc.UserAgent = "vxvrf-agent/" + buildinfo.Version
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, client)
	if err != nil {
		return err
	}
	log.Printf("%s: node %s, cluster config %s, conflist dir %s", buildinfo.About("vxvrf-agent"), cfg.NodeName, o.Config, o.ConfDirPath())
	if *healthAddr != "" {
		go func() {
			if err := a.ServeHealth(ctx, *healthAddr); err != nil {
				log.Print(err)
				stop()
			}
		}()
	}
	return a.Run(ctx)
}
