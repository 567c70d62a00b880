package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/pkg/sysctl"
)

// ifaNoDAD is IFA_F_NODAD: the gateway address on the bridge is usable at once.
const ifaNoDAD = 0x02

// mainTable is the kernel's main routing table.
const mainTable = 254

// findBridge returns the bridge to attach to: the configured one, else the
// last host interface of prevResult that is a Linux bridge in this netns.
func findBridge(name string, prev *current.Result) (netlink.Link, error) {
	if name != "" {
		l, err := netlinksafe.LinkByName(name)
		if err != nil {
			return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig, "veth-attach: bridge %q (key \"bridge\"): %v; the stage that creates it (vrf-vxlan-bridge) must come before veth-attach", name, err)
		}
		if l.Type() != "bridge" {
			return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig, "bridge %q (key \"bridge\") is a %s, not a bridge", name, l.Type())
		}
		return l, nil
	}
	if prev != nil {
		for i := len(prev.Interfaces) - 1; i >= 0; i-- {
			iface := prev.Interfaces[i]
			if iface.Sandbox != "" {
				continue
			}
			if l, err := netlinksafe.LinkByName(iface.Name); err == nil && l.Type() == "bridge" {
				return l, nil
			}
		}
	}
	return nil, cniutil.Errorf(types.ErrInvalidNetworkConfig,
		"veth-attach: no bridge: set the \"bridge\" key or chain veth-attach after a stage that puts a bridge in prevResult (vrf-vxlan-bridge must come before veth-attach)")
}

// checkFree refuses an attachment whose pod interface or host veth already
// exists, before anything is created.
func checkFree(podNS ns.NetNS, ifName, hostName string) error {
	err := cniutil.InNS(podNS, func(ns.NetNS) error {
		if _, err := netlinksafe.LinkByName(ifName); err == nil {
			return fmt.Errorf("interface %q already exists in %s", ifName, podNS.Path())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := netlinksafe.LinkByName(hostName); err == nil {
		return fmt.Errorf("host veth %q already exists: this attachment was already added", hostName)
	}
	return nil
}

// ensureVeth creates the veth pair from inside the pod netns; the host end
// lands in hostNS under its deterministic name.
func ensureVeth(podNS, hostNS ns.NetNS, ifName, hostName string, mtu int, mac string) (net.Interface, net.Interface, error) {
	var hostIf, podIf net.Interface
	err := cniutil.InNS(podNS, func(ns.NetNS) error {
		var err error
		hostIf, podIf, err = ip.SetupVethWithName(ifName, hostName, mtu, mac, hostNS)
		return err
	})
	if err != nil {
		return hostIf, podIf, fmt.Errorf("create veth %s/%s: %w", ifName, hostName, err)
	}
	return hostIf, podIf, nil
}

// ensurePort tags the host veth, plugs it into the bridge and brings it up.
func ensurePort(hostName, tag string, br netlink.Link, hairpin bool) error {
	l, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("host veth %q: %w", hostName, err)
	}
	if err := netlink.LinkSetAlias(l, tag); err != nil {
		return fmt.Errorf("set alias of %q: %w", hostName, err)
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("attach %q to bridge %q: %w", hostName, br.Attrs().Name, err)
	}
	if hairpin {
		if err := netlink.LinkSetHairpin(l, true); err != nil {
			return fmt.Errorf("hairpin on %q: %w", hostName, err)
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("set bridge %q up: %w", br.Attrs().Name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %q up: %w", hostName, err)
	}
	return nil
}

// configurePod puts the addresses and routes on the pod interface and
// brings it up. With DAD (enableDAD) ipam.ConfigureIface does it and waits
// out DAD. Without, configureNoDAD does the same work without its 50 ms
// sleeps: ConfigureIface's settle loop nearly always found the kernel's
// (DAD-less but asynchronous) completion still pending and slept 50 ms,
// half of a whole chain ADD.
func configurePod(podNS ns.NetNS, podIf net.Interface, ips []*current.IPConfig, routes []*types.Route, enableDAD bool) error {
	return cniutil.InNS(podNS, func(ns.NetNS) error {
		if !enableDAD && hasIPv6(ips) {
			if err := sysctl.Set("net/ipv6/conf/"+podIf.Name+"/accept_dad", "0"); err != nil {
				return fmt.Errorf("turn off DAD on %q: %w", podIf.Name, err)
			}
		}
		if len(ips) == 0 {
			l, err := netlinksafe.LinkByName(podIf.Name)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				return fmt.Errorf("set %q up: %w", podIf.Name, err)
			}
			return nil
		}
		if !enableDAD {
			return configureNoDAD(podIf.Name, ips, routes)
		}
		sub := &current.Result{Interfaces: []*current.Interface{{Name: podIf.Name}}, Routes: routes}
		for _, ipc := range ips {
			c := *ipc
			c.Interface = current.Int(0)
			sub.IPs = append(sub.IPs, &c)
		}
		if err := ipam.ConfigureIface(podIf.Name, sub); err != nil {
			return fmt.Errorf("configure %q: %w", podIf.Name, err)
		}
		return nil
	})
}

// configureNoDAD is ipam.ConfigureIface for an interface without DAD: the
// same sysctls, addresses, link up and routes (a route without a gateway
// goes via the first gateway of its family), but the IPv6 addresses are
// added with IFA_F_NODAD (usable at once) and only the kernel's own
// link-local address is waited for, in 1 ms steps.
func configureNoDAD(ifName string, ips []*current.IPConfig, routes []*types.Route) error {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("configure %q: %w", ifName, err)
	}
	v6 := hasIPv6(ips)
	if v6 {
		for _, dev := range []string{"lo", ifName} {
			key := "net/ipv6/conf/" + dev + "/disable_ipv6"
			if v, err := sysctl.Get(key); err == nil && v != "0" {
				if err := sysctl.Set(key, "0"); err != nil {
					return fmt.Errorf("enable IPv6 on %q: %w", dev, err)
				}
			}
		}
		if err := sysctl.Set("net/ipv6/conf/"+ifName+"/keep_addr_on_down", "1"); err != nil {
			return fmt.Errorf("keep addresses of %q when down: %w", ifName, err)
		}
	}
	var v4gw, v6gw net.IP
	for _, ipc := range ips {
		addr := &netlink.Addr{IPNet: &ipc.Address}
		if ipc.Address.IP.To4() == nil {
			addr.Flags = ifaNoDAD
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add %s to %q: %w", ipc.Address.String(), ifName, err)
		}
		switch {
		case ipc.Gateway == nil:
		case ipc.Gateway.To4() != nil && v4gw == nil:
			v4gw = ipc.Gateway
		case ipc.Gateway.To4() == nil && v6gw == nil:
			v6gw = ipc.Gateway
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %q up: %w", ifName, err)
	}
	if v6 {
		if err := settleIPv6(link, 5*time.Second); err != nil {
			return err
		}
	}
	for _, r := range routes {
		gw := r.GW
		if gw == nil {
			if r.Dst.IP.To4() != nil {
				gw = v4gw
			} else {
				gw = v6gw
			}
		}
		route := &netlink.Route{Dst: &r.Dst, LinkIndex: link.Attrs().Index, Gw: gw, Priority: r.Priority}
		if r.Table != nil {
			route.Table = *r.Table
		}
		if r.Scope != nil {
			route.Scope = netlink.Scope(*r.Scope)
		}
		if err := netlink.RouteAddEcmp(route); err != nil {
			return fmt.Errorf("route %s via %v dev %s: %w", r.Dst.String(), gw, ifName, err)
		}
	}
	return nil
}

// settleIPv6 waits, polling every millisecond for at most timeout, until no
// IPv6 address of link is tentative; one that failed DAD is an error.
func settleIPv6(link netlink.Link, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return fmt.Errorf("list addresses of %q: %w", link.Attrs().Name, err)
		}
		tentative := false
		for _, a := range addrs {
			if a.Flags&syscall.IFA_F_DADFAILED != 0 {
				return fmt.Errorf("address %s of %q failed DAD", a.IPNet, link.Attrs().Name)
			}
			tentative = tentative || a.Flags&syscall.IFA_F_TENTATIVE != 0
		}
		if !tentative {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%q still has tentative IPv6 addresses after %s", link.Attrs().Name, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func hasIPv6(ips []*current.IPConfig) bool {
	for _, ipc := range ips {
		if ipc.Address.IP.To4() == nil {
			return true
		}
	}
	return false
}

// ensureGateways puts each ip's gateway (with the ip's prefix length) on
// the bridge. The address is shared by every attachment, so EEXIST is
// fine. When the bridge is in a VRF, the pod subnet also gets a main-table
// route into the VRF so the node reaches its pods.
func ensureGateways(br netlink.Link, ips []*current.IPConfig) error {
	var vrf netlink.Link
	if mi := br.Attrs().MasterIndex; mi != 0 {
		if m, err := netlink.LinkByIndex(mi); err == nil && m.Type() == "vrf" {
			vrf = m
		}
	}
	for _, ipc := range ips {
		if ipc.Gateway != nil {
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: ipc.Gateway, Mask: ipc.Address.Mask}}
			if ipc.Gateway.To4() == nil {
				addr.Flags = ifaNoDAD
			}
			err := netlink.AddrAdd(br, addr)
			if addr.IP.To4() == nil && (err == nil || errors.Is(err, syscall.EEXIST)) {
				err = deprecateGateway(br, addr)
			}
			if err != nil && !errors.Is(err, syscall.EEXIST) {
				return fmt.Errorf("add gateway %s to bridge %q: %w", addr.IPNet, br.Attrs().Name, err)
			}
		}
		if vrf != nil {
			if err := ensureVRFRoute(ipc, vrf); err != nil {
				return err
			}
		}
	}
	return nil
}

// Address lifetimes (IFA_CACHEINFO): valid forever, preferred never.
const (
	lifetimeForever = 0xffffffff
	lifetimeNone    = 0
)

// deprecateGateway makes the IPv6 gateway gw on the bridge deprecated
// (preferred_lft 0, valid forever) when the bridge also has a node address
// in the gateway's subnet (vrf-vxlan-bridge's bridge.nodeAddresses): a
// deprecated address still answers neighbour solicitations and takes the
// pods' traffic, but the kernel picks it as source only when nothing
// else fits, so the node's own traffic into the subnet leaves with the
// node address instead of the address every node shares. A gateway added
// before the node address (a network from before the key) is changed in
// place. Without a node address it does nothing.
func deprecateGateway(br netlink.Link, gw *netlink.Addr) error {
	list, err := netlinksafe.AddrList(br, netlink.FAMILY_V6)
	if err != nil {
		return fmt.Errorf("list addresses of bridge %q: %w", br.Attrs().Name, err)
	}
	node, deprecated := false, false
	for _, a := range list {
		switch {
		case a.IP.Equal(gw.IP):
			deprecated = a.PreferedLft == lifetimeNone
		case a.IP.IsGlobalUnicast() && a.Mask.String() == gw.Mask.String() && gw.IPNet.Contains(a.IP) && a.Flags&unix.IFA_F_DEPRECATED == 0:
			node = true
		}
	}
	if !node || deprecated {
		return nil
	}
	d := *gw
	d.ValidLft, d.PreferedLft = lifetimeForever, lifetimeNone
	if err := netlink.AddrReplace(br, &d); err != nil {
		return fmt.Errorf("deprecate gateway %s on bridge %q: %w", gw.IPNet, br.Attrs().Name, err)
	}
	return nil
}

// ensureVRFRoute adds the main-table route "<subnet> dev <vrf> proto 118"
// (naming.RouteProtocol: the project's mark; the route goes with the VRF
// device). The same route without the mark, as the previous release made
// it, is marked; a route to the subnet through another device is left
// alone.
func ensureVRFRoute(ipc *current.IPConfig, vrf netlink.Link) error {
	subnet := &net.IPNet{IP: ipc.Address.IP.Mask(ipc.Address.Mask), Mask: ipc.Address.Mask}
	r := &netlink.Route{Dst: subnet, LinkIndex: vrf.Attrs().Index, Table: mainTable, Protocol: naming.RouteProtocol}
	err := netlink.RouteAdd(r)
	if err == nil || !errors.Is(err, syscall.EEXIST) {
		if err != nil {
			return fmt.Errorf("route %s dev %s: %w", subnet, vrf.Attrs().Name, err)
		}
		return nil
	}
	have, err := netlinksafe.RouteListFiltered(nl.GetIPFamily(subnet.IP), &netlink.Route{Dst: subnet, Table: mainTable},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes to %s: %w", subnet, err)
	}
	for _, h := range have {
		if h.LinkIndex == vrf.Attrs().Index && h.Protocol != naming.RouteProtocol && h.Gw == nil {
			if err := netlink.RouteReplace(r); err != nil {
				return fmt.Errorf("mark route %s dev %s: %w", subnet, vrf.Attrs().Name, err)
			}
		}
	}
	return nil
}

// Bridge port states (IFLA_BRPORT_STATE).
const (
	brStateListening  = 1
	brStateLearning   = 2
	brStateForwarding = 3
)

// portState reads the bridge port state of link index idx: one
// RTM_GETLINK of that link, IFLA_LINKINFO → IFLA_INFO_SLAVE_DATA →
// IFLA_BRPORT_STATE (the AF_BRIDGE dump it replaces listed every port of
// the node, so an ADD grew with the number of pods).
func portState(idx int) (uint8, error) {
	req := nl.NewNetlinkRequest(syscall.RTM_GETLINK, syscall.NLM_F_ACK)
	msg := nl.NewIfInfomsg(syscall.AF_UNSPEC)
	msg.Index = int32(idx)
	req.AddData(msg)
	msgs, err := req.Execute(syscall.NETLINK_ROUTE, syscall.RTM_NEWLINK)
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		ans := nl.DeserializeIfInfomsg(m)
		if int(ans.Index) != idx {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[ans.Len():])
		if err != nil {
			return 0, err
		}
		for _, a := range attrs {
			if a.Attr.Type&^syscall.NLA_F_NESTED != syscall.IFLA_LINKINFO {
				continue
			}
			infos, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return 0, err
			}
			for _, in := range infos {
				if in.Attr.Type&^syscall.NLA_F_NESTED != nl.IFLA_INFO_SLAVE_DATA {
					continue
				}
				port, err := nl.ParseRouteAttr(in.Value)
				if err != nil {
					return 0, err
				}
				for _, p := range port {
					if p.Attr.Type == nl.IFLA_BRPORT_STATE && len(p.Value) > 0 {
						return p.Value[0], nil
					}
				}
			}
		}
	}
	return 0, fmt.Errorf("link %d is not a bridge port", idx)
}

// waitForwarding polls (bounded, ~3 s) until the host veth's bridge port
// forwards. A port still listening/learning after that (STP with a forward
// delay) is reported on stderr and accepted: it will forward soon. A port
// that is disabled or blocking is an error.
func waitForwarding(hostName string) error {
	l, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("host veth %q: %w", hostName, err)
	}
	var state uint8
	for _, d := range []time.Duration{0, 10, 50, 100, 250, 500, 1000, 1000} {
		time.Sleep(d * time.Millisecond)
		state, err = portState(l.Attrs().Index)
		if err == nil && state == brStateForwarding {
			return nil
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("bridge port %q state: %w", hostName, err)
	case state == brStateListening || state == brStateLearning:
		fmt.Fprintf(os.Stderr, "veth-attach: bridge port %q still in STP state %d after 3s; not waiting longer\n", hostName, state)
		return nil
	}
	return fmt.Errorf("bridge port %q not forwarding after 3s (state %d)", hostName, state)
}

// deleteHostVeth removes the host end (and so the pair); absent is fine.
func deleteHostVeth(hostName string) error {
	l, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		if cniutil.IsGone(err) {
			return nil
		}
		return fmt.Errorf("lookup host veth %q: %w", hostName, err)
	}
	return delLink(l)
}

// deletePodVeth removes the pod end if it is a veth; absent is fine.
func deletePodVeth(ifName string) error {
	l, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		if cniutil.IsGone(err) {
			return nil
		}
		return fmt.Errorf("lookup %q: %w", ifName, err)
	}
	if l.Type() != "veth" {
		return nil
	}
	return delLink(l)
}

// delLink deletes l. ENODEV is success: the kernel removes a veth pair by
// itself when the pod netns goes away, possibly between lookup and delete.
func delLink(l netlink.Link) error {
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) && !cniutil.IsGone(err) {
		return fmt.Errorf("delete %q: %w", l.Attrs().Name, err)
	}
	return nil
}

// checkAttachment verifies the pod interface (MAC, addresses, routes, veth
// peer) and the host veth (on the bridge).
func checkAttachment(args *skel.CmdArgs, conf *NetConf, prev *current.Result, br netlink.Link) error {
	podIdx := -1
	for i, iface := range prev.Interfaces {
		if iface.Name == args.IfName && iface.Sandbox == args.Netns {
			podIdx = i
		}
	}
	if podIdx < 0 {
		return fmt.Errorf("prevResult has no interface %q with sandbox %q", args.IfName, args.Netns)
	}
	want := prev.Interfaces[podIdx]
	var ips []*current.IPConfig
	for _, ipc := range prev.IPs {
		if ipc.Interface != nil && *ipc.Interface == podIdx {
			ips = append(ips, ipc)
		}
	}

	hostName := naming.HostVethName(conf.Name, args.ContainerID, args.IfName)
	host, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("host veth %q: %w", hostName, err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("host veth %q is not a port of bridge %q", hostName, br.Attrs().Name)
	}
	if conf.Hairpin {
		pi, err := netlinksafe.LinkGetProtinfo(host)
		if err != nil {
			return fmt.Errorf("host veth %q port flags: %w", hostName, err)
		}
		if !pi.Hairpin {
			return fmt.Errorf("host veth %q: hairpin mode is off, config asks for it", hostName)
		}
	}

	return inNSPath(args.Netns, func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("pod interface %q: %w", args.IfName, err)
		}
		if want.Mac != "" && l.Attrs().HardwareAddr.String() != want.Mac {
			return fmt.Errorf("pod interface %q has MAC %s, prevResult says %s", args.IfName, l.Attrs().HardwareAddr, want.Mac)
		}
		_, peer, err := ip.GetVethPeerIfindex(args.IfName)
		if err != nil {
			return fmt.Errorf("pod interface %q: %w", args.IfName, err)
		}
		if peer != host.Attrs().Index {
			return fmt.Errorf("pod interface %q is not the peer of host veth %q", args.IfName, hostName)
		}
		if err := ip.ValidateExpectedInterfaceIPs(args.IfName, ips); err != nil {
			return fmt.Errorf("pod interface %q: %w", args.IfName, err)
		}
		if err := ip.ValidateExpectedRoute(prev.Routes); err != nil {
			return fmt.Errorf("pod netns routes: %w", err)
		}
		return nil
	})
}

// gcHostVeths deletes network's host veths (their alias is an attachment
// tag of network) whose attachment is not in valid. It keeps going after
// errors and returns them all.
func gcHostVeths(network string, valid map[cniutil.Attachment]bool) []error {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return []error{fmt.Errorf("list links: %w", err)}
	}
	var errs []error
	for _, l := range links {
		if l.Type() != "veth" {
			continue
		}
		cid, ifName, ok := naming.ParseAttachmentTag(network, l.Attrs().Alias)
		if !ok || valid[cniutil.Attachment{ContainerID: cid, IfName: ifName}] {
			continue
		}
		fmt.Fprintf(os.Stderr, "veth-attach GC: deleting %s (%s)\n", l.Attrs().Name, l.Attrs().Alias)
		if err := delLink(l); err != nil {
			errs = append(errs, fmt.Errorf("gc: %w", err))
		}
	}
	return errs
}

// inNSPath is ns.WithNetNSPath through cniutil.InNS: a panic in fn comes
// back as an error.
func inNSPath(path string, fn func(ns.NetNS) error) error {
	n, err := ns.GetNS(path)
	if err != nil {
		return err
	}
	defer n.Close()
	return cniutil.InNS(n, fn)
}
