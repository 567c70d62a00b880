package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/integration/cluster"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/pkg/inspect"
	"github.com/vxvrf/cni/pkg/naming"
)

// link is what the picture shows of one device of a node.
type link struct {
	name, kind, master, alias, mac string
	up                             bool
	mtu                            int
	addrs                          []string
	detail                         string
	children                       []string
}

// links reads the node's devices (without lo) as vxvrf inspect does
// (pkg/inspect).
func links(node *netsim.Node) (map[string]*link, []string, error) {
	var ls []inspect.Link
	err := node.Do(func(ns.NetNS) error {
		var err error
		ls, err = inspect.Links()
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	out := map[string]*link{}
	var order []string
	for _, l := range ls {
		if l.Name == "lo" {
			continue
		}
		k := &link{name: l.Name, kind: l.Kind, master: l.Master, alias: l.Alias, mac: l.MAC, mtu: l.MTU, up: l.Up, addrs: l.Addrs}
		if l.Kind == "vxlan" || l.Kind == "vrf" {
			k.detail = l.Extra
		}
		out[l.Name] = k
		order = append(order, l.Name)
	}
	for _, n := range order {
		if m := out[n].master; m != "" && out[m] != nil {
			out[m].children = append(out[m].children, n)
		}
	}
	return out, order, nil
}

// picture prints node i as a tree of devices (a port under its master),
// the VXLAN device's forwarding entries (where it floods, what it learned
// from the other node), the routes of the network and the network's
// firewall objects the chain installed: the essentials of ip -d link,
// bridge fdb, ip route and nft list ruleset / iptables-save.
func picture(c *cluster.Cluster, i int, network string, pods []*cluster.Pod) error {
	node := c.Nodes[i]
	ls, order, err := links(node)
	if err != nil {
		return err
	}
	podOf := map[string]*cluster.Pod{}
	owner := map[string]string{} // MAC -> whose it is, to label learned entries
	for _, p := range pods {
		podOf[p.RT.ContainerID] = p
		for _, iface := range p.Res.Interfaces {
			if iface.Sandbox != "" {
				owner[iface.Mac] = fmt.Sprintf("%s of %s", iface.Name, p.NS.Name)
			}
		}
	}
	for j, other := range c.Nodes {
		if j == i {
			continue
		}
		ols, _, err := links(other)
		if err != nil {
			return err
		}
		for _, k := range ols {
			if _, ok := owner[k.mac]; !ok {
				owner[k.mac] = fmt.Sprintf("%s on %s", k.name, nodeName(j))
			}
		}
	}
	fmt.Printf("\n  %s (namespace %s)\n", nodeName(i), node.Name)
	var vx []string
	var draw func(name, prefix, childPrefix string)
	draw = func(name, prefix, childPrefix string) {
		k := ls[name]
		state := "down"
		if k.up {
			state = "up"
		}
		line := fmt.Sprintf("%s%s [%s, %s, mtu %d]", prefix, k.name, k.kind, state, k.mtu)
		if k.detail != "" {
			line += " " + k.detail
		}
		if len(k.addrs) > 0 {
			line += " " + strings.Join(k.addrs, " ")
		}
		if k.name == node.Uplink {
			line += "   <- the uplink (underlay)"
		}
		if k.kind == "vxlan" {
			vx = append(vx, k.name)
		}
		if k.alias != "" {
			line += fmt.Sprintf(" alias %q", k.alias)
			// vxvrf:<network>:<container ID>:<ifname>
			if f := strings.SplitN(k.alias, ":", 4); len(f) == 4 && f[0] == "vxvrf" {
				if p := podOf[f[2]]; p != nil {
					var addrs []string
					for _, ip := range p.IPs {
						addrs = append(addrs, ip.Address.String())
					}
					line += fmt.Sprintf("\n%s  <== veth ==> %s %s in pod %s", childPrefix, f[3], strings.Join(addrs, " "), p.NS.Name)
				}
			}
		}
		fmt.Println(line)
		sort.Strings(k.children)
		for j, ch := range k.children {
			if j == len(k.children)-1 {
				draw(ch, childPrefix+"└─ ", childPrefix+"   ")
			} else {
				draw(ch, childPrefix+"├─ ", childPrefix+"│  ")
			}
		}
	}
	for _, n := range order {
		if m := ls[n].master; m == "" || ls[m] == nil {
			draw(n, "    ", "    ")
		}
	}

	own := node.Addr.String()
	for _, dev := range vx {
		out, err := node.In("bridge", "fdb", "show", "dev", dev)
		if err != nil {
			return err
		}
		var flood, learned, pinned []string
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) < 3 || f[1] != "dst" {
				continue
			}
			switch {
			case f[0] == "00:00:00:00:00:00":
				flood = append(flood, f[2])
			case f[2] == own && strings.Contains(l, "permanent"):
				pinned = append(pinned, f[0])
			default:
				who := owner[f[0]]
				if who == "" {
					who = "?"
				}
				learned = append(learned, fmt.Sprintf("%s (%s) at %s", f[0], who, f[2]))
			}
		}
		fmt.Printf("    %s forwarding (bridge fdb show dev %s):\n", dev, dev)
		fmt.Printf("      floods unknown/broadcast frames to: %s\n", orNone(flood))
		fmt.Printf("      MACs learned behind other nodes:\n")
		for _, l := range learned {
			fmt.Printf("        %s\n", l)
		}
		if len(learned) == 0 {
			fmt.Printf("        (none)\n")
		}
		if len(pinned) > 0 {
			fmt.Printf("      gateway MAC pinned to this node:    %s\n", strings.Join(pinned, ", "))
		}
	}

	if vrf := vrfOf(node, network); vrf != "" {
		for _, fam := range []string{"-4", "-6"} {
			out, _ := node.In("ip", fam, "route", "show", "vrf", vrf)
			printRoutes(fmt.Sprintf("routes of VRF %s (%s)", vrf, ls[vrf].detail), string(out))
		}
		out, _ := node.In("ip", "route", "show", "dev", vrf)
		printRoutes("main table -> the VRF (the node reaches its pods)", string(out))
	} else {
		br := bridgeOf(ls, network)
		var routes string
		for _, fam := range []string{"-4", "-6"} {
			out, _ := node.In("ip", fam, "route", "show", "dev", br)
			routes += string(out)
		}
		printRoutes("main table routes via "+br+" (no VRF)", routes)
	}
	return firewall(os.Stdout, node, network)
}

// firewall prints the network's objects in node's firewall, in the backend
// sysctl-firewall used (both, on a node where the network has pods in
// each), as vxvrf inspect reads them (pkg/inspect): nftables elements
// and chains, or iptables rules.
func firewall(w io.Writer, node *netsim.Node, network string) error {
	var nft, ipt []string
	err := node.Do(func(ns.NetNS) error {
		fw, err := inspect.ReadFirewall()
		if err != nil {
			return err
		}
		nft, ipt = fw.NetworkObjects(network)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the firewall: %w", err)
	}
	if len(nft) > 0 {
		fmt.Fprintf(w, "    firewall: nftables, tables inet and bridge %s: %d objects of network %s (per pod only elements, commented vxvrf:<hash of net>:<hash of attachment>):\n", naming.NftTable, len(nft), network)
		for _, o := range nft {
			fmt.Fprintf(w, "      %s\n", strings.TrimPrefix(o, "nftables "))
		}
	}
	if len(ipt) > 0 {
		fmt.Fprintf(w, "    firewall: iptables, %d rules of network %s (a %s-<hash> chain per pod, jumped to from the %s-* hooks):\n", len(ipt), network, naming.Prefix, naming.Prefix)
		for _, l := range ipt {
			fmt.Fprintf(w, "      %s\n", l)
		}
	}
	if len(nft) == 0 && len(ipt) == 0 {
		fmt.Fprintf(w, "    firewall: nothing of network %s\n", network)
	}
	return nil
}

func printRoutes(title, out string) {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" && !strings.HasPrefix(l, "fe80::") && !strings.HasPrefix(l, "multicast") {
			keep = append(keep, l)
		}
	}
	if len(keep) == 0 {
		return
	}
	fmt.Printf("    %s:\n", title)
	for _, l := range keep {
		fmt.Printf("      %s\n", strings.TrimSpace(l))
	}
}

// bridgeOf is the network's bridge: the one carrying a port aliased for the
// network, else the default name.
func bridgeOf(ls map[string]*link, network string) string {
	for _, k := range ls {
		if strings.HasPrefix(k.alias, "vxvrf:"+network+":") && k.master != "" {
			return k.master
		}
	}
	return naming.BridgeName(network)
}

// vrfOf is the VRF the network's bridge is enslaved to, or "".
func vrfOf(node *netsim.Node, network string) string {
	ls, _, err := links(node)
	if err != nil {
		return ""
	}
	if br := ls[bridgeOf(ls, network)]; br != nil && br.master != "" && ls[br.master] != nil && ls[br.master].kind == "vrf" {
		return br.master
	}
	return ""
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "(none)"
	}
	return strings.Join(l, ", ")
}
