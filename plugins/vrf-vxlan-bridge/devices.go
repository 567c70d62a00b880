package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/kernel"
	"github.com/vxvrf/cni/pkg/sysctl"
	"github.com/vxvrf/cni/pkg/uplink"
	"github.com/vxvrf/cni/pkg/vxlanfdb"
)

// underlay is the resolved uplink of the VXLAN device.
type underlay struct {
	link  netlink.Link
	local net.IP // VTEP source address
}

// overhead is the VXLAN encapsulation overhead on this underlay.
func (u *underlay) overhead() int {
	if u.local.To4() == nil {
		return OverheadIPv6
	}
	return OverheadIPv4
}

// findUplink returns the link VXLAN rides on: vxlan.dev, else the first
// host interface of prevResult (what infra-ensure reported), else the
// default-route interface. The network's own devices and veths are never
// the uplink: CHECK gets the chain's final result, which a later stage
// may have rewritten (the reference bridge plugin returns only its
// bridge, host veth and pod interface, without the uplink).
func findUplink(conf *NetConf, prev *current.Result) (netlink.Link, error) {
	if conf.VXLAN != nil && conf.VXLAN.Dev != "" {
		return uplink.Find(conf.VXLAN.Dev)
	}
	if prev != nil {
		d := conf.devices()
		for _, i := range prev.Interfaces {
			if i.Sandbox != "" || i.Name == "" || i.Name == d.bridge || i.Name == d.vrf || i.Name == d.vxlan {
				continue
			}
			if l, err := netlinksafe.LinkByName(i.Name); err == nil && l.Type() == "veth" {
				continue
			}
			return uplink.Find(i.Name)
		}
	}
	return uplink.Find("")
}

// checkPorts verifies that no port of the bridge has a larger MTU than
// the bridge: the bridge does not fragment, so a pod interface above the
// overlay MTU loses every full-size packet to another node. Our
// veth-attach takes the bridge MTU; a swapped-in stage (the reference
// bridge plugin) needs it in its own config.
func checkPorts(br netlink.Link) error {
	ls, err := netlinksafe.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	a := br.Attrs()
	for _, l := range ls {
		if pa := l.Attrs(); pa.MasterIndex == a.Index && pa.MTU > a.MTU {
			return fmt.Errorf("port %s of bridge %s has mtu %d, more than the bridge's %d (the overlay MTU): full-size packets from that pod are dropped; give the stage that creates the pod interface \"mtu\": %d (the reference bridge plugin's key \"mtu\"; veth-attach takes the bridge MTU by itself)",
				pa.Name, a.Name, pa.MTU, a.MTU, a.MTU)
		}
	}
	return nil
}

// resolveUnderlay resolves the uplink and VTEP address of the VXLAN device.
func resolveUnderlay(conf *NetConf, prev *current.Result) (*underlay, error) {
	link, err := findUplink(conf, prev)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig, "vxlan: %v", err)
		}
		return nil, cniutil.Errorf(types.ErrTryAgainLater, "vxlan: %v", err)
	}
	local, err := uplink.Address(link, conf.VXLAN.local)
	if err != nil {
		return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig, "vxlan.local: %v", err)
	}
	if ip := otherFamily(conf.VXLAN.mode, local); ip != nil {
		return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig, "vxlan: %s and the VTEP address %s are of different IP families", ip, local)
	}
	return &underlay{link: link, local: local}, nil
}

// bridgeMTU is bridge.mtu, else the uplink MTU minus the VXLAN overhead
// (when there is VXLAN), else the uplink MTU, else 1500. With VXLAN it
// refuses a bridge MTU the underlay cannot carry.
func bridgeMTU(conf *NetConf, prev *current.Result, u *underlay) (int, error) {
	if u != nil {
		limit := u.link.Attrs().MTU - u.overhead()
		if conf.Bridge.MTU == 0 {
			return limit, nil
		}
		if conf.Bridge.MTU > limit {
			return 0, cniutil.Errorf(types.ErrInvalidNetworkConfig, "bridge.mtu %d does not fit the uplink %s: MTU %d minus VXLAN overhead %d allows at most %d",
				conf.Bridge.MTU, u.link.Attrs().Name, u.link.Attrs().MTU, u.overhead(), limit)
		}
		return conf.Bridge.MTU, nil
	}
	if conf.Bridge.MTU != 0 {
		return conf.Bridge.MTU, nil
	}
	if l, err := findUplink(conf, prev); err == nil {
		return l.Attrs().MTU, nil
	}
	return DefaultMTU, nil
}

func setUp(l netlink.Link) error {
	if l.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
	}
	return nil
}

// setMaster enslaves l to master unless it already is; a link enslaved to
// something else is an error (another network or the operator owns it).
func setMaster(l, master netlink.Link) error {
	a := l.Attrs()
	switch a.MasterIndex {
	case master.Attrs().Index:
		return nil
	case 0:
		if err := netlink.LinkSetMasterByIndex(l, master.Attrs().Index); err != nil {
			return fmt.Errorf("set master of %s to %s: %w", a.Name, master.Attrs().Name, err)
		}
		return nil
	default:
		other := fmt.Sprintf("the device with index %d", a.MasterIndex)
		if m, err := netlink.LinkByIndex(a.MasterIndex); err == nil {
			other = fmt.Sprintf("%s %s (alias %q)", m.Type(), m.Attrs().Name, m.Attrs().Alias)
		}
		return cniutil.Errorf(types.ErrInvalidNetworkConfig, "vrf-vxlan-bridge: %s is enslaved to %s, not to %s", a.Name, other, master.Attrs().Name)
	}
}

// ensureVRF creates or verifies the network's VRF with its table. A VRF it
// creates goes again, with its table's egress, if the ADD fails (rb).
func ensureVRF(c *VRFConf, o *owned, rb *cniutil.Rollback) (netlink.Link, error) {
	l, created, err := o.addLink(&netlink.Vrf{LinkAttrs: netlink.LinkAttrs{Name: c.Name}, Table: uint32(c.Table)}, "vrf.name", rb)
	if err != nil {
		if errors.Is(err, syscall.EOPNOTSUPP) {
			return nil, noVRF(c)
		}
		return nil, err
	}
	if err := checkVRFLink(l, c); err != nil {
		return nil, err
	}
	if err := setUp(l); err != nil {
		return nil, err
	}
	if created {
		rb.Push(func() { _ = deleteEgress(c.Table, nil) })
	}
	return l, nil
}

// probeVRF answers whether ADD can create the VRF: nothing to do when it
// exists (judge has accepted it) or when the kernel reports the vrf module
// loaded, built in or loadable (kernel.Has, as infra-ensure checks bridge
// and vxlan), so a STATUS poll normally changes nothing on the node. Only
// when the module lists cannot tell is a VRF device under a name of its
// own created and deleted again at once (the kernel has no dry run).
func probeVRF(c *VRFConf) error {
	if _, err := netlinksafe.LinkByName(c.Name); err == nil {
		return nil
	}
	if s := kernel.Has("vrf"); s == kernel.Loaded || s == kernel.Available {
		return nil
	}
	probe := &netlink.Vrf{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("vxvrfprobe%d", os.Getpid()%100000)}, Table: uint32(c.Table)}
	err := netlink.LinkAdd(probe)
	if errors.Is(err, syscall.EOPNOTSUPP) {
		return noVRF(c)
	}
	if err != nil {
		return fmt.Errorf("vrf %s: probe: create vrf %s: %w", c.Name, probe.Name, err)
	}
	if err := netlink.LinkDel(probe); err != nil {
		return fmt.Errorf("vrf %s: probe: delete vrf %s: %w", c.Name, probe.Name, err)
	}
	return nil
}

func noVRF(c *VRFConf) error {
	return cniutil.Errorf(types.ErrInvalidNetworkConfig,
		"vrf-vxlan-bridge: vrf %s: the kernel has no VRF support (CONFIG_NET_VRF, module vrf); use a kernel with VRF. Removing the vrf key is no substitute: the network would share the main routing table with every other network without VRF, so its subnet must not overlap theirs (veth-attach refuses an overlap)", c.Name)
}

func checkVRFLink(l netlink.Link, c *VRFConf) error {
	vrf, ok := l.(*netlink.Vrf)
	if !ok {
		return cniutil.Errorf(types.ErrInvalidNetworkConfig, "%s is a %s device, not a vrf", c.Name, l.Type())
	}
	if int64(vrf.Table) != c.Table {
		return cniutil.Errorf(types.ErrInvalidNetworkConfig, "vrf %s exists with table %d, the config says %d", c.Name, vrf.Table, c.Table)
	}
	return nil
}

// ensureBridge creates or adjusts the bridge (MTU, MAC), enslaves it to the
// VRF and sets it up.
func ensureBridge(c *BridgeConf, mtu int, vrf netlink.Link, anycast bool, o *owned, rb *cniutil.Rollback) (netlink.Link, error) {
	l, created, err := o.addLink(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: c.Name, HardwareAddr: c.mac}}, "bridge.name", rb)
	if err != nil {
		return nil, err
	}
	// The kernel keeps a bridge MTU set through a change (not at creation)
	// instead of following its smallest port, and back to 1500 when the
	// last port leaves. A change to the current value is a no-op, so a new
	// bridge that already has the wanted MTU takes a step aside first.
	if created && l.Attrs().MTU == mtu {
		if err := netlink.LinkSetMTU(l, mtu-1); err != nil {
			return nil, fmt.Errorf("set mtu %d on bridge %s: %w", mtu-1, c.Name, err)
		}
		l.Attrs().MTU = mtu - 1
	}
	if l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("set mtu %d on bridge %s: %w", mtu, c.Name, err)
		}
	}
	if c.mac != nil && !bytes.Equal(l.Attrs().HardwareAddr, c.mac) {
		if err := netlink.LinkSetHardwareAddr(l, c.mac); err != nil {
			return nil, fmt.Errorf("set mac %s on bridge %s: %w", c.mac, c.Name, err)
		}
	} else if c.mac == nil && created {
		// A bridge whose MAC was never set takes its lowest port's MAC, so
		// the gateway's MAC would move as pods come and go. Setting the
		// random MAC it was born with pins it.
		if err := netlink.LinkSetHardwareAddr(l, l.Attrs().HardwareAddr); err != nil {
			return nil, fmt.Errorf("pin mac of bridge %s: %w", c.Name, err)
		}
	}
	if vrf != nil {
		// Enslaving to a VRF cycles the bridge; keep its IPv6 addresses
		// (gateways) across that (plugins#1151).
		if key := "net/ipv6/conf/" + c.Name + "/keep_addr_on_down"; l.Attrs().MasterIndex == 0 && sysctl.Exists(key) {
			if err := sysctl.Set(key, "1"); err != nil {
				return nil, err
			}
		}
		if err := setMaster(l, vrf); err != nil {
			return nil, err
		}
	}
	if anycast {
		// Every node's bridge has the same MAC, so the same IPv6 link-local
		// address: it is an anycast address like the gateway itself, and DAD
		// across the overlay would only mark it failed.
		if key := "net/ipv6/conf/" + c.Name + "/accept_dad"; sysctl.Exists(key) {
			if err := sysctl.Set(key, "0"); err != nil {
				return nil, err
			}
		}
	}
	return l, setUp(l)
}

// ensureVXLAN creates or verifies the VXLAN device, plugs it into the
// bridge and does the BUM mode's work on it (bumMode.ensure).
func ensureVXLAN(c *VXLANConf, u *underlay, mtu int, br netlink.Link, anycast bool, o *owned, rb *cniutil.Rollback) (netlink.Link, error) {
	want := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: c.Name(), MTU: mtu},
		VxlanId:      int(c.VNI),
		VtepDevIndex: u.link.Attrs().Index,
		SrcAddr:      u.local,
		Group:        c.mode.group(),
		Port:         c.Port,
		Learning:     c.learning(),
	}
	l, _, err := o.addLink(want, "vxlan.vni", rb)
	if err != nil {
		if errors.Is(err, syscall.EOPNOTSUPP) {
			return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig, "vxlan %s: the kernel has no VXLAN support (CONFIG_VXLAN)", c.Name())
		}
		return nil, err
	}
	if err := checkVXLANLink(l, c, u); err != nil {
		return nil, err
	}
	if l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("set mtu %d on %s: %w", mtu, c.Name(), err)
		}
	}
	if err := setMaster(l, br); err != nil {
		return nil, err
	}
	// The network's gateway address is on every node's bridge: ARP/ND for
	// it must be answered by the pod's own node, never flooded into the
	// overlay (every node would answer, and the last answer - another
	// node's bridge - would win). neigh_suppress on the VXLAN port does
	// that: the bridge does not flood requests for its own addresses to
	// the port (it also answers requests for neighbours it knows behind
	// the port, which is what EVPN speakers expect).
	if err := netlink.LinkSetBrNeighSuppress(l, true); err != nil {
		return nil, fmt.Errorf("neigh_suppress on %s: %w", c.Name(), err)
	}
	if anycast {
		if err := ensureAnycast(l, br.Attrs().HardwareAddr, u.local, c); err != nil {
			return nil, err
		}
	}
	if err := c.mode.ensure(l, u.local); err != nil {
		return nil, err
	}
	return l, setUp(l)
}

// checkVXLANLink compares an existing VXLAN device with the config.
func checkVXLANLink(l netlink.Link, c *VXLANConf, u *underlay) error {
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return cniutil.Errorf(types.ErrInvalidNetworkConfig, "%s is a %s device, not a vxlan", c.Name(), l.Type())
	}
	var diffs []string
	if vx.VxlanId != int(c.VNI) {
		diffs = append(diffs, fmt.Sprintf("vni %d (want %d)", vx.VxlanId, c.VNI))
	}
	if vx.Port != c.Port {
		diffs = append(diffs, fmt.Sprintf("port %d (want %d)", vx.Port, c.Port))
	}
	if vx.Learning != c.learning() {
		diffs = append(diffs, fmt.Sprintf("learning %t (want %t)", vx.Learning, c.learning()))
	}
	if !ipEqual(vx.Group, c.mode.group()) {
		diffs = append(diffs, fmt.Sprintf("group %s (want %s)", vx.Group, c.mode.group()))
	}
	if u != nil {
		if !ipEqual(vx.SrcAddr, u.local) {
			diffs = append(diffs, fmt.Sprintf("local %s (want %s)", vx.SrcAddr, u.local))
		}
		if vx.VtepDevIndex != u.link.Attrs().Index {
			diffs = append(diffs, fmt.Sprintf("dev index %d (want %s, index %d)", vx.VtepDevIndex, u.link.Attrs().Name, u.link.Attrs().Index))
		}
	}
	if len(diffs) > 0 {
		return cniutil.Errorf(types.ErrInvalidNetworkConfig, "vxlan %s exists with other attributes: %v; delete it (or run GC) to recreate", c.Name(), diffs)
	}
	return nil
}

func ipEqual(a, b net.IP) bool {
	if len(a) == 0 || a.IsUnspecified() {
		return len(b) == 0 || b.IsUnspecified()
	}
	return a.Equal(b)
}

func hostInterface(l netlink.Link) *current.Interface {
	a := l.Attrs()
	return &current.Interface{Name: a.Name, Mac: a.HardwareAddr.String(), Mtu: a.MTU}
}

// ensureAnycast keeps the anycast gateway node-local on the VXLAN port vx
// of a bridge whose MAC is gw (neigh_suppress, set on every VXLAN port,
// already keeps ARP/ND for the gateway on the node). In learning modes it
// pins gw with a permanent FDB entry of the VXLAN device pointing at this
// node's VTEP: the VXLAN device then never learns gw from another node and
// drops frames arriving with gw as source (another node's bridge
// speaking), so neither its FDB nor the bridge's ever sees the gateway MAC
// move. The bridge never sends to gw through the port (gw is its own,
// local, MAC), so the entry carries no traffic.
func ensureAnycast(vx netlink.Link, gw net.HardwareAddr, local net.IP, c *VXLANConf) error {
	if !c.learning() {
		return nil
	}
	if err := netlink.NeighSet(anycastNeigh(vx, gw, local)); err != nil {
		return fmt.Errorf("fdb replace %s dst %s dev %s self permanent: %w", gw, local, vx.Attrs().Name, err)
	}
	return nil
}

// anycastNeigh pins the anycast gateway's MAC to this node's VTEP.
func anycastNeigh(vx netlink.Link, gw net.HardwareAddr, local net.IP) *netlink.Neigh {
	return vxlanfdb.Entry(vx, gw, local)
}

// checkNeighSuppress verifies neigh_suppress on the VXLAN port.
func checkNeighSuppress(vx netlink.Link) error {
	pi, err := netlinksafe.LinkGetProtinfo(vx)
	if err != nil {
		return fmt.Errorf("bridge port flags of %s: %w", vx.Attrs().Name, err)
	}
	if !pi.NeighSuppress {
		return fmt.Errorf("vxlan %s: neigh_suppress is off: ARP/ND for the gateway would cross the overlay", vx.Attrs().Name)
	}
	return nil
}

// checkAnycast verifies the anycast gateway's FDB pin.
func checkAnycast(vx netlink.Link, gw net.HardwareAddr, local net.IP, c *VXLANConf) error {
	if !c.learning() {
		return nil
	}
	pinned, err := hasFDB(vx, anycastNeigh(vx, gw, local))
	if err != nil || pinned {
		return err
	}
	return fmt.Errorf("vxlan %s lacks the permanent fdb entry %s dst %s for the anycast gateway", vx.Attrs().Name, gw, local)
}
