package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/kernel"
	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/pkg/sysctl"
)

// ensureNodeAddresses puts bridge.nodeAddresses on the bridge: this node's
// own addresses in the network's subnet, next to the gateway every node's
// bridge shares (veth-attach adds it). They make the node a host of the
// subnet like any pod, so what the node routes or originates toward a pod
// on another node (node → pod, a Service DNAT to a remote endpoint, a
// NodePort masquerade) uses an address only this node has:
//
//   - IPv4: the node address is the bridge's primary address of the subnet,
//     the gateway a secondary one. The kernel takes the primary as the ARP
//     sender (for routed traffic whose source is not its own) and as the
//     source of the connected route, so a remote pod never learns the
//     gateway's address with this node's MAC. A bridge whose gateway is
//     already primary (a network from before the key) is reordered: see
//     ensurePrimary.
//   - IPv6: the node address is added without DAD (the agent hands out
//     unique addresses; usable at once, as the gateway); veth-attach adds
//     the gateway deprecated (preferred_lft 0) when the bridge has a node
//     address, so source selection takes the node address, and the
//     neighbour solicitations of routed traffic carry the bridge's own
//     link-local address (unique with a per-node MAC).
//
// An address present with another prefix length is refused: the prefix
// must be the subnet's, or the node address and the gateway are not in
// one subnet and the gateway stays primary of its own.
func ensureNodeAddresses(br netlink.Link, want []*net.IPNet) error {
	for _, a := range want {
		have, err := bridgeAddr(br, a)
		if err != nil {
			return err
		}
		if have == nil {
			addr := &netlink.Addr{IPNet: a}
			if a.IP.To4() == nil {
				addr.Flags = unix.IFA_F_NODAD
			}
			if err := netlink.AddrAdd(br, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
				return fmt.Errorf("add node address %s to bridge %s: %w", a, br.Attrs().Name, err)
			}
		}
		if a.IP.To4() != nil {
			if err := ensurePrimary(br, a); err != nil {
				return err
			}
		}
	}
	return nil
}

// bridgeAddr returns the bridge's address a.IP (nil when absent); one with
// another prefix length than a is an error.
func bridgeAddr(br netlink.Link, a *net.IPNet) (*netlink.Addr, error) {
	fam := netlink.FAMILY_V6
	if a.IP.To4() != nil {
		fam = netlink.FAMILY_V4
	}
	list, err := netlinksafe.AddrList(br, fam)
	if err != nil {
		return nil, fmt.Errorf("list addresses of bridge %s: %w", br.Attrs().Name, err)
	}
	for i := range list {
		h := list[i]
		if !h.IP.Equal(a.IP) {
			continue
		}
		if h.Mask.String() != a.Mask.String() {
			return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig,
				"vrf-vxlan-bridge: bridge.nodeAddresses %s: bridge %s has this address as %s; the prefix must be the network's subnet prefix: fix the config, or remove the address (ip addr del %s dev %s)",
				a, br.Attrs().Name, h.IPNet, h.IPNet, br.Attrs().Name)
		}
		return &h, nil
	}
	return nil, nil
}

// primaryOf returns the bridge's primary IPv4 address of a's subnet (same
// prefix length, as the kernel groups them), nil when there is none.
func primaryOf(br netlink.Link, a *net.IPNet) (*netlink.Addr, error) {
	list, err := netlinksafe.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses of bridge %s: %w", br.Attrs().Name, err)
	}
	for i := range list {
		h := list[i]
		if h.Flags&unix.IFA_F_SECONDARY == 0 && h.Mask.String() == a.Mask.String() && a.Contains(h.IP) {
			return &h, nil
		}
	}
	return nil, nil
}

// ensurePrimary makes the IPv4 node address a the primary address of its
// subnet on the bridge. A bridge that got the gateway first (a network
// from before bridge.nodeAddresses) has the node address as secondary:
// with net.ipv4.conf.<bridge>.promote_secondaries=1 (without it, deleting
// a primary deletes its secondaries), each primary ahead of it is deleted
// and added again, which promotes the node address and puts the others
// behind it. For that moment (two netlink calls) the node does not answer
// for the gateway: a pod's packet to it may be lost, connections through
// it are not reset.
func ensurePrimary(br netlink.Link, a *net.IPNet) error {
	name := br.Attrs().Name
	var moved []netlink.Addr
	// Whatever happens, what was taken off goes back.
	defer func() { _ = readdMoved(br, &moved) }()
	for i := 0; i < 16; i++ {
		p, err := primaryOf(br, a)
		if err != nil {
			return err
		}
		if p == nil || p.IP.Equal(a.IP) {
			return readdMoved(br, &moved)
		}
		if i == 0 {
			key := "net/ipv4/conf/" + name + "/promote_secondaries"
			if !sysctl.Exists(key) {
				return fmt.Errorf("bridge %s: node address %s is secondary to %s and %s is missing", name, a, p.IPNet, key)
			}
			if err := sysctl.Set(key, "1"); err != nil {
				return err
			}
		}
		if err := netlink.AddrDel(br, p); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return fmt.Errorf("bridge %s: make node address %s primary: delete %s: %w", name, a, p.IPNet, err)
		}
		moved = append(moved, *p)
	}
	return fmt.Errorf("bridge %s: node address %s did not become the primary address of its subnet", name, a)
}

// readdMoved adds the addresses ensurePrimary took off again (as
// secondaries now) and empties the list.
func readdMoved(br netlink.Link, moved *[]netlink.Addr) error {
	for len(*moved) > 0 {
		m := (*moved)[0]
		readd := &netlink.Addr{IPNet: m.IPNet, Label: m.Label, Scope: m.Scope}
		if err := netlink.AddrAdd(br, readd); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("bridge %s: add %s back: %w", br.Attrs().Name, m.IPNet, err)
		}
		*moved = (*moved)[1:]
	}
	return nil
}

// checkNodeAddresses verifies the node addresses are on the bridge, IPv4
// ones as the primary address of their subnet.
func checkNodeAddresses(br netlink.Link, want []*net.IPNet) error {
	for _, a := range want {
		have, err := bridgeAddr(br, a)
		if err != nil {
			return err
		}
		if have == nil {
			return fmt.Errorf("bridge %s lacks its node address %s (bridge.nodeAddresses)", br.Attrs().Name, a)
		}
		if a.IP.To4() == nil {
			if have.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
				return fmt.Errorf("bridge %s: node address %s is tentative or failed DAD", br.Attrs().Name, a)
			}
			continue
		}
		p, err := primaryOf(br, a)
		if err != nil {
			return err
		}
		if p != nil && !p.IP.Equal(a.IP) {
			return fmt.Errorf("bridge %s: node address %s is not the primary address of its subnet (%s is): the node would use that one as ARP sender and source", br.Attrs().Name, a, p.IPNet)
		}
	}
	return nil
}

// leaveAnycast gives the bridge a MAC of its own when it still has the
// shared MAC of an anycast gateway but the config now asks for node
// addresses (a cluster moving from bridge.mac/anycastGateway to per-node
// MACs: the bridge outlives the config change). The shared MAC is
// recognised by the anycast FDB pin on the VXLAN device (learning modes)
// or by being naming.AnycastGatewayMAC of the network. The bridge gets a
// random locally administered MAC, as a new bridge would, and the pin
// goes. With arp_notify and ndisc_notify on the bridge the kernel then
// announces every address of the bridge (gratuitous ARP, unsolicited NA)
// with the new MAC, so the node's pods update their gateway entry at once;
// the bridge does not flood those announcements into the overlay
// (neigh_suppress on the VXLAN port). Without VXLAN nothing is done.
func leaveAnycast(network string, br, vx netlink.Link, local net.IP) error {
	mac := br.Attrs().HardwareAddr
	shared, pinned, err := anycastLeft(network, br, vx, local)
	if err != nil || !shared {
		return err
	}
	pin := anycastNeigh(vx, mac, local)
	name := br.Attrs().Name
	for _, key := range []string{"net/ipv4/conf/" + name + "/arp_notify", "net/ipv6/conf/" + name + "/ndisc_notify"} {
		if sysctl.Exists(key) {
			if err := sysctl.Set(key, "1"); err != nil {
				return err
			}
		}
	}
	fresh := make(net.HardwareAddr, 6)
	if _, err := rand.Read(fresh); err != nil {
		return fmt.Errorf("random mac for bridge %s: %w", name, err)
	}
	fresh[0] = fresh[0]&0xfc | 0x02 // unicast, locally administered
	if err := netlink.LinkSetHardwareAddr(br, fresh); err != nil {
		return fmt.Errorf("bridge %s: replace the shared anycast mac %s by %s: %w", name, mac, fresh, err)
	}
	br.Attrs().HardwareAddr = fresh
	if pinned {
		if err := netlink.NeighDel(pin); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("bridge %s: remove the anycast pin %s dst %s from %s: %w", name, mac, local, vx.Attrs().Name, err)
		}
	}
	return nil
}

// anycastLeft says whether the bridge still has the shared MAC of an
// anycast gateway (shared), and whether the VXLAN device pins it (pinned).
func anycastLeft(network string, br, vx netlink.Link, local net.IP) (shared, pinned bool, err error) {
	mac := br.Attrs().HardwareAddr
	if pinned, err = hasFDB(vx, anycastNeigh(vx, mac, local)); err != nil {
		return false, false, err
	}
	return pinned || bytes.Equal(mac, naming.AnycastGatewayMAC(network)), pinned, nil
}

// hasFDB says whether the VXLAN device has the permanent self entry want.
func hasFDB(vx netlink.Link, want *netlink.Neigh) (bool, error) {
	list, err := kernel.NeighList(vx.Attrs().Index, syscall.AF_BRIDGE)
	if err != nil {
		return false, fmt.Errorf("list fdb of %s: %w", vx.Attrs().Name, err)
	}
	for _, n := range list {
		if bytes.Equal(n.HardwareAddr, want.HardwareAddr) && n.Flags&netlink.NTF_SELF != 0 && n.State&netlink.NUD_PERMANENT != 0 && ipEqual(n.IP, want.IP) {
			return true, nil
		}
	}
	return false, nil
}
