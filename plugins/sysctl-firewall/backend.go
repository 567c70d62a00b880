package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// Policy is what the packet filter must do for one attachment, computed
// once from config, prevResult and the kernel, whatever the backend:
//
//   - forward: accept packets from each pod address, and to it when they
//     belong to an established or related connection;
//   - masquerade: NAT packets from a pod address to outside its subnet,
//     leaving by Uplink (or by anything but the pod's Bridge);
//   - anti-spoofing: drop packets entering from HostVeth whose source is
//     not one of Allowed(family), for each family the pod has addresses in;
//   - zone: put connections entering from Bridge into conntrack zone Zone
//     (original direction) and mark them Mark (the network's, shared).
//
// Pure: unit-tested without root (TestPolicy).
type Policy struct {
	Addrs        []PodAddr
	HostVeth     string // host end of the pod's veth ("" when not a veth)
	Bridge       string // bridge the host veth is enslaved to ("" when routed)
	VRF          string // VRF device the bridge is enslaved to ("" none)
	Uplink       string
	Masquerade   bool
	AntiSpoofing bool
	Zone         int    // 0: none
	Mark         uint32 // connection mark of the zone (upper 16 bits)
}

// Families are the families the pod has addresses in, in order.
func (p *Policy) Families() []Family {
	var out []Family
	for _, f := range Families {
		for _, a := range p.Addrs {
			if familyOf(a.IP) == f {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// Spoofable: anti-spoofing applies (it needs the host veth).
func (p *Policy) Spoofable() bool { return p.AntiSpoofing && p.HostVeth != "" }

// InDev is the input device routed pod traffic has at the forward and
// postrouting hooks: the VRF when the bridge is in one (the VRF driver
// makes it the packet's device), else the bridge when the host veth is on
// one, else the host veth.
func (p *Policy) InDev() string {
	if p.VRF != "" {
		return p.VRF
	}
	return p.OutDev()
}

// OutDev is the output device of routed traffic to the pod: the bridge
// when the host veth is on one, else the host veth.
func (p *Policy) OutDev() string {
	if p.Bridge != "" {
		return p.Bridge
	}
	return p.HostVeth
}

// Allowed are the sources anti-spoofing lets through from the pod in
// family f: its addresses (/32, /128), and for IPv6 also fe80::/10 and
// ::/128 (neighbour discovery and DAD) ahead of them.
func (p *Policy) Allowed(f Family) []*net.IPNet {
	var out []*net.IPNet
	for _, a := range p.Addrs {
		if familyOf(a.IP) != f {
			continue
		}
		if f == V6 && len(out) == 0 {
			out = append(out, LinkLocal6, Unspecified6)
		}
		out = append(out, hostNet(a.IP))
	}
	return out
}

// LinkLocal6 and Unspecified6 are the IPv6 sources every pod may use.
var (
	LinkLocal6   = &net.IPNet{IP: net.ParseIP("fe80::"), Mask: net.CIDRMask(10, 128)}
	Unspecified6 = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(128, 128)}
)

func hostNet(ip net.IP) *net.IPNet {
	if v4 := ip.To4(); v4 != nil {
		return &net.IPNet{IP: v4, Mask: net.CIDRMask(32, 32)}
	}
	return &net.IPNet{IP: ip.To16(), Mask: net.CIDRMask(128, 128)}
}

// Backend is what sysctl-firewall needs from a packet filter. Every
// method finds what it needs from deterministic names: DEL and GC need no
// prevResult.
type Backend interface {
	// Name is "nftables" or "iptables".
	Name() string
	// Status is nil when the backend can work on this node.
	Status() error
	// Add ensures the network-wide objects the policy needs (created once
	// per node or network) and adds the attachment's policy; a failure
	// leaves nothing of the attachment behind.
	Add(a attachment, p *Policy) error
	// Check names the first missing piece of the attachment's policy.
	Check(a attachment, p *Policy) error
	// Del removes everything of the attachment; absent is success.
	Del(a attachment, hint *teardownConf) error
	// GC removes every attachment of network not in valid, and with an
	// empty valid list also the network's shared objects.
	GC(network string, valid map[cniutil.Attachment]bool) error
}

// Backend names in the config.
const (
	BackendAuto     = "auto"
	BackendNftables = "nftables"
	BackendIPTables = "iptables"
)

func validBackend(name string) bool {
	return name == "" || name == BackendAuto || name == BackendNftables || name == BackendIPTables
}

// chooseBackend resolves the config's backend ("" is auto) for a new
// attachment of network (ADD, STATUS); see autoFor for auto's rule.
func chooseBackend(name, network string) Backend {
	switch name {
	case BackendNftables:
		return newNftBackend()
	case BackendIPTables:
		return iptablesBackend{}
	}
	if pick, _ := autoFor(network); pick == BackendNftables {
		return newNftBackend()
	}
	return iptablesBackend{}
}

// autoFor is auto's choice for a new attachment of network, and why: the
// node's rule (autoBackend), except that a network iptables still holds
// state of (an attachment's tagged jump, the network's zone rules: made by
// the previous release, iptables-only, or by the iptables backend) stays
// on iptables. So one network's pods, and its network-wide objects
// (masquerade, conntrack zone), are never split across two backends; once
// the network's iptables state is gone (its pods DELeted, GC), its new
// ADDs follow the node's rule again.
func autoFor(network string) (string, string) {
	pick, why := autoBackend()
	if pick == BackendNftables && iptablesHoldsNetwork(network) {
		return BackendIPTables, "network " + network + " has attachments in iptables"
	}
	return pick, why
}

// checkBackend is the backend CHECK with auto looks in: where the
// attachment's state is (nftables elements tagged for it, else its own
// iptables chain), whatever auto would pick for a new ADD now (the node's
// iptables, or the network's state, may have changed since its ADD, or
// the previous release made it); with neither, auto's choice, which then
// names what is missing.
func checkBackend(a attachment) Backend {
	if nb := newNftBackend(); nb.holds(a) {
		return nb
	}
	if iptablesHolds(a) {
		return iptablesBackend{}
	}
	return chooseBackend(BackendAuto, a.Network)
}

// autoBackend is auto's node-wide choice, and why. nftables, unless:
//   - nf_tables does not answer over netlink;
//   - iptables-legacy tables are loaded in this netns (their FORWARD
//     chain cannot be read without an exec, and a drop there would win
//     over an accept of ours in nftables);
//   - a forward-hook base chain of another ip/ip6/inet table (iptables-nft's
//     FORWARD included) has policy drop;
//   - iptables-nft's filter FORWARD chain has a rule other than the jump
//     to VXVRF-FORWARD (a later drop there, e.g. Docker's or kube-proxy's,
//     would make an nftables accept ineffective; in iptables our jump is at
//     position 1 and its accept is final for the table).
//
// An accept in one nftables base chain only ends that chain: every other
// base chain on the hook still sees the packet and may drop it. That is
// the whole rule: nftables where nothing else filters forwarded traffic.
func autoBackend() (string, string) {
	for _, f := range []string{"/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"} {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "filter") {
			return BackendIPTables, "iptables-legacy filter table loaded (" + f + ")"
		}
	}
	c, err := nftables.New()
	if err != nil {
		return BackendIPTables, "nf_tables: " + err.Error()
	}
	chains, err := c.ListChains()
	if err != nil {
		return BackendIPTables, "nf_tables: " + err.Error()
	}
	for _, ch := range chains {
		fam := ch.Table.Family
		if ch.Table.Name == naming.NftTable || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward ||
			(fam != nftables.TableFamilyIPv4 && fam != nftables.TableFamilyIPv6 && fam != nftables.TableFamilyINet) {
			continue
		}
		if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			return BackendIPTables, fmt.Sprintf("forward chain %s of table %s has policy drop", ch.Name, ch.Table.Name)
		}
		if ch.Table.Name == "filter" && ch.Name == "FORWARD" && fam != nftables.TableFamilyINet {
			rules, err := c.GetRules(ch.Table, ch)
			if err != nil {
				return BackendIPTables, "nf_tables: " + err.Error()
			}
			for _, r := range rules {
				if !jumpsTo(r, naming.ForwardChain) {
					return BackendIPTables, "iptables FORWARD has rules of others"
				}
			}
		}
	}
	return BackendNftables, "nothing else filters forwarded traffic"
}

// jumpsTo: r is a jump to chain (with a counter at most), as
// iptables-nft writes "-j chain".
func jumpsTo(r *nftables.Rule, chain string) bool {
	for _, e := range r.Exprs {
		switch v := e.(type) {
		case *expr.Counter:
		case *expr.Verdict:
			if v.Kind != expr.VerdictJump || v.Chain != chain {
				return false
			}
		default:
			return false
		}
	}
	return len(r.Exprs) > 0
}

// teardownBackends are the backends DEL and GC clean, whatever the config
// says now: every backend that may hold state of ours on this node (the
// config, or auto's choice, may have changed since ADD). nftables is
// asked only when our tables exist (one netlink dump); iptables when its
// project chains may exist.
func teardownBackends() []Backend {
	var out []Backend
	nb := newNftBackend()
	if nb.present() {
		out = append(out, nb)
	}
	if iptablesMayHaveState() {
		out = append(out, iptablesBackend{})
	}
	return out
}

// statusError is STATUS's answer for a backend that cannot work.
func statusError(b Backend, err error) error {
	return cniutil.Errorf(cniutil.ErrPluginNotAvailable, "sysctl-firewall: %s backend: %v", b.Name(), err)
}
