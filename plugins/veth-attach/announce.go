package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/sysctl"
)

// announce tells the segment (the node's bridge, other pods, other nodes
// through the VXLAN) which MAC now owns each of the pod's addresses, from
// inside the pod netns: one gratuitous ARP per IPv4 address, sent by the
// kernel (notifyARP), and one unsolicited Neighbor Advertisement
// (override) per IPv6 address. Neighbours that still cache an old MAC for
// a reused address update it at once (new entries are not created:
// arp_accept=0 and accept_untracked_na=0 by default). Best effort:
// failures go to stderr, never fail the ADD.
func announce(podNS ns.NetNS, podIf net.Interface, ips []*current.IPConfig) {
	if len(ips) == 0 {
		return
	}
	err := cniutil.InNS(podNS, func(ns.NetNS) error {
		v4 := false
		for _, ipc := range ips {
			addr := ipc.Address.IP
			if addr.To4() != nil {
				v4 = true
				continue
			}
			if err := sendNA(podIf, addr); err != nil {
				fmt.Fprintf(os.Stderr, "veth-attach: announce %s on %q: %v\n", addr, podIf.Name, err)
			}
		}
		if v4 {
			if err := notifyARP(podIf); err != nil {
				fmt.Fprintf(os.Stderr, "veth-attach: announce the IPv4 addresses of %q: %v\n", podIf.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "veth-attach: announce addresses of %q: %v\n", podIf.Name, err)
	}
}

// notifyARP makes the kernel send one gratuitous ARP (request, sender IP =
// target IP = the address, sender MAC = the interface's, broadcast) for
// every IPv4 address of ifc: with arp_notify on, setting the interface's
// MAC, even to the one it has, is NETDEV_CHANGEADDR, on which the kernel
// announces each address (inetdev_event). arp_notify is turned on for
// that only and put back as it was. It replaces an AF_PACKET socket whose
// close waits out an RCU grace period (packet_release → synchronize_net:
// ~15 ms on a loaded node, half of veth-attach's ADD). The one trace: the
// interface's addr_assign_type reads 3 ("set") as after any MAC change.
func notifyARP(ifc net.Interface) error {
	key := "net/ipv4/conf/" + ifc.Name + "/arp_notify"
	old, err := sysctl.Get(key)
	if err != nil {
		return err
	}
	if old == "0" {
		if err := sysctl.Set(key, "1"); err != nil {
			return err
		}
		defer func() {
			if rerr := sysctl.Set(key, old); rerr != nil {
				fmt.Fprintf(os.Stderr, "veth-attach: put arp_notify of %q back: %v\n", ifc.Name, rerr)
			}
		}()
	}
	l, err := netlinksafe.LinkByName(ifc.Name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetHardwareAddr(l, l.Attrs().HardwareAddr); err != nil {
		return fmt.Errorf("set MAC %s (to announce it): %w", l.Attrs().HardwareAddr, err)
	}
	return nil
}

// sendNA sends one unsolicited Neighbor Advertisement for ip to ff02::1
// out of ifc (hop limit 255 as RFC 4861 requires; the kernel computes the
// ICMPv6 checksum and picks the source address, normally the link-local).
func sendNA(ifc net.Interface, ip net.IP) error {
	msg, err := unsolicitedNA(ifc.HardwareAddr, ip)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return fmt.Errorf("icmpv6 socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifc.Name); err != nil {
		return fmt.Errorf("bind icmpv6 socket to %q: %w", ifc.Name, err)
	}
	for _, o := range []int{unix.IPV6_MULTICAST_HOPS, unix.IPV6_UNICAST_HOPS} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, o, 255); err != nil {
			return fmt.Errorf("icmpv6 hop limit: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifc.Index); err != nil {
		return fmt.Errorf("icmpv6 multicast interface: %w", err)
	}
	to := &unix.SockaddrInet6{ZoneId: uint32(ifc.Index)}
	copy(to.Addr[:], net.IPv6linklocalallnodes)
	// The route to ff02::1 (ff00::/8 of the interface) exists once the
	// kernel's linkwatch work has found the link up and addrconf set it
	// up: asynchronous to the link's coming up, and not part of what the
	// bridge port's forwarding state shows. Until then the send fails
	// with ENETUNREACH: try again in 1 ms steps, bounded.
	deadline := time.Now().Add(naRouteWait)
	for {
		err = unix.Sendto(fd, msg, 0, to)
		if !errors.Is(err, unix.ENETUNREACH) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("send neighbor advertisement: %w", err)
	}
	return nil
}

// naRouteWait bounds the wait for the interface's multicast route.
const naRouteWait = time.Second
