package main

import (
	"fmt"
	"net"
)

// ICMPv6 constants of the Neighbor Advertisement.
const (
	icmpv6NA       = 136  // Neighbor Advertisement
	naFlagOverride = 0x20 // first flags byte: R=0x80, S=0x40, O=0x20
	ndOptTargetLL  = 2    // option: target link-layer address
)

// unsolicitedNA builds the ICMPv6 part of an unsolicited Neighbor
// Advertisement (RFC 4861 4.4, 7.2.6) for ip: override flag set, router
// and solicited clear, target = ip, a target link-layer address option
// with mac. The checksum is left 0: on a raw ICMPv6 socket the kernel
// fills it in (it knows the source address it picks).
func unsolicitedNA(mac net.HardwareAddr, ip net.IP) ([]byte, error) {
	ip6 := ip.To16()
	if len(mac) != 6 || ip.To4() != nil || ip6 == nil {
		return nil, fmt.Errorf("neighbor advertisement needs an ethernet mac and an ipv6 address, got %q %q", mac, ip)
	}
	b := make([]byte, 0, 32)
	b = append(b, icmpv6NA, 0, 0, 0) // type, code, checksum
	b = append(b, naFlagOverride, 0, 0, 0)
	b = append(b, ip6...)
	b = append(b, ndOptTargetLL, 1) // length in units of 8 bytes
	b = append(b, mac...)
	return b, nil
}
