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
	"github.com/vxvrf/cni/pkg/uplink"
)

// load is what ADD and CHECK start with: the netns guard, the config,
// prevResult, the underlay (with VXLAN) and the bridge MTU. For ADD it
// also refuses a chain that runs this stage after the pod interface
// exists: the bridge is what the stage creating it plugs the pod into.
func load(args *skel.CmdArgs, add bool) (conf *NetConf, prev *current.Result, u *underlay, mtu int, err error) {
	if err = cniutil.GuardNetNS(args.Netns); err != nil {
		return
	}
	if conf, err = parseConfig(args.StdinData); err != nil {
		return
	}
	if err = cniutil.CheckAttachment(args, conf.Name); err != nil {
		return
	}
	if prev, err = cniutil.PrevResult(&conf.PluginConf); err != nil {
		return
	}
	if add {
		if err = cniutil.BeforePod(prev, "vrf-vxlan-bridge", "veth-attach"); err != nil {
			return
		}
	}
	if conf.VXLAN != nil {
		if u, err = resolveUnderlay(conf, prev); err != nil {
			return
		}
	}
	mtu, err = bridgeMTU(conf, prev, u)
	return
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, prev, u, mtu, err := load(args, true)
	if err != nil {
		return err
	}
	var up netlink.Link
	if conf.VRF != nil && conf.VRF.Egress {
		if up, err = egressUplink(conf, prev, u); err != nil {
			return err
		}
	}
	// Refuse names held by devices that are not this network's before
	// anything changes.
	own, err := judge(conf.devices())
	if err != nil {
		return wrap(err)
	}

	// A failed ADD changes nothing: what it created is removed again.
	var rb rollback
	defer rb.unlessDone()
	track := func(l netlink.Link, isNew bool) {
		if l != nil && isNew {
			rb.push(func() { _ = netlink.LinkDel(l) })
		}
	}

	var names []string
	var vrf netlink.Link
	if conf.VRF != nil {
		l, isNew, err := ensureVRF(conf.VRF, own)
		track(l, isNew)
		if err != nil {
			return wrap(err)
		}
		if isNew {
			rb.push(func() { _ = deleteEgress(conf.VRF.Table, nil) })
		}
		vrf = l
		names = append(names, conf.VRF.Name)
	}
	br, isNew, err := ensureBridge(&conf.Bridge, mtu, vrf, conf.anycast(), own)
	track(br, isNew)
	if err != nil {
		return wrap(err)
	}
	if err := ensureNodeAddresses(br, conf.Bridge.nodeAddrs); err != nil {
		return wrap(err)
	}
	names = append(names, conf.Bridge.Name)
	if conf.VXLAN != nil {
		vx, isNew, err := ensureVXLAN(conf.VXLAN, u, mtu, br, conf.anycast(), own)
		track(vx, isNew)
		if err != nil {
			return wrap(err)
		}
		if len(conf.Bridge.nodeAddrs) > 0 {
			if err := leaveAnycast(conf.Name, br, vx, u.local); err != nil {
				return wrap(err)
			}
		}
		if len(conf.VXLAN.remotes) > 0 {
			if err := ensureRemotes(vx, peers(conf.VXLAN.remotes, u.local)); err != nil {
				return wrap(err)
			}
		}
		names = append(names, conf.VXLAN.Name())
	}

	if up != nil {
		if err := ensureEgress(conf.VRF, up); err != nil {
			return wrap(err)
		}
	}

	result := cniutil.NewResult(prev)
	for _, n := range names {
		l, err := netlinksafe.LinkByName(n)
		if err != nil {
			return wrap(fmt.Errorf("re-read %s: %w", n, err))
		}
		result.Interfaces = append(result.Interfaces, hostInterface(l))
	}
	if err := types.PrintResult(result, conf.CNIVersion); err != nil {
		return err
	}
	rb.done()
	return nil
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
	conf, prev, u, mtu, err := load(args, false)
	if err != nil {
		return err
	}
	if err := checkDevices(conf, u, mtu); err != nil {
		return wrap(fmt.Errorf("check: %w", err))
	}
	if _, err := judge(conf.devices()); err != nil {
		return wrap(err)
	}
	if conf.VRF != nil && conf.VRF.Egress {
		up, err := egressUplink(conf, prev, u)
		if err != nil {
			return err
		}
		if err := checkEgress(conf.VRF, up); err != nil {
			return wrap(fmt.Errorf("check: %w", err))
		}
	}
	return nil
}

// egressUplink is the VXLAN uplink, else the uplink found as for VXLAN.
func egressUplink(conf *NetConf, prev *current.Result, u *underlay) (netlink.Link, error) {
	if u != nil {
		return u.link, nil
	}
	l, err := findUplink(conf, prev)
	if err != nil {
		return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig, "vrf.egress: %v", err)
	}
	return l, nil
}

// checkDevices verifies the devices exist with the configured attributes.
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
	br, err := netlinksafe.LinkByName(conf.Bridge.Name)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", conf.Bridge.Name, err)
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("%s is a %s device, not a bridge", conf.Bridge.Name, br.Type())
	}
	a := br.Attrs()
	if vrf != nil && a.MasterIndex != vrf.Attrs().Index {
		return fmt.Errorf("bridge %s is not enslaved to vrf %s", a.Name, conf.VRF.Name)
	}
	if a.MTU != mtu {
		return fmt.Errorf("bridge %s has mtu %d, want %d", a.Name, a.MTU, mtu)
	}
	if conf.Bridge.mac != nil && !bytes.Equal(a.HardwareAddr, conf.Bridge.mac) {
		return fmt.Errorf("bridge %s has mac %s, want %s", a.Name, a.HardwareAddr, conf.Bridge.mac)
	}
	if a.Flags&net.FlagUp == 0 {
		return fmt.Errorf("bridge %s is down", a.Name)
	}
	if err := checkPorts(br); err != nil {
		return err
	}
	if conf.VXLAN == nil {
		return checkNodeAddresses(br, conf.Bridge.nodeAddrs)
	}
	vx, err := netlinksafe.LinkByName(conf.VXLAN.Name())
	if err != nil {
		return fmt.Errorf("vxlan %s: %w", conf.VXLAN.Name(), err)
	}
	if err := checkVXLANLink(vx, conf.VXLAN, u); err != nil {
		return err
	}
	if vx.Attrs().MasterIndex != a.Index {
		return fmt.Errorf("vxlan %s is not a port of bridge %s", conf.VXLAN.Name(), a.Name)
	}
	if vx.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("vxlan %s is down", conf.VXLAN.Name())
	}
	if err := checkRemotes(vx, peers(conf.VXLAN.remotes, u.local)); err != nil {
		return err
	}
	if err := checkNeighSuppress(vx); err != nil {
		return err
	}
	if conf.anycast() {
		return checkAnycast(vx, a.HardwareAddr, u.local, conf.VXLAN)
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
	return checkNodeAddresses(br, conf.Bridge.nodeAddrs)
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
	if !present || len(valid) > 0 {
		return nil
	}
	if err := gcNetwork(teardownDevices(args.StdinData)); err != nil {
		return wrap(fmt.Errorf("gc: %w", err))
	}
	return nil
}
