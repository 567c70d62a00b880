// Command cluster-demo is `make demo-cluster`: it builds a simulated cluster
// (three node namespaces on an underlay, a router with an external host
// behind it), runs the vxvrf chain through libcni on every node - the same
// conflist except each node's IPAM range and uplink address - puts pods on
// every node, prints a connectivity matrix (who reaches whom, per network
// and family, plus the gateway, the node and the external host), then DELs
// everything, GCs the networks away and removes the lab. It can run again
// at once.
//
// With a VRF kernel it runs two tenants, red and blue, with the same subnet
// in their own VRFs and VNIs, and the matrix shows red never reaches blue.
// Without VRF (this development kernel) it runs one dual-stack network with
// an anycast gateway and says so.
//
//	go run ./integration/cluster-demo -bin bin
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/integration/cluster"
	"github.com/vxvrf/cni/pkg/chain"
	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/pkg/netsim"
)

const labName = "demc"

func main() {
	bin := flag.String("bin", "bin", "directory holding the plugin binaries (CNI_PATH)")
	nodes := flag.Int("nodes", 3, "number of nodes")
	mode := flag.String("mode", cluster.Remotes, "BUM mode: remotes or group")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "cluster-demo: needs root (it creates network namespaces; the machine's own network is not touched)")
		os.Exit(2)
	}
	d := &demo{nodes: *nodes, mode: *mode}
	err := d.run(*bin)
	d.cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nFAILED: %v\n", err)
		os.Exit(1)
	}
	if d.failures > 0 {
		fmt.Fprintf(os.Stderr, "\nFAILED: %d check(s) failed (matrix cells marked *, or leftovers)\n", d.failures)
		os.Exit(1)
	}
	fmt.Println("\nOK: every cell as expected; DEL and GC left nothing behind.")
}

type demo struct {
	nodes    int
	mode     string
	c        *cluster.Cluster
	tmp      string
	failures int
	once     sync.Once
}

func (d *demo) cleanup() {
	d.once.Do(func() {
		if d.c != nil {
			if err := d.c.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "cluster-demo: removing the lab: %v\n", err)
			}
		}
		if d.tmp != "" {
			_ = os.RemoveAll(d.tmp)
		}
	})
}

func section(title string) { fmt.Printf("\n=== %s\n", title) }

func (d *demo) run(binDir string) error {
	bin, err := filepath.Abs(binDir)
	if err != nil {
		return err
	}
	for _, p := range naming.Stages() {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			return fmt.Errorf("plugin %s not in %s (make build): %w", p, bin, err)
		}
	}
	if d.tmp, err = os.MkdirTemp("", "vxvrf-demo-cluster-"); err != nil {
		return err
	}
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

	section("cluster")
	if d.c, err = cluster.New(labName, d.nodes, bin, d.tmp); err != nil {
		return fmt.Errorf("create the cluster: %w", err)
	}
	c := d.c
	for i, n := range c.Nodes {
		fmt.Printf("  node n%d: namespace %s, uplink eth0 %s/24, default via %s\n", i+1, n.Name, n.Addr, netsim.UnderlayGateway)
	}
	fmt.Printf("  router: namespace %s (underlay bridge, forwarding on, no route to pod subnets)\n", c.Router.Name)
	fmt.Printf("  external host: namespace %s, %s\n", c.External.Name, c.ExtAddr)
	vrf := c.Nodes[0].HasVRF()

	var specs []cluster.Spec
	if vrf {
		fmt.Println("  this kernel has VRF: two tenants, red and blue, same subnet, own VRF and VNI")
		for i, name := range []string{"red", "blue"} {
			specs = append(specs, cluster.Spec{Name: name, VNI: 100 + 100*i, Mode: d.mode, Subnet4: "10.50.0.0/16",
				Subnet6: "fd00:50::/64", Anycast: true, VRFTable: 100 + 100*i, Egress: true})
		}
	} else {
		fmt.Println("  this kernel has no VRF (CONFIG_NET_VRF): one network without VRF; tenants need VRF (make test-vrf runs them in a VM)")
		specs = append(specs, cluster.Spec{Name: "demo", VNI: 100, Mode: d.mode, Subnet4: "10.50.0.0/16", Subnet6: "fd00:50::/64", Anycast: true})
	}

	section("ADD (the same conflist on every node but the IPAM range)")
	var nets []*cluster.Network
	pods := map[string][]*cluster.Pod{}
	for _, s := range specs {
		n, err := c.Network(s)
		if err != nil {
			return err
		}
		nets = append(nets, n)
		for i := range c.Nodes {
			p, err := n.AddPod(i, s.Name)
			if err != nil {
				return err
			}
			pods[s.Name] = append(pods[s.Name], p)
			var addrs []string
			for _, ip := range p.IPs {
				addrs = append(addrs, ip.Address.String())
			}
			fmt.Printf("  %-14s on n%d: %s (gateway %s)\n", p.Name, i+1, strings.Join(addrs, " "), p.IP(true).Gateway)
		}
	}
	if vrf && len(nets) == 2 {
		// One more blue pod: an address that exists only in blue, so that
		// "red reaches it" could only happen across tenants.
		p, err := nets[1].AddPod(1, "blue2")
		if err != nil {
			return err
		}
		pods["blue"] = append(pods["blue"], p)
		fmt.Printf("  %-14s on n2: %s (only blue has this address)\n", p.Name, p.IP(true).Address)
	}

	if vrf {
		section("per-tenant conntrack zones (sysctl-firewall's conntrackZone, default: the VRF table)")
		for _, table := range []string{"raw", "mangle"} {
			out, err := c.Nodes[0].In("iptables", "-t", table, "-S", naming.ZoneChain)
			if err != nil {
				return err
			}
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				fmt.Printf("  n1 %-6s %s\n", table, l)
			}
		}
	}

	section("connectivity matrix (ok = reached, -- = not reached, ~ = that address is also one of the row's own network: its own pod answered; * = not what the design expects)")
	for _, n := range nets {
		for _, v4 := range []bool{true, false} {
			d.matrix(n, pods, v4)
		}
	}

	section("DEL, then GC with an empty attachment list on every node")
	for _, n := range nets {
		for _, p := range pods[n.Spec.Name] {
			if err := n.Del(p); err != nil {
				return fmt.Errorf("DEL %s: %w", p.Name, err)
			}
		}
	}
	for _, n := range nets {
		for i, ch := range n.Chains {
			if err := gc(ch); err != nil {
				return fmt.Errorf("GC %s on n%d: %w", n.Spec.Name, i+1, err)
			}
		}
	}
	for _, n := range nets {
		for i, ch := range n.Chains {
			var atts []chain.Attachment
			for _, p := range pods[n.Spec.Name] {
				if p.Node == i {
					atts = append(atts, p.Attachment())
				}
			}
			left := append(ch.NetworkLeftovers(c.Nodes[i].NS), ch.Leftovers(c.Nodes[i].NS, atts, c.NodeRoot(i))...)
			if len(left) > 0 {
				d.failures++
				fmt.Printf("  FAIL  %s on n%d left: %v\n", n.Spec.Name, i+1, left)
			} else {
				fmt.Printf("  ok    %s on n%d: no device, rule or state left\n", n.Spec.Name, i+1)
			}
		}
	}
	return nil
}

// gc runs GC with an empty attachment list: the network has left the node.
func gc(ch *chain.Chain) error {
	ctx, cancel := context.WithTimeout(context.Background(), cluster.Timeout)
	defer cancel()
	return ch.GC(ctx, []types.GCAttachment{})
}

// matrix prints, for network n and one family, who reaches whom: every pod
// of n (rows) to every pod of every network (columns), its gateway, its
// node, and the external host (IPv4: masqueraded egress).
func (d *demo) matrix(n *cluster.Network, pods map[string][]*cluster.Pod, v4 bool) {
	fam := "IPv4"
	if !v4 {
		fam = "IPv6"
	}
	type col struct {
		name string
		ip   func(from *cluster.Pod) net.IP
		from func(from *cluster.Pod) *netsim.NS
		want func(from *cluster.Pod) bool
		// same: the target is another tenant's pod whose address is also
		// one of from's own network (from reaches its own pod there).
		same func(from *cluster.Pod) bool
	}
	var cols []col
	// This network first, then the others.
	order := []string{n.Spec.Name}
	for _, name := range []string{"red", "blue", "demo"} {
		if _, ok := pods[name]; !ok {
			continue
		}
		if name != n.Spec.Name {
			order = append(order, name)
		}
	}
	for _, name := range order {
		for _, target := range pods[name] {
			target := target
			if target.IP(v4) == nil {
				continue
			}
			same := func(from *cluster.Pod) bool {
				if target.Net == from.Net {
					return false
				}
				for _, own := range pods[from.Net.Spec.Name] {
					if own.IP(v4) != nil && own.IP(v4).Address.IP.Equal(target.IP(v4).Address.IP) {
						return true
					}
				}
				return false
			}
			cols = append(cols, col{
				name: target.Name,
				ip:   func(*cluster.Pod) net.IP { return target.IP(v4).Address.IP },
				// Another tenant is never reached; where the very same
				// address exists in the own network, that own pod answers.
				want: func(from *cluster.Pod) bool { return target.Net == from.Net || same(from) },
				same: same,
			})
		}
	}
	cols = append(cols,
		col{name: "gateway", ip: func(p *cluster.Pod) net.IP { return p.IP(v4).Gateway }, want: func(*cluster.Pod) bool { return true }},
		col{name: "node->pod", ip: func(p *cluster.Pod) net.IP { return p.IP(v4).Address.IP },
			from: func(p *cluster.Pod) *netsim.NS { return d.c.Nodes[p.Node].NS }, want: func(*cluster.Pod) bool { return true }},
	)
	if v4 {
		cols = append(cols, col{name: "external", want: func(*cluster.Pod) bool { return true }})
	}
	fmt.Printf("\n  network %s, %s (rows: from; columns: to)\n", n.Spec.Name, fam)
	fmt.Printf("  %-14s", "")
	for i := range cols {
		fmt.Printf(" %4s", fmt.Sprintf("c%d", i+1))
	}
	fmt.Println()
	for _, from := range pods[n.Spec.Name] {
		if from.IP(v4) == nil {
			continue
		}
		fmt.Printf("  %-14s", from.Name)
		for _, cl := range cols {
			var ok bool
			switch {
			case cl.name == "external":
				peer, err := d.c.Egress(from.NS)
				ok = err == nil && peer.Equal(d.c.Nodes[from.Node].Addr)
			case cl.name == from.Name:
				fmt.Printf(" %4s", ".")
				continue
			case cl.name == "node->pod" && from.Net.Spec.VRFTable != 0:
				// Overlapping tenants: the node reaches each tenant's
				// pods through that tenant's VRF.
				_, err := d.c.Nodes[from.Node].In("ping", "-c1", "-W2", "-I", naming.VRFName(from.Net.Spec.Name), cl.ip(from).String())
				ok = err == nil
			default:
				src := from.NS
				if cl.from != nil {
					src = cl.from(from)
				}
				ok = cluster.Reaches(src, cl.ip(from))
			}
			mark := "--"
			if ok {
				mark = "ok"
				if cl.same != nil && cl.same(from) {
					mark = "~"
				}
			}
			if ok != cl.want(from) {
				mark += "*"
				d.failures++
			}
			fmt.Printf(" %4s", mark)
		}
		fmt.Println()
	}
	for i, cl := range cols {
		fmt.Printf("    c%d = %s\n", i+1, cl.name)
	}
	if v4 {
		fmt.Printf("    external = TCP to %s, which must see the node's uplink address (masquerade)\n", d.c.ExtAddr)
	}
}
