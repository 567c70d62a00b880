package main

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/bum"
	"github.com/vxvrf/cni/pkg/cniutil"
	vlog "github.com/vxvrf/cni/pkg/log"
	"github.com/vxvrf/cni/pkg/vxlanfdb"
)

// bumMode is how the VXLAN device carries broadcast, unknown-unicast and
// multicast (BUM) frames to the other nodes: resolved once from the vxlan
// section by parseBUM, it holds its own attributes and kernel work. A new
// mode is a type here, a case in parseBUM and its name in pkg/bum.
type bumMode interface {
	name() bum.Mode
	// learning is the device's MAC learning unless vxlan.learning says.
	learning() bool
	// group is the device's multicast group (nil: none).
	group() net.IP
	// addresses are the underlay addresses the mode sends to: of the
	// VTEP address's IP family.
	addresses() []net.IP
	// ensure does the mode's work on the VXLAN device vx (a port of the
	// network's bridge) whose VTEP address is local; idempotent.
	ensure(vx netlink.Link, local net.IP) error
	// check verifies what ensure does.
	check(vx netlink.Link, local net.IP) error
}

// parseBUM resolves the mode the vxlan section selects (pkg/bum: at most
// one of group, remotes, evpn) and validates its keys.
func parseBUM(v *VXLANConf) (bumMode, error) {
	m, err := v.Keys.Select()
	if err != nil {
		return nil, cniutil.InvalidConfig(err)
	}
	switch m {
	case bum.Multicast:
		return parseMulticast(v.Group)
	case bum.EVPN:
		if v.Learning != nil && *v.Learning {
			return nil, bad("vxlan.learning must be false with evpn: the EVPN speaker fills the FDB")
		}
		return evpn{}, nil
	default:
		return parseStaticPeers(v.Remotes)
	}
}

// otherFamily is the first of the mode's addresses not of local's IP
// family, nil when there is none.
func otherFamily(m bumMode, local net.IP) net.IP {
	for _, ip := range m.addresses() {
		if (ip.To4() == nil) != (local.To4() == nil) {
			return ip
		}
	}
	return nil
}

// staticPeers is head-end replication: one all-zero FDB entry per remote,
// so the device sends a copy of every BUM frame to each (vxlan.remotes;
// without any, nothing is programmed).
type staticPeers struct {
	remotes []net.IP // deduplicated, in the configured order
}

func parseStaticPeers(remotes []string) (staticPeers, error) {
	var p staticPeers
	seen := map[string]bool{}
	for _, r := range remotes {
		ip := net.ParseIP(r)
		if ip == nil || !ip.IsGlobalUnicast() {
			return p, bad("vxlan.remotes: %q is not a unicast IP address", r)
		}
		if !seen[ip.String()] {
			seen[ip.String()] = true
			p.remotes = append(p.remotes, ip)
		}
	}
	return p, nil
}

func (staticPeers) name() bum.Mode                { return bum.StaticPeers }
func (staticPeers) learning() bool                { return true }
func (staticPeers) group() net.IP                 { return nil }
func (p staticPeers) addresses() []net.IP         { return p.remotes }
func (p staticPeers) peers(local net.IP) []net.IP { return peers(p.remotes, local) }

// ensure makes the device's all-zero FDB entries equal the remotes other
// than this node (pkg/vxlanfdb, shared with vxvrf-agent): missing ones are
// appended, ones no longer listed removed. The list in the config is the
// truth. The log line lists what changed.
func (p staticPeers) ensure(vx netlink.Link, local net.IP) error {
	if len(p.remotes) == 0 {
		return nil
	}
	added, removed, err := vxlanfdb.Sync(vx, p.peers(local))
	vlog.Did("fdb_added", added...)
	if len(removed) > 0 {
		vlog.Did("fdb_removed", removed...)
	}
	return err
}

// check verifies every remote other than this node has its flood entry.
func (p staticPeers) check(vx netlink.Link, local net.IP) error {
	have, err := vxlanfdb.Flood(vx)
	if err != nil {
		return err
	}
	var missing []string
	for _, ip := range p.peers(local) {
		if _, ok := have[ip.String()]; !ok {
			missing = append(missing, ip.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("vxlan %s lacks the flood (all-zero fdb) entries for remotes %v", vx.Attrs().Name, missing)
	}
	return nil
}

// peers is the remotes list without the node's own VTEP address, so every
// node can carry the same list (all nodes): a flood entry pointing at
// oneself would hand every flooded frame back to this node.
func peers(remotes []net.IP, local net.IP) []net.IP {
	out := make([]net.IP, 0, len(remotes))
	for _, ip := range remotes {
		if !ip.Equal(local) {
			out = append(out, ip)
		}
	}
	return out
}

// multicast floods to the multicast group vxlan.group: an attribute of
// the device itself, compared by checkVXLANLink.
type multicast struct {
	ip net.IP
}

func parseMulticast(group string) (multicast, error) {
	ip := net.ParseIP(group)
	if ip == nil || !ip.IsMulticast() {
		return multicast{}, bad("vxlan.group %q is not a multicast IP address", group)
	}
	return multicast{ip: ip}, nil
}

func (multicast) name() bum.Mode                    { return bum.Multicast }
func (multicast) learning() bool                    { return true }
func (m multicast) group() net.IP                   { return m.ip }
func (m multicast) addresses() []net.IP             { return []net.IP{m.ip} }
func (multicast) ensure(netlink.Link, net.IP) error { return nil }
func (multicast) check(netlink.Link, net.IP) error  { return nil }

// evpn leaves the FDB to an EVPN speaker (FRR): the device does not learn
// (vxlan.learning must not say otherwise), and neither does its bridge
// port.
type evpn struct{}

func (evpn) name() bum.Mode                   { return bum.EVPN }
func (evpn) learning() bool                   { return false }
func (evpn) group() net.IP                    { return nil }
func (evpn) addresses() []net.IP              { return nil }
func (evpn) check(netlink.Link, net.IP) error { return nil }

// ensure turns MAC learning off on the bridge port, as an EVPN speaker
// expects (neigh_suppress is on every VXLAN port, see ensureVXLAN).
func (evpn) ensure(vx netlink.Link, _ net.IP) error {
	if err := netlink.LinkSetLearning(vx, false); err != nil {
		return fmt.Errorf("bridge port learning off on %s: %w", vx.Attrs().Name, err)
	}
	return nil
}
