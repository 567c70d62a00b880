package main

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/cniutil"
	vlog "github.com/vxvrf/cni/pkg/log"
	"github.com/vxvrf/cni/pkg/naming"
)

func cmdAdd(args *skel.CmdArgs) error {
	conf, prev, err := cniutil.Preamble(args, parseConfig)
	if err != nil {
		return err
	}
	ipamD, err := newDelegate(conf.IPAM.Type)
	if err != nil {
		return err
	}
	mac, err := conf.podMAC(args.Args)
	if err != nil {
		return err
	}
	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return cniutil.Errorf(types.ErrInvalidEnvironmentVariables, "veth-attach: CNI_NETNS %q: %v", args.Netns, err)
	}
	defer podNS.Close()
	hostNS, err := ns.GetCurrentNS()
	if err != nil {
		return fmt.Errorf("open node netns: %w", err)
	}
	defer hostNS.Close()

	br, err := findBridge(conf.Bridge, prev)
	if err != nil {
		return err
	}
	mtu := conf.MTU
	if mtu == 0 {
		mtu = br.Attrs().MTU
	}
	hostName := naming.HostVethName(conf.Name, args.ContainerID, args.IfName)
	vlog.Set("host_veth", hostName)
	vlog.Set("bridge", br.Attrs().Name)
	// Refuse before creating anything: a second ADD must not touch the first.
	if err := checkFree(podNS, args.IfName, hostName); err != nil {
		return err
	}

	// Addresses: delegated IPAM, else the prevResult ips nobody owns yet.
	// The IPAM runs first, so that its addresses are checked against the
	// MTU before any link exists.
	success := false
	res := cniutil.NewResult(prev)
	var newIPs []*current.IPConfig
	var routes []*types.Route
	if ipamD != nil {
		vlog.Set("ipam", conf.IPAM.Type)
		ipamRes, err := ipamD.add(args.StdinData)
		if err != nil {
			return err
		}
		defer func() {
			if !success {
				_ = ipamD.del(args.StdinData)
			}
		}()
		if err := checkIPAMResult(conf.IPAM.Type, ipamRes); err != nil {
			return err
		}
		newIPs, routes = ipamRes.IPs, ipamRes.Routes
		res.IPs = append(res.IPs, ipamRes.IPs...)
		res.Routes = append(res.Routes, ipamRes.Routes...)
		cniutil.MergeDNS(&res.DNS, ipamRes.DNS)
	} else {
		for _, ipc := range res.IPs {
			if ipc.Interface == nil {
				newIPs = append(newIPs, ipc)
			}
		}
		routes = res.Routes
	}
	if err := checkMTU(conf.MTU, br, mtu, newIPs); err != nil {
		return err
	}
	if err := checkPodIPs(newIPs); err != nil {
		return err
	}
	if err := checkPodRoutes(newIPs, routes); err != nil {
		return err
	}
	if err := checkOverlap(br, newIPs); err != nil {
		return err
	}

	hostIf, podIf, err := ensureVeth(podNS, hostNS, args.IfName, hostName, mtu, mac)
	if err != nil {
		return err
	}
	vlog.Did("created", hostName, args.IfName)
	vlog.L().Debug("veth", "host", hostName, "pod", args.IfName, "mac", podIf.HardwareAddr.String(), "mtu", podIf.MTU)
	defer func() {
		if !success {
			_ = deleteHostVeth(hostName)
		}
	}()
	tag := naming.AttachmentTag(conf.Name, args.ContainerID, args.IfName)
	if err := ensurePort(hostName, tag, br, conf.Hairpin); err != nil {
		return err
	}

	res.Interfaces = append(res.Interfaces,
		&current.Interface{Name: hostIf.Name, Mac: hostIf.HardwareAddr.String(), Mtu: hostIf.MTU},
		&current.Interface{Name: podIf.Name, Mac: podIf.HardwareAddr.String(), Mtu: podIf.MTU, Sandbox: args.Netns})
	podIdx := len(res.Interfaces) - 1
	for _, ipc := range newIPs {
		ipc.Interface = current.Int(podIdx)
	}

	if err := configurePod(podNS, podIf, newIPs, routes, conf.EnableDAD); err != nil {
		return err
	}
	vlog.Did("addresses", ipConfigStrings(newIPs)...)
	for _, r := range routes {
		vlog.L().Debug("pod route", "dst", r.Dst.String(), "gw", r.GW)
	}
	if err := ensureGateways(br, newIPs); err != nil {
		return err
	}
	if err := waitForwarding(hostName); err != nil {
		return err
	}
	// Addresses may be reused with a new MAC: refresh neighbours' caches.
	announce(podNS, podIf, newIPs)
	success = true
	return types.PrintResult(res, conf.CNIVersion)
}

// cmdDel reads only the network name and ipam.type (parseTeardown): a
// config that is invalid or changed since ADD never blocks a teardown.
// An ipam.type that ADD refuses is not run (nothing can have been
// allocated through it).
func cmdDel(args *skel.CmdArgs) error {
	conf, err := cniutil.DelPreamble(args, parseTeardown)
	if err != nil {
		return err
	}
	vlog.Set("host_veth", naming.HostVethName(conf.Name, args.ContainerID, args.IfName))
	vlog.Did("removed") // delLink adds what it deletes
	var errs []error
	if ipamD, err := newDelegate(conf.IPAMType); err != nil {
		fmt.Fprintf(os.Stderr, "veth-attach DEL: not running the IPAM: %v\n", err)
	} else if ipamD != nil {
		if err := ipamD.del(args.StdinData); err != nil {
			errs = append(errs, err)
		}
	}
	if args.Netns != "" {
		err := inNSPath(args.Netns, func(ns.NetNS) error { return deletePodVeth(args.IfName) })
		if err != nil && !cniutil.IsGone(err) {
			errs = append(errs, err)
		}
	}
	if err := deleteHostVeth(naming.HostVethName(conf.Name, args.ContainerID, args.IfName)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, prev, err := cniutil.ChainedPreamble(args, "veth-attach", parseConfig)
	if err != nil {
		return err
	}
	ipamD, err := newDelegate(conf.IPAM.Type)
	if err != nil {
		return err
	}
	if ipamD != nil {
		if err := ipamD.check(args.StdinData); err != nil {
			return err
		}
	}
	br, err := findBridge(conf.Bridge, prev)
	if err != nil {
		return err
	}
	return checkAttachment(args, conf, prev, br)
}

func cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	ipamD, err := newDelegate(conf.IPAM.Type)
	if err != nil || ipamD == nil {
		return err
	}
	return ipamD.status(args.StdinData)
}

// cmdGC reads only what parseTeardown reads. Its own veths are collected
// even when ipam.type is refused (code 7, after the collection).
func cmdGC(args *skel.CmdArgs) error {
	conf, err := parseTeardown(args.StdinData)
	if err != nil {
		return err
	}
	var errs []error
	if ipamD, err := newDelegate(conf.IPAMType); err != nil {
		errs = append(errs, err)
	} else if ipamD != nil {
		if err := ipamD.gc(args.StdinData); err != nil {
			errs = append(errs, err)
		}
	}
	valid, present, err := cniutil.ValidAttachments(args.StdinData)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	vlog.Did("removed") // delLink adds what it deletes
	if !present {
		fmt.Fprintln(os.Stderr, "veth-attach GC: no cni.dev/valid-attachments key; releasing nothing")
		return errors.Join(errs...)
	}
	errs = append(errs, gcHostVeths(conf.Name, valid)...)
	return errors.Join(errs...)
}

// ipConfigStrings is the addresses of ips with their prefix lengths.
func ipConfigStrings(ips []*current.IPConfig) []string {
	out := make([]string, len(ips))
	for i, ipc := range ips {
		out[i] = ipc.Address.String()
	}
	return out
}

// minIPv6MTU is the smallest MTU on which the kernel keeps IPv6 enabled.
const minIPv6MTU = 1280

// checkMTU refuses an IPv6 address on a link whose MTU leaves IPv6
// disabled (code 7), naming where the MTU comes from.
func checkMTU(confMTU int, br netlink.Link, mtu int, ips []*current.IPConfig) error {
	if mtu >= minIPv6MTU {
		return nil
	}
	for _, ipc := range ips {
		if ipc.Address.IP.To4() == nil {
			from := fmt.Sprintf("mtu %d (key \"mtu\")", mtu)
			if confMTU == 0 {
				from = fmt.Sprintf("the MTU %d of bridge %q (no \"mtu\" key)", mtu, br.Attrs().Name)
			}
			return cniutil.Errorf(types.ErrInvalidNetworkConfig,
				"IPv6 address %s needs an MTU of at least %d; %s is below it", ipc.Address.String(), minIPv6MTU, from)
		}
	}
	return nil
}

// checkIPAMResult refuses an IPAM result with entries veth-attach cannot
// configure (code 7 naming the IPAM): a null ip or route, an ip without a
// usable address and prefix, a route without dst.
func checkIPAMResult(plugin string, r *current.Result) error {
	for i, ipc := range r.IPs {
		if ipc == nil || ipc.Address.IP == nil || ipc.Address.Mask == nil {
			return cniutil.Errorf(types.ErrInvalidNetworkConfig, "ipam %s ADD: result ips[%d] has no address/prefix", plugin, i)
		}
		if _, bits := ipc.Address.Mask.Size(); bits == 0 {
			return cniutil.Errorf(types.ErrInvalidNetworkConfig, "ipam %s ADD: result ips[%d] %s has an invalid prefix", plugin, i, ipc.Address.String())
		}
	}
	for i, r := range r.Routes {
		if r == nil || r.Dst.IP == nil {
			return cniutil.Errorf(types.ErrInvalidNetworkConfig, "ipam %s ADD: result routes[%d] has no dst", plugin, i)
		}
	}
	return nil
}

// checkPodIPs refuses (7) addresses the pod interface cannot take, before
// any link exists: a multicast or unspecified address, the same address
// twice.
func checkPodIPs(ips []*current.IPConfig) error {
	seen := map[string]int{}
	for i, ipc := range ips {
		a := ipc.Address.IP
		if a.IsMulticast() || a.IsUnspecified() {
			return cniutil.Errorf(types.ErrInvalidNetworkConfig, "ips[%d] %s: not a unicast address", i, ipc.Address.String())
		}
		if j, dup := seen[a.String()]; dup {
			return cniutil.Errorf(types.ErrInvalidNetworkConfig, "ips[%d] %s: the same address as ips[%d]", i, a, j)
		}
		seen[a.String()] = i
	}
	return nil
}

// checkPodRoutes refuses (7) the routes the kernel would refuse on the pod
// interface, before any link exists: a gateway (given, or the ip gateway
// a route without one uses) of another family than its dst, or outside
// every pod subnet and every earlier gateway-less route; the same route
// (dst, gateway, table) twice. Without addresses routes are not
// configured and not checked.
func checkPodRoutes(ips []*current.IPConfig, routes []*types.Route) error {
	if len(ips) == 0 {
		return nil
	}
	// The gateway ipam.ConfigureIface gives a route without one.
	var v4gw, v6gw net.IP
	for _, ipc := range ips {
		if ipc.Gateway.To4() != nil && v4gw == nil {
			v4gw = ipc.Gateway
		} else if ipc.Gateway.To4() == nil && v6gw == nil {
			v6gw = ipc.Gateway
		}
	}
	var onLink []net.IPNet
	for _, ipc := range ips {
		onLink = append(onLink, net.IPNet{IP: ipc.Address.IP.Mask(ipc.Address.Mask), Mask: ipc.Address.Mask})
	}
	reachable := func(gw net.IP) bool {
		for _, n := range onLink {
			if n.Contains(gw) {
				return true
			}
		}
		return false
	}
	seen := map[string]int{}
	for i, r := range routes {
		gw, from := r.GW, "gw"
		if gw == nil {
			gw, from = v6gw, "the ip gateway it uses"
			if r.Dst.IP.To4() != nil {
				gw = v4gw
			}
		}
		table := 0
		if r.Table != nil {
			table = *r.Table
		}
		key := fmt.Sprintf("%s via %s table %d", r.Dst.String(), gw, table)
		if j, dup := seen[key]; dup {
			return cniutil.Errorf(types.ErrInvalidNetworkConfig, "routes[%d] %s: the same route as routes[%d]", i, key, j)
		}
		seen[key] = i
		if gw == nil {
			onLink = append(onLink, r.Dst)
			continue
		}
		if (gw.To4() == nil) != (r.Dst.IP.To4() == nil) {
			return cniutil.Errorf(types.ErrInvalidNetworkConfig, "routes[%d] %s: %s %s is of another address family", i, r.Dst.String(), from, gw)
		}
		if !reachable(gw) {
			return cniutil.Errorf(types.ErrInvalidNetworkConfig, "routes[%d] %s: %s %s is in none of the pod's subnets %v", i, r.Dst.String(), from, gw, onLink)
		}
	}
	return nil
}
