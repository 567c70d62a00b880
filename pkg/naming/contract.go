package naming

import (
	"net"
	"strings"
)

// Contracts between stages: values one plugin writes and another reads or
// matches. Each lives here once, so the two sides cannot drift apart.

// The connection mark of a VRF's egress. sysctl-firewall marks a tenant's
// connections with EgressMark(table) within EgressMarkMask and restores it
// onto reply packets; vrf-vxlan-bridge's vrf.egress adds the policy rule
// "fwmark EgressMark(table)/EgressMarkMask lookup table" that routes those
// replies back into the tenant's table. The lower 16 bits stay clear of
// kube-proxy's 0x4000/0x8000.
const (
	EgressMarkMask uint32 = 0xffff0000
	MaxMarkTable          = 1<<16 - 1 // the largest table (or zone) whose mark fits EgressMarkMask
)

// EgressMark is the connection mark of table's (or a conntrack zone's)
// egress connections: table<<16, 1 <= table <= MaxMarkTable.
func EgressMark(table int64) uint32 { return uint32(table) << 16 }

// ParseAttachmentTag is the inverse of AttachmentTag for one network: the
// container ID and ifname of a tag (an iptables comment, a link alias) of
// that network. ok is false for another network's tag, for anything else,
// and for a tag whose container ID or ifname is empty or whose ifname holds
// a ':' (no kernel interface name does).
func ParseAttachmentTag(network, tag string) (containerID, ifName string, ok bool) {
	rest, ok := strings.CutPrefix(tag, NetworkTag(network))
	if !ok {
		return "", "", false
	}
	containerID, ifName, ok = strings.Cut(rest, ":")
	if !ok || containerID == "" || ifName == "" || strings.Contains(ifName, ":") {
		return "", "", false
	}
	return containerID, ifName, true
}

// Hook is one of sysctl-firewall's project-wide iptables chains: Project in
// Table, jumped to from the built-in chain Builtin, shared by every network
// of the node. They may stay, empty, with the jump into them, after the
// last attachment leaves.
type Hook struct {
	Table   string
	Builtin string
	Project string
}

// The project chains of Hooks.
const (
	ForwardChain     = Prefix + "-FORWARD"     // filter, from FORWARD
	PostroutingChain = Prefix + "-POSTROUTING" // nat, from POSTROUTING
	PreroutingChain  = Prefix + "-PREROUTING"  // raw, from PREROUTING
)

// Hooks are the project-wide chains, one per table, in the order ADD
// creates the per-attachment chains (filter first: it always exists). The
// zone chains (ZoneChain in raw and mangle) are apart.
func Hooks() []Hook {
	return []Hook{
		{Table: "filter", Builtin: "FORWARD", Project: ForwardChain},
		{Table: "nat", Builtin: "POSTROUTING", Project: PostroutingChain},
		{Table: "raw", Builtin: "PREROUTING", Project: PreroutingChain},
	}
}

// IsHook reports whether chain is one of Hooks' project chains.
func IsHook(chain string) bool {
	for _, h := range Hooks() {
		if h.Project == chain {
			return true
		}
	}
	return false
}

// IsDefaultRoute reports whether a route's destination is its family's
// default: none (how netlink reports it on some kernels and versions) or a
// zero-length prefix (0.0.0.0/0, ::/0).
func IsDefaultRoute(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}
