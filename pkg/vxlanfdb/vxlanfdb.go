// Package vxlanfdb manages the flood list of a VXLAN device in "remotes"
// mode: its all-zero FDB entries (00:00:00:00:00:00 dst <peer> self
// permanent), one per peer VTEP, which the kernel uses for head-end
// replication of broadcast, unknown-unicast and multicast frames. Other
// FDB entries (learned MACs, the anycast gateway pin) are never touched.
package vxlanfdb

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sort"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/kernel"
)

var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// Flood returns the destinations of the all-zero FDB entries of vx, keyed
// by their string form.
func Flood(vx netlink.Link) (map[string]net.IP, error) {
	list, err := kernel.NeighList(vx.Attrs().Index, syscall.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("list fdb of %s: %w", vx.Attrs().Name, err)
	}
	out := map[string]net.IP{}
	for _, n := range list {
		if bytes.Equal(n.HardwareAddr, zeroMAC) && n.IP != nil && n.LinkIndex == vx.Attrs().Index {
			out[n.IP.String()] = n.IP
		}
	}
	return out, nil
}

func floodNeigh(vx netlink.Link, ip net.IP) *netlink.Neigh { return Entry(vx, zeroMAC, ip) }

// Entry is a permanent FDB entry of the VXLAN device vx itself ("bridge
// fdb ... dev VX self permanent"): frames for mac go to the VTEP dst. The
// flood list is the entries for the all-zero MAC.
func Entry(vx netlink.Link, mac net.HardwareAddr, dst net.IP) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    vx.Attrs().Index,
		Family:       syscall.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT,
		HardwareAddr: mac,
		IP:           dst,
	}
}

// Sync makes the flood list of vx exactly peers: missing entries are
// appended, entries for addresses not in peers are removed. It returns what
// it added and removed (sorted), so callers can log real changes only.
func Sync(vx netlink.Link, peers []net.IP) (added, removed []string, err error) {
	have, err := Flood(vx)
	if err != nil {
		return nil, nil, err
	}
	want := map[string]bool{}
	for _, ip := range peers {
		s := ip.String()
		want[s] = true
		if _, ok := have[s]; ok {
			continue
		}
		if err := netlink.NeighAppend(floodNeigh(vx, ip)); err != nil && !errors.Is(err, syscall.EEXIST) {
			return added, removed, fmt.Errorf("fdb append 00:00:00:00:00:00 dst %s dev %s: %w", s, vx.Attrs().Name, err)
		}
		added = append(added, s)
	}
	for s, ip := range have {
		if want[s] {
			continue
		}
		if err := netlink.NeighDel(floodNeigh(vx, ip)); err != nil && !errors.Is(err, syscall.ENOENT) {
			return added, removed, fmt.Errorf("fdb del 00:00:00:00:00:00 dst %s dev %s: %w", s, vx.Attrs().Name, err)
		}
		removed = append(removed, s)
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed, nil
}
