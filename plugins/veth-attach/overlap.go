package main

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// checkOverlap refuses pod subnets that overlap a subnet another device
// routes in the same routing table as the bridge: the main table for a
// bridge outside any VRF, else its VRF's table. Such a subnet belongs to
// another network's bridge (two networks without VRF, or in one VRF) or
// to a node interface; either way one of the two would lose its traffic.
// Routes through a VRF device (veth-attach's own route from the main
// table into a VRF) and routes without a device are not subnets of this
// table.
func checkOverlap(br netlink.Link, ips []*current.IPConfig) error {
	if len(ips) == 0 {
		return nil
	}
	table, where := unix.RT_TABLE_MAIN, "the main routing table"
	if m := br.Attrs().MasterIndex; m != 0 {
		vrf, err := netlink.LinkByIndex(m)
		if err != nil {
			return fmt.Errorf("master of bridge %s: %w", br.Attrs().Name, err)
		}
		v, ok := vrf.(*netlink.Vrf)
		if !ok {
			return nil
		}
		table, where = int(v.Table), fmt.Sprintf("the routing table %d of %s", v.Table, v.Name)
	}
	routes, err := netlinksafe.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes of table %d: %w", table, err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.LinkIndex == 0 || r.LinkIndex == br.Attrs().Index || r.Dst.IP.IsLinkLocalUnicast() {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			continue
		}
		for _, ipc := range ips {
			sub := &net.IPNet{IP: ipc.Address.IP.Mask(ipc.Address.Mask), Mask: ipc.Address.Mask}
			if !overlaps(sub, r.Dst) {
				continue
			}
			dev, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil || dev.Type() == "vrf" {
				continue
			}
			return cniutil.Errorf(types.ErrInvalidNetworkConfig,
				"veth-attach: the pod subnet %s overlaps %s of %s in %s: two networks in one routing table need disjoint subnets; give this network another subnet (lockfile-ipam ipam.ranges), or put one of the two networks in a VRF of its own (vrf-vxlan-bridge key vrf)",
				sub, r.Dst, owner(dev), where)
		}
	}
	return nil
}

func overlaps(a, b *net.IPNet) bool {
	return a.Contains(b.IP) || b.Contains(a.IP)
}

// owner names a device and the network it belongs to.
func owner(l netlink.Link) string {
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
