package main

import (
	"net"

	"github.com/vxvrf/cni/pkg/naming"
)

// Family is an IP family: iptables (v4) or ip6tables (v6).
type Family int

const (
	V4 Family = iota
	V6
)

func (f Family) String() string {
	if f == V6 {
		return "ipv6"
	}
	return "ipv4"
}

// Families lists both, in the order every loop uses.
var Families = []Family{V4, V6}

// hook is where a table's project-wide chain hangs: the built-in chain
// that jumps to it and the chain itself.
type hook = naming.Hook

// Hooks are the project-wide chains, one per table, in the order ADD
// creates the per-attachment chains (filter first: it always exists).
var Hooks = naming.Hooks()

// projectJump is the rule in a built-in chain that enters the project chain.
func projectJump(h hook) []string { return []string{"-j", h.Project} }

// attachmentJump is the rule in a project chain that enters an attachment's
// chain. It depends only on (network, containerID, ifname), so DEL and GC
// can delete it without knowing anything else.
func attachmentJump(network, containerID, ifName string) []string {
	return []string{"-m", "comment", "--comment", naming.AttachmentTag(network, containerID, ifName),
		"-j", naming.AttachmentChain(network, containerID, ifName)}
}

// PodAddr is one pod address with its subnet.
type PodAddr struct {
	IP     net.IP
	Subnet *net.IPNet
}

// RuleInput is everything the rules of one attachment depend on.
type RuleInput struct {
	Addrs        []PodAddr
	HostVeth     string // host end of the pod's veth ("" when unknown)
	Bridge       string // bridge the host veth is enslaved to ("" when routed)
	Uplink       string // masquerade only out of this interface
	Masquerade   bool
	AntiSpoofing bool
}

// Rules are the rule specs of one attachment chain, per family and table.
// A table with no rules gets no chain and no jump.
type Rules map[Family]map[string][][]string

// Families returns the families that have at least one rule, in order.
func (r Rules) Families() []Family {
	var out []Family
	for _, f := range Families {
		if len(r[f]) > 0 {
			out = append(out, f)
		}
	}
	return out
}

func familyOf(ip net.IP) Family {
	if ip.To4() != nil {
		return V4
	}
	return V6
}

func hostCIDR(ip net.IP) string {
	if ip.To4() != nil {
		return ip.To4().String() + "/32"
	}
	return ip.String() + "/128"
}

// renderRules computes the rules of one attachment. It is pure: no kernel,
// no iptables, so it is unit-tested without root.
//
//	filter: -d IP -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//	        -s IP -j ACCEPT
//	nat:    -s IP ! -d SUBNET (-o UPLINK | ! -o BRIDGE) -j MASQUERADE
//	raw:    <in> -s OTHER -j RETURN ... ; <in> ! -s LAST -j DROP
//
// where <in> is "-m physdev --physdev-in HOSTVETH" for a bridged veth and
// "-i HOSTVETH" for a routed one, and the allowed sources are the pod
// addresses (IPv6 also allows fe80::/10 and :: for neighbour discovery and
// DAD).
func renderRules(in RuleInput) Rules {
	out := Rules{}
	add := func(f Family, table string, spec ...string) {
		if out[f] == nil {
			out[f] = map[string][][]string{}
		}
		out[f][table] = append(out[f][table], spec)
	}
	for _, a := range in.Addrs {
		f, ip := familyOf(a.IP), hostCIDR(a.IP)
		add(f, "filter", "-d", ip, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
		add(f, "filter", "-s", ip, "-j", "ACCEPT")
	}
	if in.Masquerade {
		for _, a := range in.Addrs {
			spec := []string{"-s", hostCIDR(a.IP)}
			if a.Subnet != nil {
				spec = append(spec, "!", "-d", a.Subnet.String())
			}
			switch {
			case in.Uplink != "":
				spec = append(spec, "-o", in.Uplink)
			case in.Bridge != "":
				spec = append(spec, "!", "-o", in.Bridge)
			}
			add(familyOf(a.IP), "nat", append(spec, "-j", "MASQUERADE")...)
		}
	}
	if in.AntiSpoofing && in.HostVeth != "" {
		match := []string{"-i", in.HostVeth}
		if in.Bridge != "" {
			match = []string{"-m", "physdev", "--physdev-in", in.HostVeth}
		}
		allowed := map[Family][]string{}
		for _, a := range in.Addrs {
			f := familyOf(a.IP)
			if f == V6 && len(allowed[V6]) == 0 {
				allowed[V6] = []string{"fe80::/10", "::/128"}
			}
			allowed[f] = append(allowed[f], hostCIDR(a.IP))
		}
		for _, f := range Families {
			srcs := allowed[f]
			if len(srcs) == 0 {
				continue
			}
			for _, s := range srcs[:len(srcs)-1] {
				add(f, "raw", append(append([]string{}, match...), "-s", s, "-j", "RETURN")...)
			}
			add(f, "raw", append(append([]string{}, match...), "!", "-s", srcs[len(srcs)-1], "-j", "DROP")...)
		}
	}
	return out
}
