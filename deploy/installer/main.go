// Command vxvrf-installer puts the vxvrf plugin binaries into the CNI binary
// directory and renders this node's conflist into the CNI config directory,
// both atomically. The DaemonSet runs it with --watch; `make install` runs it
// with --once --root $(DESTDIR). See deploy/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vxvrf/cni/deploy/internal/install"
	"github.com/vxvrf/cni/pkg/buildinfo"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("vxvrf-installer: ")
	if err := run(os.Args[1:]); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("vxvrf-installer", flag.ContinueOnError)
	var (
		o        install.Options
		once     = fl.Bool("once", false, "install once and exit (bare host, make install)")
		watch    = fl.Bool("watch", false, "install, then keep re-rendering when the cluster config changes (DaemonSet)")
		dryRun   = fl.Bool("dry-run", false, "print this node's rendered conflist and exit; write nothing")
		interval = fl.Duration("interval", 5*time.Second, "how often --watch polls the cluster config")
	)
	applyPlugins := o.AddFlags(fl)
	fl.StringVar(&o.Config, "config", "", "cluster config (JSON); empty: install the binaries only")
	local := install.LocalFromEnv(os.Getenv)
	fl.StringVar(&o.Local.Name, "node-name", local.Name, "this node's name (default $NODE_NAME, else the hostname)")
	fl.StringVar(&o.Local.Address, "node-ip", local.Address, "this node's VTEP address (default $NODE_IP)")
	podCIDR := fl.String("pod-cidr", strings.Join(local.PodCIDRs, ","), "this node's pod CIDRs, comma-separated (default $POD_CIDR)")
	if done, err := install.ParseFlags(fl, args, "vxvrf-installer"); done {
		return err
	}
	applyPlugins()
	o.Local.PodCIDRs = install.LocalFromEnv(func(string) string { return *podCIDR }).PodCIDRs
	if o.Local.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: set NODE_NAME or --node-name: %w", err)
		}
		o.Local.Name = h
	}
	o.Lookup = net.LookupIP
	o.Logf = log.Printf

	switch {
	case *dryRun:
		if o.Config == "" {
			return errors.New("--dry-run needs --config")
		}
		_, out, err := o.Conflist()
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(out)
		return err
	case *once == *watch:
		return errors.New("give exactly one of --once and --watch")
	case *once:
		return o.Once()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Printf("%s: watching %s every %s (node %s)", buildinfo.About("vxvrf-installer"), o.Config, *interval, o.Local.Name)
	return o.Watch(ctx, *interval, nil)
}
