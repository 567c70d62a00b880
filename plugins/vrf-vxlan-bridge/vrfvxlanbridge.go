package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/cniutil"
	vlog "github.com/vxvrf/cni/pkg/log"
	"github.com/vxvrf/cni/pkg/uplink"
)

// plan is what ADD and CHECK work from: the config, prevResult and what
// the node resolves them to.
type plan struct {
	conf *NetConf
	prev *current.Result
	u    *underlay // the VXLAN device's uplink; nil without VXLAN
	mtu  int       // the bridge MTU (bridgeMTU)
}

// load is what ADD and CHECK start with: the command preamble
// (cniutil.Preamble), the underlay (with VXLAN) and the bridge MTU. For ADD
// it also refuses a chain that runs this stage after the pod interface
// exists: the bridge is what the stage creating it plugs the pod into.
func load(args *skel.CmdArgs, add bool) (*plan, error) {
	conf, prev, err := cniutil.Preamble(args, parseConfig)
	if err != nil {
		return nil, err
	}
	if add {
		if err := cniutil.BeforePod(prev, "vrf-vxlan-bridge", "veth-attach"); err != nil {
			return nil, err
		}
	}
	p := &plan{conf: conf, prev: prev}
	if conf.VXLAN != nil {
		if p.u, err = resolveUnderlay(conf, prev); err != nil {
			return nil, err
		}
	}
	if p.mtu, err = bridgeMTU(conf, prev, p.u); err != nil {
		return nil, err
	}
	return p, nil
}

// cmdAdd creates or adjusts the network's VRF, bridge and VXLAN device and
// the VRF's egress. A failed ADD changes nothing: what it created is
// removed again.
func cmdAdd(args *skel.CmdArgs) error {
	p, err := load(args, true)
	if err != nil {
		return err
	}
	up, err := p.egressUplink()
	if err != nil {
		return err
	}
	// Refuse names held by devices that are not this network's before
	// anything changes.
	own, err := judge(p.conf.devices())
	if err != nil {
		return wrap(err)
	}
	var rb cniutil.Rollback
	defer rb.UnlessDone()
	names, err := p.ensureDevices(own, &rb)
	if err != nil {
		return wrap(err)
	}
	if err := p.ensureEgress(up); err != nil {
		return wrap(err)
	}
	if err := p.printResult(names); err != nil {
		return err
	}
	rb.Done()
	return nil
}

// ensureDevices creates or adjusts the VRF, the bridge (with the node's
// addresses) and the VXLAN device (with its BUM mode), in that order, and
// returns their names. What it creates is deleted again unless rb is done.
// The log line lists the devices as created or reused (each key shown even
// when empty).
func (p *plan) ensureDevices(own *owned, rb *cniutil.Rollback) ([]string, error) {
	c := p.conf
	vlog.Did("created")
	vlog.Did("reused")
	var names []string
	var vrf netlink.Link
	if c.VRF != nil {
		l, err := ensureVRF(c.VRF, own, rb)
		if err != nil {
			return nil, err
		}
		vrf = l
		names = append(names, c.VRF.Name)
	}
	br, err := ensureBridge(&c.Bridge, p.mtu, vrf, c.anycast(), own, rb)
	if err != nil {
		return nil, err
	}
	if err := ensureNodeAddresses(br, c.Bridge.nodeAddrs); err != nil {
		return nil, err
	}
	names = append(names, c.Bridge.Name)
	if c.VXLAN == nil {
		return names, nil
	}
	vx, err := ensureVXLAN(c.VXLAN, p.u, p.mtu, br, c.anycast(), own, rb)
	if err != nil {
		return nil, err
	}
	if len(c.Bridge.nodeAddrs) > 0 {
		if err := leaveAnycast(c.Name, br, vx, p.u.local); err != nil {
			return nil, err
		}
	}
	vlog.L().Debug("vxlan", "name", c.VXLAN.Name(), "vni", c.VXLAN.VNI, "bum", c.VXLAN.mode.name(), "local", p.u.local.String(), "uplink", p.u.link.Attrs().Name, "mtu", p.mtu)
	return append(names, c.VXLAN.Name()), nil
}

// ensureEgress routes the VRF's traffic for outside the overlay through
// the uplink up (nil: no vrf.egress, nothing to do).
func (p *plan) ensureEgress(up netlink.Link) error {
	if up == nil {
		return nil
	}
	if err := ensureEgress(p.conf.VRF, up); err != nil {
		return err
	}
	vlog.Set("egress", up.Attrs().Name)
	return nil
}

// printResult prints prevResult with the named devices added, as the
// kernel has them now.
func (p *plan) printResult(names []string) error {
	result := cniutil.NewResult(p.prev)
	for _, n := range names {
		l, err := netlinksafe.LinkByName(n)
		if err != nil {
			return wrap(fmt.Errorf("re-read %s: %w", n, err))
		}
		result.Interfaces = append(result.Interfaces, hostInterface(l))
	}
	return types.PrintResult(result, p.conf.CNIVersion)
}

// wrap keeps a *types.Error and turns anything else into an internal error
// naming the plugin.
func wrap(err error) error {
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	return cniutil.Errorf(types.ErrInternal, "vrf-vxlan-bridge: %v", err)
}

func cmdCheck(args *skel.CmdArgs) error {
	p, err := load(args, false)
	if err != nil {
		return err
	}
	if err := checkDevices(p.conf, p.u, p.mtu); err != nil {
		return wrap(fmt.Errorf("check: %w", err))
	}
	if _, err := judge(p.conf.devices()); err != nil {
		return wrap(err)
	}
	up, err := p.egressUplink()
	if err != nil || up == nil {
		return err
	}
	if err := checkEgress(p.conf.VRF, up); err != nil {
		return wrap(fmt.Errorf("check: %w", err))
	}
	return nil
}

// egressUplink is the uplink of vrf.egress: the VXLAN uplink, else the
// uplink found as for VXLAN; nil without vrf.egress.
func (p *plan) egressUplink() (netlink.Link, error) {
	if p.conf.VRF == nil || !p.conf.VRF.Egress {
		return nil, nil
	}
	if p.u != nil {
		return p.u.link, nil
	}
	l, err := findUplink(p.conf, p.prev)
	if err != nil {
		return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig, "vrf.egress: %v", err)
	}
	return l, nil
}

// checkDevices verifies the devices exist with the configured attributes,
// section by section.
func checkDevices(conf *NetConf, u *underlay, mtu int) error {
	var vrf netlink.Link
	if conf.VRF != nil {
		l, err := netlinksafe.LinkByName(conf.VRF.Name)
		if err != nil {
			return fmt.Errorf("vrf %s: %w", conf.VRF.Name, err)
		}
		if err := checkVRFLink(l, conf.VRF); err != nil {
			return err
		}
		vrf = l
	}
	br, err := checkBridge(conf, vrf, mtu)
	if err != nil {
		return err
	}
	if conf.VXLAN != nil {
		if err := checkVXLAN(conf, u, br); err != nil {
			return err
		}
	}
	return checkNodeAddresses(br, conf.Bridge.nodeAddrs)
}

// checkBridge verifies the bridge: its type, VRF, MTU, MAC, state and
// ports.
func checkBridge(conf *NetConf, vrf netlink.Link, mtu int) (netlink.Link, error) {
	br, err := netlinksafe.LinkByName(conf.Bridge.Name)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", conf.Bridge.Name, err)
	}
	if br.Type() != "bridge" {
		return nil, fmt.Errorf("%s is a %s device, not a bridge", conf.Bridge.Name, br.Type())
	}
	a := br.Attrs()
	if vrf != nil && a.MasterIndex != vrf.Attrs().Index {
		return nil, fmt.Errorf("bridge %s is not enslaved to vrf %s", a.Name, conf.VRF.Name)
	}
	if a.MTU != mtu {
		return nil, fmt.Errorf("bridge %s has mtu %d, want %d", a.Name, a.MTU, mtu)
	}
	if conf.Bridge.mac != nil && !bytes.Equal(a.HardwareAddr, conf.Bridge.mac) {
		return nil, fmt.Errorf("bridge %s has mac %s, want %s", a.Name, a.HardwareAddr, conf.Bridge.mac)
	}
	if a.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("bridge %s is down", a.Name)
	}
	return br, checkPorts(br)
}

// checkVXLAN verifies the VXLAN device: its attributes, port of the
// bridge br, state, the BUM mode's work, neigh_suppress and the anycast
// gateway's pin, or with node addresses that the bridge has left the
// anycast MAC.
func checkVXLAN(conf *NetConf, u *underlay, br netlink.Link) error {
	c, a := conf.VXLAN, br.Attrs()
	vx, err := netlinksafe.LinkByName(c.Name())
	if err != nil {
		return fmt.Errorf("vxlan %s: %w", c.Name(), err)
	}
	if err := checkVXLANLink(vx, c, u); err != nil {
		return err
	}
	if vx.Attrs().MasterIndex != a.Index {
		return fmt.Errorf("vxlan %s is not a port of bridge %s", c.Name(), a.Name)
	}
	if vx.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("vxlan %s is down", c.Name())
	}
	if err := c.mode.check(vx, u.local); err != nil {
		return err
	}
	if err := checkNeighSuppress(vx); err != nil {
		return err
	}
	if conf.anycast() {
		return checkAnycast(vx, a.HardwareAddr, u.local, c)
	}
	if len(conf.Bridge.nodeAddrs) > 0 {
		shared, _, err := anycastLeft(conf.Name, br, vx, u.local)
		if err != nil {
			return err
		}
		if shared {
			return fmt.Errorf("bridge %s still has the anycast gateway MAC %s every node's bridge shares (from bridge.mac or anycastGateway): with bridge.nodeAddresses it needs one of its own; the next ADD gives it one", a.Name, a.HardwareAddr)
		}
	}
	return nil
}

// cmdStatus answers 50 when ADD would fail on this node's state: the VXLAN
// uplink missing, down or without the VTEP address; a configured device
// name, the VNI or the VRF table held by a device that is not this
// network's, or any other clash judge refuses (a changed VNI on a live
// network, ...); a vrf key on a kernel without VRF. A config ADD refuses
// is 7, as in ADD. It changes nothing on the node except for the VRF
// probe: a VRF device that exists for a moment (see probeVRF).
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	notAvailable := func(err error) error {
		var te *types.Error
		if errors.As(err, &te) {
			return cniutil.Errorf(cniutil.ErrPluginNotAvailable, "%s", te.Msg)
		}
		return cniutil.Errorf(cniutil.ErrPluginNotAvailable, "vrf-vxlan-bridge: %v", err)
	}
	if conf.VXLAN != nil {
		link, err := uplink.Find(conf.VXLAN.Dev)
		if err != nil {
			return cniutil.Errorf(cniutil.ErrPluginNotAvailable, "vrf-vxlan-bridge: vxlan uplink: %v", err)
		}
		if err := uplink.Ready(link); err != nil {
			return cniutil.Errorf(cniutil.ErrPluginNotAvailable, "vrf-vxlan-bridge: vxlan %v", err)
		}
		if _, err := uplink.Address(link, conf.VXLAN.local); err != nil {
			return cniutil.Errorf(cniutil.ErrPluginNotAvailable, "vrf-vxlan-bridge: vxlan VTEP address: %v", err)
		}
	}
	if _, err := judge(conf.devices()); err != nil {
		return notAvailable(err)
	}
	if conf.VRF != nil {
		if err := probeVRF(conf.VRF); err != nil {
			return notAvailable(err)
		}
	}
	return nil
}

// cmdGC removes the network's VXLAN, bridge and VRF, and the VRF table's
// egress routes and rules, when the runtime says the network has no
// attachment left (an empty valid-attachments list). Without the key, or
// with attachments left, it keeps everything. It reads only the names it
// needs from the config (see teardownDevices), and deletes only what is
// this network's (see gcNetwork).
func cmdGC(args *skel.CmdArgs) error {
	valid, present, err := cniutil.ValidAttachments(args.StdinData)
	if err != nil {
		return err
	}
	vlog.Did("removed") // gcNetwork adds what it deletes
	if !present || len(valid) > 0 {
		return nil
	}
	if err := gcNetwork(teardownDevices(args.StdinData)); err != nil {
		return wrap(fmt.Errorf("gc: %w", err))
	}
	return nil
}
