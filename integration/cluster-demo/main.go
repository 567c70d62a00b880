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
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/integration/cluster"
	"github.com/vxvrf/cni/integration/demokit"
	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/pkg/naming"
)

const labName = "demc"

func main() {
	bin := flag.String("bin", "bin", "directory holding the plugin binaries (CNI_PATH)")
	nodes := flag.Int("nodes", 3, "number of nodes")
	mode := flag.String("mode", cluster.Remotes, "BUM mode: remotes or group")
	flag.Parse()
	d := &demo{Lab: demokit.Lab{Name: "cluster-demo"}, nodes: *nodes, mode: *mode}
	d.Main(func() error { return d.run(*bin) }, "matrix cells marked *, or leftovers",
		func() string { return "OK: every cell as expected; DEL and GC left nothing behind." })
}

type demo struct {
	demokit.Lab
	nodes int
	mode  string
}

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
	if d.Tmp, err = os.MkdirTemp("", "vxvrf-demo-cluster-"); err != nil {
		return err
	}
	defer d.RemoveOnSignal()()

	demokit.Section("cluster")
	if d.C, err = cluster.New(labName, d.nodes, bin, d.Tmp); err != nil {
		return fmt.Errorf("create the cluster: %w", err)
	}
	c := d.C
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

	demokit.Section("ADD (the same conflist on every node but the IPAM range)")
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
		demokit.Section("per-tenant conntrack zones (sysctl-firewall's conntrackZone, default: the VRF table)")
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

	demokit.Section("connectivity matrix (ok = reached, -- = not reached, ~ = that address is also one of the row's own network: its own pod answered; * = not what the design expects)")
	for _, n := range nets {
		for _, v4 := range []bool{true, false} {
			d.matrix(n, pods, v4)
		}
	}

	demokit.Section("DEL, then GC with an empty attachment list on every node")
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
				d.Failures++
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
			from: func(p *cluster.Pod) *netsim.NS { return d.C.Nodes[p.Node].NS }, want: func(*cluster.Pod) bool { return true }},
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
				peer, err := d.C.Egress(from.NS)
				ok = err == nil && peer.Equal(d.C.Nodes[from.Node].Addr)
			case cl.name == from.Name:
				fmt.Printf(" %4s", ".")
				continue
			case cl.name == "node->pod" && from.Net.Spec.VRFTable != 0:
				// Overlapping tenants: the node reaches each tenant's
				// pods through that tenant's VRF.
				_, err := d.C.Nodes[from.Node].In("ping", "-c1", "-W2", "-I", naming.VRFName(from.Net.Spec.Name), cl.ip(from).String())
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
				d.Failures++
			}
			fmt.Printf(" %4s", mark)
		}
		fmt.Println()
	}
	for i, cl := range cols {
		fmt.Printf("    c%d = %s\n", i+1, cl.name)
	}
	if v4 {
		fmt.Printf("    external = TCP to %s, which must see the node's uplink address (masquerade)\n", d.C.ExtAddr)
	}
}
