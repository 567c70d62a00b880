// Package overlap finds subnets that collide in one routing table: a pod
// subnet of a network against what other devices route in the table its
// bridge is in. veth-attach refuses an overlap at ADD (for any IPAM);
// lockfile-ipam refuses it before it leases and reports it from STATUS.
package overlap

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/kernel"
	"github.com/vxvrf/cni/pkg/naming"
)

// Check returns an error naming the first of subnets that overlaps a
// subnet another device routes in the same routing table as the bridge
// br: the main table for a bridge outside any VRF, else its VRF's table.
// Such a subnet belongs to another network's bridge (two networks without
// VRF, or in one VRF) or to a node interface; either way one of the two
// loses its traffic. Routes through a VRF device (veth-attach's route from
// the main table into a VRF), routes without a device, default and
// link-local routes, and local and broadcast routes, do not count. The
// message starts with the subnet and ends with the fix; the caller
// prefixes the plugin.
func Check(br netlink.Link, subnets []*net.IPNet) error {
	if len(subnets) == 0 {
		return nil
	}
	table, where := unix.RT_TABLE_MAIN, "the main routing table"
	if m := br.Attrs().MasterIndex; m != 0 {
		master, err := netlink.LinkByIndex(m)
		if err != nil {
			return fmt.Errorf("master of bridge %s: %w", br.Attrs().Name, err)
		}
		v, ok := master.(*netlink.Vrf)
		if !ok {
			return nil
		}
		table, where = int(v.Table), fmt.Sprintf("the routing table %d of %s", v.Table, v.Name)
	}
	// Only that table, filtered by the kernel: a plain dump carries the
	// local table's entries of every host veth too.
	routes, err := kernel.TableRoutes(netlink.FAMILY_ALL, table)
	if err != nil {
		return fmt.Errorf("list routes of table %d: %w", table, err)
	}
	for _, r := range routes {
		// Only unicast routes say where a subnet's traffic goes: the local
		// and broadcast routes of a VRF's addresses sit in its table too
		// (outside a VRF they are in the local table), and would name a
		// gateway's /32 instead of the network's subnet.
		if r.Type != unix.RTN_UNICAST || naming.IsDefaultRoute(r.Dst) || r.LinkIndex == 0 || r.LinkIndex == br.Attrs().Index || r.Dst.IP.IsLinkLocalUnicast() {
			continue
		}
		for _, s := range subnets {
			sub := &net.IPNet{IP: s.IP.Mask(s.Mask), Mask: s.Mask}
			if !sub.Contains(r.Dst.IP) && !r.Dst.Contains(sub.IP) {
				continue
			}
			dev, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil || dev.Type() == "vrf" {
				continue
			}
			return &Error{Subnet: sub, Other: r.Dst, Owner: Owner(dev), Where: where}
		}
	}
	return nil
}

// Error is an overlap found by Check.
type Error struct {
	Subnet, Other *net.IPNet
	Owner, Where  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("the pod subnet %s overlaps %s of %s in %s: two networks in one routing table need disjoint subnets; give this network another subnet (lockfile-ipam ipam.ranges), or put one of the two networks in a VRF of its own (vrf-vxlan-bridge key vrf)",
		e.Subnet, e.Other, e.Owner, e.Where)
}

// Owner names a device and the network its alias marks.
func Owner(l netlink.Link) string {
	a := l.Attrs()
	network, attachment, ok := naming.MarkedNetwork(a.Alias)
	switch {
	case ok && attachment:
		return fmt.Sprintf("a pod's host veth %s of network %q", a.Name, network)
	case ok:
		return fmt.Sprintf("network %q (%s %s)", network, l.Type(), a.Name)
	default:
		return fmt.Sprintf("the node's %s %s (not a vxvrf network)", l.Type(), a.Name)
	}
}

// NetworkBridge is the bridge that carries the network's mark
// (vrf-vxlan-bridge made it), or nil. Only bridges are listed (the kernel
// filters), not every pod's host veth.
func NetworkBridge(network string) (netlink.Link, error) {
	ls, err := kernel.LinksOfKind("bridge")
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	mark := naming.NetworkMark(network)
	for _, l := range ls {
		if l.Type() == "bridge" && l.Attrs().Alias == mark {
			return l, nil
		}
	}
	return nil, nil
}
