package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/cniutil"
)

// announce tells the segment (the node's bridge, other pods, other nodes
// through the VXLAN) which MAC now owns each of the pod's addresses: one
// gratuitous ARP per IPv4 address, one unsolicited Neighbor Advertisement
// (override) per IPv6 address, sent from inside the pod netns. Neighbours
// that still cache an old MAC for a reused address update it at once
// (new entries are not created: arp_accept=0 and accept_untracked_na=0 by
// default). Best effort: failures go to stderr, never fail the ADD.
func announce(podNS ns.NetNS, podIf net.Interface, ips []*current.IPConfig) {
	if len(ips) == 0 {
		return
	}
	err := cniutil.InNS(podNS, func(ns.NetNS) error {
		for _, ipc := range ips {
			addr := ipc.Address.IP
			var err error
			if addr.To4() != nil {
				err = sendGARP(podIf, addr)
			} else {
				err = sendNA(podIf, addr)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "veth-attach: announce %s on %q: %v\n", addr, podIf.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "veth-attach: announce addresses of %q: %v\n", podIf.Name, err)
	}
}

// htons converts a host-order uint16 to network order (for sll_protocol).
func htons(v uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v))
}

// sendGARP sends one gratuitous ARP for ip out of ifc through an AF_PACKET
// socket. Protocol 0: the socket is send-only and queues nothing it sees.
func sendGARP(ifc net.Interface, ip net.IP) error {
	frame, err := garpFrame(ifc.HardwareAddr, ip)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index}); err != nil {
		return fmt.Errorf("bind packet socket to %q: %w", ifc.Name, err)
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(etherTypeARP), Ifindex: ifc.Index, Halen: 6}
	copy(to.Addr[:], frame[:6])
	if err := unix.Sendto(fd, frame, 0, to); err != nil {
		return fmt.Errorf("send gratuitous arp: %w", err)
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
	if err := unix.Sendto(fd, msg, 0, to); err != nil {
		return fmt.Errorf("send neighbor advertisement: %w", err)
	}
	return nil
}
