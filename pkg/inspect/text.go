package inspect

import (
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"

	"github.com/vxvrf/cni/pkg/naming"
)

// WriteText prints the report for a person.
func (r *Report) WriteText(w io.Writer) {
	for _, n := range r.Networks {
		fmt.Fprintf(w, "network %s", n.Name)
		if n.Conflist != "" {
			fmt.Fprintf(w, " (%s)", n.Conflist)
		}
		fmt.Fprintln(w)
		if v := n.VRF; v != nil {
			fmt.Fprintf(w, "  vrf       %s table %d%s\n", v.Name, v.Table, missing(v.Present))
		} else {
			fmt.Fprintf(w, "  vrf       none (routes in the main table)\n")
		}
		b := n.Bridge
		fmt.Fprintf(w, "  bridge    %s%s", b.Name, missing(b.Present))
		if b.Present {
			fmt.Fprintf(w, " mtu %d mac %s", b.MTU, b.MAC)
			if len(b.Addrs) > 0 {
				fmt.Fprintf(w, " addr %s", strings.Join(b.Addrs, ", "))
			}
			if b.Master != "" {
				fmt.Fprintf(w, " master %s", b.Master)
			}
			fmt.Fprintf(w, " ports %d", len(b.Ports))
		}
		fmt.Fprintln(w)
		if len(b.NodeAddrs) > 0 {
			fmt.Fprintf(w, "  node addr %s (bridge.nodeAddresses)\n", strings.Join(b.NodeAddrs, ", "))
		}
		if len(b.MissingNodeAddrs) > 0 {
			fmt.Fprintf(w, "  !         node addresses missing from the bridge: %s (the next ADD adds them)\n", strings.Join(b.MissingNodeAddrs, ", "))
		}
		if v := n.VXLAN; v != nil {
			fmt.Fprintf(w, "  vxlan     %s vni %d mode %s%s", v.Name, v.VNI, v.Mode, missing(v.Present))
			if v.Present {
				fmt.Fprintf(w, " port %d mtu %d local %s learning %v", v.Port, v.MTU, orDash(v.Local), v.Learning)
				if v.Dev != "" {
					fmt.Fprintf(w, " dev %s", v.Dev)
				}
			}
			fmt.Fprintln(w)
			if v.Mode == "remotes" {
				fmt.Fprintf(w, "  peers     configured %s; flood list %s\n", list(v.Peers), list(v.Flood))
				if len(v.Missing) > 0 {
					fmt.Fprintf(w, "  !         peers missing from the flood list: %s (run any ADD of the network, or CHECK, to see why)\n", strings.Join(v.Missing, ", "))
				}
				if len(v.Extra) > 0 {
					fmt.Fprintf(w, "  !         flood entries no configured peer accounts for: %s\n", strings.Join(v.Extra, ", "))
				}
			}
		} else {
			fmt.Fprintf(w, "  vxlan     none (single-node network)\n")
		}
		if n.LeaseFile != "" {
			fmt.Fprintf(w, "  leases    %s\n", n.LeaseFile)
		}
		fmt.Fprintf(w, "  attachments (%d):\n", len(n.Attachments))
		for _, a := range n.Attachments {
			veth := a.HostVeth
			if !a.VethPresent {
				veth += " (missing)"
			}
			lease := "no lease"
			if a.Lease {
				lease = "lease " + list(a.PodIPs)
			}
			fmt.Fprintf(w, "    %s %s  veth %s  %s  firewall objects %d\n", a.ContainerID, a.IfName, veth, lease, len(a.Firewall))
		}
		if len(n.Firewall) > 0 {
			fmt.Fprintf(w, "  network firewall objects (%d):\n%s", len(n.Firewall), indentLines(strings.Join(n.Firewall, "\n")))
		}
		writeOrphans(w, n.Orphans)
	}
	writeOrphans(w, r.Orphans)
	fmt.Fprintln(w, "links (a port under its master):")
	r.WriteLinks(w, "  ")
}

func writeOrphans(w io.Writer, o []Orphan) {
	if len(o) == 0 {
		return
	}
	fmt.Fprintf(w, "  orphans (%d):\n", len(o))
	for _, x := range o {
		fmt.Fprintf(w, "    %s: %s\n      fix: %s\n", x.Kind, x.What, x.Fix)
	}
}

func missing(present bool) string {
	if present {
		return ""
	}
	return " (MISSING)"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func list(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// WriteLinks draws the node's links as a tree of masters.
func (r *Report) WriteLinks(w io.Writer, indent string) {
	byName := map[string]*Link{}
	children := map[string][]string{}
	for i := range r.Links {
		l := &r.Links[i]
		byName[l.Name] = l
	}
	for _, l := range r.Links {
		if l.Master != "" && byName[l.Master] != nil {
			children[l.Master] = append(children[l.Master], l.Name)
		}
	}
	var draw func(name, pre string)
	draw = func(name, pre string) {
		k := byName[name]
		line := fmt.Sprintf("%s%s [%s, %s] mtu %d", pre, k.Name, k.Kind, k.State, k.MTU)
		if k.Extra != "" {
			line += " " + k.Extra
		}
		if len(k.Addrs) > 0 {
			line += " addr " + strings.Join(k.Addrs, ", ")
		}
		if k.Alias != "" {
			line += fmt.Sprintf(" alias %q", k.Alias)
		}
		fmt.Fprintln(w, line)
		c := children[name]
		sort.Strings(c)
		for _, n := range c {
			draw(n, strings.Repeat(" ", len(pre))+"└─ ")
		}
	}
	for _, l := range r.Links {
		if l.Master == "" || byName[l.Master] == nil {
			draw(l.Name, indent)
		}
	}
}

// WritePicture is the demo's picture of a node: the links tree, the main
// and VRF routing tables and the chain's firewall rules.
func (r *Report) WritePicture(w io.Writer) {
	fmt.Fprintln(w, "  links (a port is drawn under its master):")
	r.WriteLinks(w, "    ")
	for _, c := range [][]string{{"main table routes", "route"}, {"main table IPv6 routes", "-6", "route"}} {
		if out, err := exec.Command("ip", c[1:]...).Output(); err == nil && strings.TrimSpace(string(out)) != "" {
			fmt.Fprintf(w, "  %s:\n%s", c[0], indentLines(string(out)))
		}
	}
	vrfs := 0
	for _, l := range r.Links {
		if l.Kind == "vrf" {
			vrfs++
			if out, err := exec.Command("ip", "route", "show", "vrf", l.Name).Output(); err == nil {
				fmt.Fprintf(w, "  routes of VRF %s (%s):\n%s", l.Name, l.Extra, indentLines(string(out)))
			}
		}
	}
	if vrfs == 0 {
		fmt.Fprintln(w, "  no VRF on this node: the bridges route in the main table")
	}
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(cmd).Output()
		if err != nil {
			continue
		}
		var rules []string
		table := ""
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "*") {
				table = l[1:]
			}
			if strings.HasPrefix(l, "-A ") && strings.Contains(l, naming.Prefix) {
				rules = append(rules, fmt.Sprintf("%-6s %s", table, l))
			}
		}
		fmt.Fprintf(w, "  %s rules of the chain (%d):\n%s", strings.TrimSuffix(cmd, "-save"), len(rules), indentLines(strings.Join(rules, "\n")+"\n"))
	}
}

// indentLines indents every line of s by four spaces, under its heading.
func indentLines(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}
