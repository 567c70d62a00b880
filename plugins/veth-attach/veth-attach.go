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
	a, err := prepare(args, conf, prev)
	if err != nil {
		return err
	}
	defer a.close()
	var rb cniutil.Rollback
	defer rb.UnlessDone()
	if err := a.addresses(&rb); err != nil {
		return err
	}
	if err := a.ensureLinks(&rb); err != nil {
		return err
	}
	if err := a.configure(); err != nil {
		return err
	}
	rb.Done()
	return types.PrintResult(a.res, conf.CNIVersion)
}

// attachment is one ADD's work: what prepare found, and what the steps
// add (the result, the pod's addresses and routes, its links).
type attachment struct {
	args          *skel.CmdArgs
	conf          *NetConf
	ipam          *delegate
	mac           string
	podNS, hostNS ns.NetNS
	br            netlink.Link
	mtu           int
	hostName      string
	res           *current.Result
	newIPs        []*current.IPConfig
	routes        []*types.Route
	hostIf, podIf net.Interface
}

// prepare resolves everything ADD needs before it changes anything: the
// IPAM delegate, the pod's MAC, both namespaces, the bridge and MTU, the
// host veth's name; and refuses when the interface names are taken (a
// second ADD must not touch the first).
func prepare(args *skel.CmdArgs, conf *NetConf, prev *current.Result) (*attachment, error) {
	a := &attachment{args: args, conf: conf, res: cniutil.NewResult(prev)}
	var err error
	if a.ipam, err = newDelegate(conf.IPAM.Type); err != nil {
		return nil, err
	}
	if a.mac, err = conf.podMAC(args.Args); err != nil {
		return nil, err
	}
	if a.podNS, err = ns.GetNS(args.Netns); err != nil {
		return nil, cniutil.Errorf(types.ErrInvalidEnvironmentVariables, "veth-attach: CNI_NETNS %q: %v", args.Netns, err)
	}
	if a.hostNS, err = ns.GetCurrentNS(); err != nil {
		a.close()
		return nil, fmt.Errorf("open node netns: %w", err)
	}
	if a.br, err = findBridge(conf.Bridge, prev); err != nil {
		a.close()
		return nil, err
	}
	a.mtu = conf.MTU
	if a.mtu == 0 {
		a.mtu = a.br.Attrs().MTU
	}
	a.hostName = naming.HostVethName(conf.Name, args.ContainerID, args.IfName)
	vlog.Set("host_veth", a.hostName)
	vlog.Set("bridge", a.br.Attrs().Name)
	if err := checkFree(a.podNS, args.IfName, a.hostName); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *attachment) close() {
	for _, n := range []ns.NetNS{a.podNS, a.hostNS} {
		if n != nil {
			n.Close()
		}
	}
}

// addresses gets the pod's addresses — from the delegated IPAM (released
// again by the rollback), else the prevResult ips nobody owns yet — and
// checks them, with their routes, against the MTU, each other and the
// node's other networks before any link exists.
func (a *attachment) addresses(rb *cniutil.Rollback) error {
	if a.ipam != nil {
		vlog.Set("ipam", a.conf.IPAM.Type)
		ipamRes, err := a.ipam.add(a.args.StdinData)
		if err != nil {
			return err
		}
		rb.Push(func() { _ = a.ipam.del(a.args.StdinData) })
		if err := checkIPAMResult(a.conf.IPAM.Type, ipamRes); err != nil {
			return err
		}
		a.newIPs, a.routes = ipamRes.IPs, ipamRes.Routes
		a.res.IPs = append(a.res.IPs, ipamRes.IPs...)
		a.res.Routes = append(a.res.Routes, ipamRes.Routes...)
		cniutil.MergeDNS(&a.res.DNS, ipamRes.DNS)
	} else {
		for _, ipc := range a.res.IPs {
			if ipc.Interface == nil {
				a.newIPs = append(a.newIPs, ipc)
			}
		}
		a.routes = a.res.Routes
	}
	if err := checkMTU(a.conf.MTU, a.br, a.mtu, a.newIPs); err != nil {
		return err
	}
	if err := checkPodIPs(a.newIPs); err != nil {
		return err
	}
	if err := checkPodRoutes(a.newIPs, a.routes); err != nil {
		return err
	}
	return checkOverlap(a.br, a.newIPs)
}

// ensureLinks creates the veth pair (deleted again by the rollback), puts
// its host end on the bridge and records both ends in the result.
func (a *attachment) ensureLinks(rb *cniutil.Rollback) error {
	var err error
	a.hostIf, a.podIf, err = ensureVeth(a.podNS, a.hostNS, a.args.IfName, a.hostName, a.mtu, a.mac)
	if err != nil {
		return err
	}
	vlog.Did("created", a.hostName, a.args.IfName)
	vlog.L().Debug("veth", "host", a.hostName, "pod", a.args.IfName, "mac", a.podIf.HardwareAddr.String(), "mtu", a.podIf.MTU)
	rb.Push(func() { _ = deleteHostVeth(a.hostName) })
	tag := naming.AttachmentTag(a.conf.Name, a.args.ContainerID, a.args.IfName)
	if err := ensurePort(a.hostName, tag, a.br, a.conf.Hairpin); err != nil {
		return err
	}
	h, p := a.hostIf, a.podIf
	a.res.Interfaces = append(a.res.Interfaces,
		&current.Interface{Name: h.Name, Mac: h.HardwareAddr.String(), Mtu: h.MTU},
		&current.Interface{Name: p.Name, Mac: p.HardwareAddr.String(), Mtu: p.MTU, Sandbox: a.args.Netns})
	podIdx := len(a.res.Interfaces) - 1
	for _, ipc := range a.newIPs {
		ipc.Interface = current.Int(podIdx)
	}
	return nil
}

// configure gives the pod its addresses and routes, the bridge the
// gateways, waits for the port to forward and announces the pod's
// addresses (they may be reused with a new MAC).
func (a *attachment) configure() error {
	if err := configurePod(a.podNS, a.podIf, a.newIPs, a.routes, a.conf.EnableDAD); err != nil {
		return err
	}
	vlog.Did("addresses", ipConfigStrings(a.newIPs)...)
	for _, r := range a.routes {
		vlog.L().Debug("pod route", "dst", r.Dst.String(), "gw", r.GW)
	}
	if err := ensureGateways(a.br, a.newIPs); err != nil {
		return err
	}
	if err := waitForwarding(a.hostName); err != nil {
		return err
	}
	announce(a.podNS, a.podIf, a.newIPs)
	return nil
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
