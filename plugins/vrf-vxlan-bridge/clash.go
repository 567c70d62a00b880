package main

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// Clashes between the config and devices that exist under other names:
// what judge refuses, after the configured names themselves, before
// anything changes. Every message names devices and networks, never an
// ifindex alone.

// clashes refuses a config that would make the network's devices collide
// with existing ones: a bridge of this network that already has another
// VXLAN port (a changed vni on a live network), a VXLAN device of another
// name with the same VNI and port (the kernel allows one), this network's
// devices enslaved to something the config does not name, and a VRF
// table that another VRF already routes with.
func (n *nodeLinks) clashes(d netDevices, legacies map[string]bool) error {
	ours := func(name string) bool {
		l := n.byName[name]
		return l != nil && (l.Attrs().Alias == d.mark || legacies[name])
	}
	if d.vni != 0 {
		for _, l := range n.byIndex {
			vx, ok := l.(*netlink.Vxlan)
			if !ok || vx.Name == d.vxlan || vx.VxlanId != d.vni || (vx.Port != d.port && vx.Port != 0 && d.port != 0) {
				continue
			}
			return cniutil.Errorf(types.ErrInvalidNetworkConfig,
				"vrf-vxlan-bridge: vxlan.vni %d: %s already carries the same VNI %d on port %d (%s); every network needs its own VNI: pick another vxlan.vni",
				d.vni, vx.Name, vx.VxlanId, vx.Port, n.describe(vx))
		}
	}
	if br := n.byName[d.bridge]; br != nil && ours(d.bridge) {
		for _, p := range n.ports[br.Attrs().Index] {
			if vx, ok := p.(*netlink.Vxlan); ok && vx.Name != d.vxlan {
				want := "no vxlan key"
				if d.vni != 0 {
					want = fmt.Sprintf("vxlan.vni %d", d.vni)
				}
				return cniutil.Errorf(types.ErrInvalidNetworkConfig,
					"vrf-vxlan-bridge: %s, but bridge %s of network %q already has the VXLAN port %s (vni %d): a live network keeps its VNI; put vxlan.vni %d back, or remove the network from this node first (DEL every pod, then GC) to change it",
					want, d.bridge, d.network, vx.Name, vx.VxlanId, vx.VxlanId)
			}
		}
		if m := n.byIndex[br.Attrs().MasterIndex]; m != nil && m.Attrs().Name != d.vrf {
			want := "no vrf key"
			if d.vrf != "" {
				want = fmt.Sprintf("vrf.name %q", d.vrf)
			}
			return cniutil.Errorf(types.ErrInvalidNetworkConfig,
				"vrf-vxlan-bridge: %s, but bridge %s of network %q is enslaved to %s %s (%s): a live network keeps its VRF; restore the vrf key, or remove the network from this node first (DEL every pod, then GC)",
				want, d.bridge, d.network, m.Type(), m.Attrs().Name, n.describe(m))
		}
	}
	if vx := n.byName[d.vxlan]; vx != nil && ours(d.vxlan) {
		if m := n.byIndex[vx.Attrs().MasterIndex]; m != nil && m.Attrs().Name != d.bridge {
			return cniutil.Errorf(types.ErrInvalidNetworkConfig,
				"vrf-vxlan-bridge: vxlan.vni %d: %s of network %q is a port of %s (%s), not of bridge.name %q; restore bridge.name %q, or remove the network from this node first (DEL every pod, then GC)",
				d.vni, d.vxlan, d.network, m.Attrs().Name, n.describe(m), d.bridge, m.Attrs().Name)
		}
	}
	if d.table != 0 {
		for _, l := range n.byIndex {
			if vrf, ok := l.(*netlink.Vrf); ok && vrf.Name != d.vrf && int64(vrf.Table) == d.table {
				return cniutil.Errorf(types.ErrInvalidNetworkConfig,
					"vrf-vxlan-bridge: vrf.table %d is already the table of %s (%s): two VRFs in one table share their routes; pick another vrf.table",
					d.table, vrf.Name, n.describe(vrf))
			}
		}
	}
	return nil
}

// describe says whose a device is, by names: `belongs to network "red"
// (bridge br-red)`, `a host veth of network "red"`, or that vxvrf did not
// make it.
func (n *nodeLinks) describe(l netlink.Link) string {
	a := l.Attrs()
	var where string
	if m := n.byIndex[a.MasterIndex]; m != nil {
		where = fmt.Sprintf(" (%s %s)", m.Type(), m.Attrs().Name)
	}
	network, attachment, ok := naming.MarkedNetwork(a.Alias)
	switch {
	case ok && !attachment:
		return fmt.Sprintf("it belongs to network %q%s", network, where)
	case ok:
		return fmt.Sprintf("a pod's host veth of network %q%s", network, where)
	case a.Alias != "":
		return fmt.Sprintf("not made by vxvrf: alias %q%s", a.Alias, where)
	default:
		return fmt.Sprintf("not made by vxvrf: no vxvrf alias%s", where)
	}
}
