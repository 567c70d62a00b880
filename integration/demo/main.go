// Command demo runs the default conflist on a throwaway node: a node
// namespace with an uplink to an underlay namespace and two pod namespaces.
// It adds both pods through libcni, shows the results, proves traffic, draws
// what the chain built inside the node, then deletes everything, garbage
// collects and checks that nothing is left. It never touches this machine's
// own network namespace and exits non-zero when any step fails.
//
//	go run ./integration/demo -bin bin -conflist conflist/vxvrf.conflist
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/pkg/chain"
	"github.com/vxvrf/cni/pkg/inspect"
	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/pkg/netsim"
)

const labName = "demo"

func main() {
	bin := flag.String("bin", "bin", "directory holding the plugin binaries (CNI_PATH)")
	conflist := flag.String("conflist", "conflist/vxvrf.conflist", "the conflist to run")
	keepState := flag.Bool("host-state", false, "keep the conflist's state directories (default: a temp dir, removed at the end)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (it creates network namespaces; the machine's own network is not touched)")
		os.Exit(2)
	}
	d := &demo{bin: *bin, conflist: *conflist, hostState: *keepState}
	err := d.run()
	d.cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nFAILED: %v\n", err)
		os.Exit(1)
	}
	if d.failures > 0 {
		fmt.Fprintf(os.Stderr, "\nFAILED: %d check(s) failed\n", d.failures)
		os.Exit(1)
	}
	fmt.Println("\nOK: the chain wired two pods, traffic flowed, and DEL + GC left nothing behind.")
}

type demo struct {
	bin, conflist string
	hostState     bool

	lab      *netsim.Lab
	tmp      string
	failures int
	once     sync.Once
}

type pod struct {
	name string
	ns   *netsim.NS
	rt   chain.RuntimeConf
	res  *current.Result
	ips  []*current.IPConfig
	done bool // DEL ran
}

func section(title string) { fmt.Printf("\n=== %s\n", title) }

// check prints one outcome and counts failures.
func (d *demo) check(what string, err error) {
	if err != nil {
		d.failures++
		fmt.Printf("  FAIL  %s: %v\n", what, err)
		return
	}
	fmt.Printf("  ok    %s\n", what)
}

func (d *demo) cleanup() { d.once.Do(d.remove) }

func (d *demo) remove() {
	if d.lab != nil {
		if err := d.lab.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "demo: removing the lab: %v\n", err)
		}
	}
	if d.tmp != "" {
		_ = os.RemoveAll(d.tmp)
	}
}

func (d *demo) run() error {
	bin, err := filepath.Abs(d.bin)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(d.conflist)
	if err != nil {
		return err
	}
	if d.tmp, err = os.MkdirTemp("", "vxvrf-demo-"); err != nil {
		return err
	}
	if !d.hostState {
		// Keep this machine's /run clean: the node is throwaway, so is its state.
		if raw, err = chain.SetStateDirs(raw, filepath.Join(d.tmp, "node")); err != nil {
			return err
		}
	}
	list, err := chain.Parse(raw)
	if err != nil {
		return err
	}

	// SIGINT/SIGTERM: remove the lab before exiting.
	ctx := context.Background()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		if _, ok := <-sig; ok {
			fmt.Fprintln(os.Stderr, "\ninterrupted: removing the lab")
			d.cleanup()
			os.Exit(130)
		}
	}()

	section("lab")
	if d.lab, err = netsim.New(labName); err != nil {
		return fmt.Errorf("create lab: %w", err)
	}
	node, err := d.lab.AddNode("node")
	if err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	fmt.Printf("  node namespace %s: uplink %s %s/24, default via %s (underlay namespace %s)\n",
		node.Name, node.Uplink, node.Addr, netsim.UnderlayGateway, d.lab.Underlay.Name)
	pods := []*pod{{name: "pod1"}, {name: "pod2"}}
	for _, p := range pods {
		if p.ns, err = d.lab.AddNS(p.name); err != nil {
			return fmt.Errorf("create %s: %w", p.name, err)
		}
		p.rt = chain.RuntimeConf{ContainerID: labName + "-" + p.name, NetNS: p.ns.Path, IfName: "eth0"}
		fmt.Printf("  pod namespace %s (container ID %s)\n", p.ns.Name, p.rt.ContainerID)
	}
	c, err := chain.New(list, []string{bin}, filepath.Join(d.tmp, "cache"), node.NetNS)
	if err != nil {
		return err
	}
	var stages []string
	for _, p := range list.Plugins {
		stages = append(stages, p.Network.Type)
	}
	fmt.Printf("  network %q, cniVersion %s (libcni's pick), chain: %s\n", list.Name, list.CNIVersion, strings.Join(stages, " -> "))
	if !d.hostState {
		fmt.Printf("  state directories moved under %s (removed at the end; -host-state keeps the conflist's)\n", d.tmp)
	}

	section("kernel")
	vrf := probeVRF(node)
	if vrf {
		fmt.Println("  this kernel supports VRF")
	} else {
		fmt.Println("  this kernel has no VRF support: running without VRF")
	}

	op := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, time.Minute) }

	section("ADD")
	for _, p := range pods {
		cctx, cancel := op()
		res, err := c.Add(cctx, p.rt)
		cancel()
		if err != nil {
			return fmt.Errorf("ADD %s: %w", p.name, err)
		}
		if p.res, err = current.NewResultFromResult(res); err != nil {
			return err
		}
		p.ips = chain.PodIPs(p.res, p.rt.NetNS, p.rt.IfName)
		out, _ := json.MarshalIndent(res, "  ", "  ")
		fmt.Printf("  %s result:\n  %s\n", p.name, out)
		if len(p.ips) == 0 {
			return fmt.Errorf("ADD %s: the result gives the pod no address", p.name)
		}
	}
	if c.List.CNIVersion == "1.1.0" {
		d.check("STATUS", statusOf(c, op))
	}
	for _, p := range pods {
		cctx, cancel := op()
		d.check("CHECK "+p.name, c.Check(cctx, p.rt))
		cancel()
	}

	section("traffic")
	p1, p2 := pods[0], pods[1]
	for _, v4 := range []bool{true, false} {
		a, b := ipOf(p1, v4), ipOf(p2, v4)
		if a == nil || b == nil {
			continue
		}
		d.check(fmt.Sprintf("pod1 %s -> pod2 %s", a.Address.IP, b.Address.IP), ping(p1.ns, b.Address.IP))
		d.check(fmt.Sprintf("pod2 %s -> pod1 %s", b.Address.IP, a.Address.IP), ping(p2.ns, a.Address.IP))
		for _, p := range pods {
			ip := ipOf(p, v4)
			if ip.Gateway != nil {
				d.check(fmt.Sprintf("%s -> gateway %s", p.name, ip.Gateway), ping(p.ns, ip.Gateway))
			}
			d.check(fmt.Sprintf("node -> %s %s", p.name, ip.Address.IP), ping(node.NS, ip.Address.IP))
		}
	}

	section("what the chain built in the node " + node.Name)
	if err := picture(node); err != nil {
		d.check("draw the node", err)
	}
	for _, p := range pods {
		out, _ := p.ns.In("ip", "-br", "addr", "show", "dev", p.rt.IfName)
		routes, _ := p.ns.In("ip", "route")
		routes6, _ := p.ns.In("ip", "-6", "route")
		fmt.Printf("  %s: %s", p.name, out)
		for _, l := range strings.Split(strings.TrimSpace(string(routes)+string(routes6)), "\n") {
			if l != "" {
				fmt.Printf("        route %s\n", l)
			}
		}
	}

	section("DEL")
	for i := len(pods) - 1; i >= 0; i-- {
		p := pods[i]
		cctx, cancel := op()
		err := c.Del(cctx, p.rt)
		cancel()
		d.check("DEL "+p.name, err)
		p.done = err == nil
	}
	cctx, cancel := op()
	d.check("GC with an empty valid-attachments list (the network has no pods left)", c.GC(cctx, []types.GCAttachment{}))
	cancel()

	section("leftovers")
	var atts []chain.Attachment
	for _, p := range pods {
		a := chain.Attachment{RT: p.rt, Pod: p.ns}
		for _, ip := range p.ips {
			a.IPs = append(a.IPs, ip.Address.IP)
		}
		atts = append(atts, a)
	}
	var stateDirs []string
	if !d.hostState {
		stateDirs = append(stateDirs, filepath.Join(d.tmp, "node"))
	}
	left := append(c.Leftovers(node.NS, atts, stateDirs...), c.NetworkLeftovers(node.NS)...)
	for _, l := range left {
		d.check("nothing left", errors.New(l))
	}
	if len(left) == 0 {
		fmt.Println("  none: no veth, bridge, rule, route, lease, state or cache entry of the demo remains")
		if rules, err := chain.Ruleset(node.NS); err == nil && strings.Contains(rules, naming.Prefix) {
			fmt.Println("  (sysctl-firewall's empty project-wide hook chains stay; they are shared by all networks of a node)")
		}
	}
	if links, err := node.In("ip", "-br", "link"); err == nil {
		fmt.Printf("  links in the node now:\n%s", indent(string(links), "    "))
	}
	return nil
}

func statusOf(c *chain.Chain, op func() (context.Context, context.CancelFunc)) error {
	if c.List.CNIVersion != "1.1.0" {
		return nil
	}
	cctx, cancel := op()
	defer cancel()
	return c.Status(cctx)
}

func ipOf(p *pod, v4 bool) *current.IPConfig {
	for _, ip := range p.ips {
		if (ip.Address.IP.To4() != nil) == v4 {
			return ip
		}
	}
	return nil
}

func ping(from *netsim.NS, ip net.IP) error {
	_, err := from.In("ping", "-c1", "-W2", ip.String())
	return err
}

// probeVRF tries to create a VRF inside the node namespace.
func probeVRF(node *netsim.Node) bool {
	if _, err := node.In("ip", "link", "add", "vrfprobe", "type", "vrf", "table", "4242"); err != nil {
		return false
	}
	_, _ = node.In("ip", "link", "del", "vrfprobe")
	return true
}

// picture prints the node as vxvrf inspect reads it: the links as a tree
// of masters, the main and VRF routing tables and the chain's rules.
func picture(node *netsim.Node) error {
	return node.Do(func(ns.NetNS) error {
		r, err := inspect.Collect(nil, "")
		if err != nil {
			return err
		}
		r.WritePicture(os.Stdout)
		return nil
	})
}

func indent(s, pre string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(pre + l + "\n")
	}
	return b.String()
}

func grepLines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}
