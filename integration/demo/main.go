// Command demo is `make demo`: it runs a conflist on two throwaway nodes
// joined by VXLAN. It builds two node namespaces on an underlay (with a
// router and an external host behind it), renders the conflist for each node
// with vxvrf-installer (the renderer the DaemonSet uses), adds one pod per
// node through libcni, proves traffic (pod↔pod across the nodes through
// VXLAN, full-size packets with DF set, the gateway, the node, masqueraded
// egress), draws what the chain built on each node, then deletes
// everything, garbage collects, checks that nothing is left and removes the
// lab. It never touches this machine's own network namespace, removes the
// lab also on failure and on Ctrl-C, can run again at once, and exits
// non-zero when any step fails.
//
// On a kernel without VRF a conflist with a vrf object runs without it,
// and the demo says so; a conflist without vxlan gets one.
//
//	go run ./integration/demo -bin bin -conflist conflist/vrf-vxlan.conflist
package main

import (
	"context"
	"encoding/json"
	"errors"
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

const (
	labName = "demo"
	nodes   = 2
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the plugin binaries (CNI_PATH) and vxvrf-installer")
	conflist := flag.String("conflist", "conflist/vrf-vxlan.conflist", "the conflist to run on both nodes")
	flag.Parse()
	d := &demo{Lab: demokit.Lab{Name: "demo"}, conflist: *conflist, lab: labName}
	d.Main(func() error { return d.run(*bin) }, "marked FAIL above", func() string {
		return fmt.Sprintf("OK: two nodes, one %s segment; the pods talked across nodes through VXLAN, and DEL + GC left nothing behind.", d.network)
	})
}

type demo struct {
	demokit.Lab

	conflist  string
	lab       string // lab name (namespaces "<prefix><lab>-...")
	installer string
	network   string
}

func (d *demo) run(binDir string) error {
	bin, err := filepath.Abs(binDir)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(d.conflist)
	if err != nil {
		return err
	}
	list, err := chain.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", d.conflist, err)
	}
	// The binaries the conflist names, and the installer that renders it.
	need := []string{"vxvrf-installer"}
	for _, p := range list.Plugins {
		need = append(need, p.Network.Type)
	}
	for _, p := range need {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			return fmt.Errorf("%s not in %s (make build %s): %w", p, bin, filepath.Join(bin, "vxvrf-installer"), err)
		}
	}
	d.installer = filepath.Join(bin, "vxvrf-installer")
	if d.Tmp, err = os.MkdirTemp("", "vxvrf-demo-"); err != nil {
		return err
	}

	// SIGINT/SIGTERM: remove the lab before exiting.
	defer d.RemoveOnSignal()()

	demokit.Section("lab: two nodes on an underlay (network namespaces; this machine's network is not touched)")
	if d.C, err = cluster.New(d.lab, nodes, bin, d.Tmp); err != nil {
		return fmt.Errorf("create the lab: %w", err)
	}
	c := d.C
	for i, n := range c.Nodes {
		fmt.Printf("  node %s: namespace %s, uplink eth0 %s/24\n", nodeName(i), n.Name, n.Addr)
	}
	fmt.Printf("  underlay/router: namespace %s (%s), external host %s behind it\n", c.Router.Name, netsim.UnderlayGateway, c.ExtAddr)

	demokit.Section("kernel")
	vrf := c.Nodes[0].HasVRF()
	if vrf {
		fmt.Println("  VRF: supported")
	} else {
		fmt.Println("  VRF: NOT supported by this kernel (CONFIG_NET_VRF is not set)")
	}

	demokit.Section("conflist " + d.conflist)
	prepared, notes, err := prepare(raw, vrf)
	if err != nil {
		return fmt.Errorf("%s: %w", d.conflist, err)
	}
	for _, n := range notes {
		fmt.Printf("  NOTE: %s\n", n)
	}
	if len(notes) == 0 {
		fmt.Println("  runs as written; only the per-node values below are filled in")
	}
	fmt.Println("  per node, rendered by vxvrf-installer --dry-run (as the DaemonSet does); state dirs moved to a temp dir:")
	confs, err := d.renderNodes(prepared)
	if err != nil {
		return err
	}
	n, err := c.NetworkFrom(confs)
	if err != nil {
		return err
	}
	d.network = n.Spec.Name
	var stages []string
	for _, p := range n.Chains[0].List.Plugins {
		stages = append(stages, p.Network.Type)
	}
	fmt.Printf("  network %q, cniVersion %s (libcni's pick), chain: %s\n", n.Spec.Name, n.Chains[0].List.CNIVersion, strings.Join(stages, " -> "))

	demokit.Section("ADD: one pod on each node")
	var pods []*cluster.Pod
	for i := range c.Nodes {
		p, err := n.AddPod(i, "pod")
		if err != nil {
			return err
		}
		pods = append(pods, p)
		var addrs []string
		for _, ip := range p.IPs {
			addrs = append(addrs, ip.Address.String())
		}
		fmt.Printf("  %s on %s: eth0 %s, gateway %s, mtu %s\n", p.NS.Name, nodeName(i), strings.Join(addrs, " "), gateways(p), mtuOf(p.NS))
	}
	ctx := context.Background()
	for i, p := range pods {
		cctx, cancel := context.WithTimeout(ctx, cluster.Timeout)
		d.Check("CHECK "+p.NS.Name, n.Chains[i].Check(cctx, p.RT))
		cancel()
	}
	if n.Chains[0].List.CNIVersion == "1.1.0" {
		for i, ch := range n.Chains {
			cctx, cancel := context.WithTimeout(ctx, cluster.Timeout)
			d.Check("STATUS on "+nodeName(i), ch.Status(cctx))
			cancel()
		}
	}

	demokit.Section("traffic")
	d.traffic(n, pods)

	demokit.Section("what the chain built")
	for i := range c.Nodes {
		if err := picture(c, i, n.Spec.Name, pods); err != nil {
			d.Check("draw "+nodeName(i), err)
		}
	}

	demokit.Section("DEL, then GC with an empty attachment list on every node")
	for _, p := range pods {
		d.Check("DEL "+p.NS.Name, n.Del(p))
	}
	for i, ch := range n.Chains {
		cctx, cancel := context.WithTimeout(ctx, cluster.Timeout)
		d.Check("GC on "+nodeName(i)+" (the network has no pods left there)", ch.GC(cctx, []types.GCAttachment{}))
		cancel()
	}

	demokit.Section("leftovers")
	for i, ch := range n.Chains {
		var atts []chain.Attachment
		for _, p := range pods {
			if p.Node == i {
				atts = append(atts, p.Attachment())
			}
		}
		left := append(ch.NetworkLeftovers(c.Nodes[i].NS), ch.Leftovers(c.Nodes[i].NS, atts, c.NodeRoot(i))...)
		for _, l := range left {
			d.Check(nodeName(i)+": nothing left", errors.New(l))
		}
		if len(left) == 0 {
			links, _ := c.Nodes[i].In("ip", "-br", "link")
			fmt.Printf("  ok    %s: no device, rule, route, lease or cache entry of the network is left; links now: %s\n",
				nodeName(i), strings.Join(strings.Fields(firstFields(string(links))), " "))
		}
	}
	if rules, err := chain.Ruleset(c.Nodes[0].NS); err == nil && strings.Contains(rules, naming.Prefix) {
		fmt.Println("  (sysctl-firewall's empty project-wide hook chains stay: they are shared by every network of a node)")
	}
	return nil
}

// traffic runs the checks that show the overlay works: per family, the two
// pods across the nodes (and a full-size packet with DF set, which only
// passes when every MTU on the path is right), each pod to its gateway, each
// node to its own pod, and IPv4 egress to the external host.
func (d *demo) traffic(n *cluster.Network, pods []*cluster.Pod) {
	a, b := pods[0], pods[1]
	for _, v4 := range []bool{true, false} {
		ia, ib := a.IP(v4), b.IP(v4)
		if ia == nil || ib == nil {
			continue
		}
		d.Check(fmt.Sprintf("%s %s -> %s %s (across the nodes, through VXLAN)", a.NS.Name, ia.Address.IP, b.NS.Name, ib.Address.IP), reach(a.NS, ib.Address.IP))
		d.Check(fmt.Sprintf("%s %s -> %s %s", b.NS.Name, ib.Address.IP, a.NS.Name, ia.Address.IP), reach(b.NS, ia.Address.IP))
		if size, err := fullSize(a.NS, v4); err == nil {
			d.Check(fmt.Sprintf("%s -> %s with a full-size packet (%d bytes of payload, DF set)", a.NS.Name, b.NS.Name, size),
				cluster.Ping(a.NS, ib.Address.IP, "-M", "do", "-s", fmt.Sprint(size)))
		} else {
			d.Check("pod MTU", err)
		}
		for _, p := range pods {
			ip := p.IP(v4)
			if ip.Gateway != nil {
				d.Check(fmt.Sprintf("%s -> gateway %s (on its own node's bridge)", p.NS.Name, ip.Gateway), reach(p.NS, ip.Gateway))
			}
			node := d.C.Nodes[p.Node]
			var extra []string
			if vrf := vrfOf(node, n.Spec.Name); vrf != "" {
				extra = []string{"-I", vrf}
			}
			d.Check(fmt.Sprintf("node %s -> its pod %s", nodeName(p.Node), ip.Address.IP),
				cluster.Ping(node.NS, ip.Address.IP, extra...))
		}
	}
	if masquerades(n) {
		for _, p := range pods {
			peer, err := d.C.Egress(p.NS)
			if err == nil && !peer.Equal(d.C.Nodes[p.Node].Addr) {
				err = fmt.Errorf("the external host saw %s, not the node's %s", peer, d.C.Nodes[p.Node].Addr)
			}
			d.Check(fmt.Sprintf("%s -> external host %s over TCP, masqueraded to its node's %s", p.NS.Name, d.C.ExtAddr, d.C.Nodes[p.Node].Addr), err)
		}
	}
}

// reach pings once, retried once (the first may be spent on neighbour
// resolution across the overlay).
func reach(from *netsim.NS, ip net.IP) error {
	err := cluster.Ping(from, ip)
	if err != nil {
		err = cluster.Ping(from, ip)
	}
	return err
}

// fullSize is the largest ICMP echo payload that fits the pod's eth0 MTU.
func fullSize(pod *netsim.NS, v4 bool) (int, error) {
	var mtu int
	if _, err := fmt.Sscan(mtuOf(pod), &mtu); err != nil {
		return 0, fmt.Errorf("read the pod's MTU: %w", err)
	}
	if v4 {
		return mtu - 20 - 8, nil
	}
	return mtu - 40 - 8, nil
}

func mtuOf(pod *netsim.NS) string {
	out, err := pod.In("cat", "/sys/class/net/eth0/mtu")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func gateways(p *cluster.Pod) string {
	var gws []string
	for _, ip := range p.IPs {
		if ip.Gateway != nil {
			gws = append(gws, ip.Gateway.String())
		}
	}
	return strings.Join(gws, " ")
}

// masquerades says whether the chain's sysctl-firewall masquerades egress.
func masquerades(n *cluster.Network) bool {
	for _, p := range n.Chains[0].List.Plugins {
		if p.Network.Type == "sysctl-firewall" {
			var conf struct {
				Masquerade bool `json:"masquerade"`
			}
			return json.Unmarshal(p.Bytes, &conf) == nil && conf.Masquerade
		}
	}
	return false
}

func firstFields(s string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return strings.Join(out, " ")
}
