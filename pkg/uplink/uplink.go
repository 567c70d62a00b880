// Package uplink resolves the node's uplink: the interface VXLAN rides on
// and egress leaves by, and its VTEP address. infra-ensure, vrf-vxlan-bridge
// and sysctl-firewall resolve it the same way.
package uplink

import (
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/kernel"
	"github.com/vxvrf/cni/pkg/naming"
)

// ErrNoDefaultRoute means no uplink was configured and none could be found.
var ErrNoDefaultRoute = errors.New("no default route in the node's network namespace; set the uplink explicitly")

// Find returns the named link, or the interface of the default route (IPv4
// first, then IPv6) when name is empty.
func Find(name string) (netlink.Link, error) {
	if name != "" {
		l, err := netlinksafe.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("uplink %q: %w", name, err)
		}
		return l, nil
	}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		// The main table only, filtered by the kernel (a plain dump also
		// reads the local table's entries of every pod's host veth).
		routes, err := kernel.TableRoutes(family, unix.RT_TABLE_MAIN)
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if naming.IsDefaultRoute(r.Dst) && r.LinkIndex > 0 {
				l, err := netlink.LinkByIndex(r.LinkIndex)
				if err != nil {
					return nil, fmt.Errorf("default route link %d: %w", r.LinkIndex, err)
				}
				return l, nil
			}
		}
	}
	return nil, ErrNoDefaultRoute
}

// Address returns the first global unicast address of link, preferring
// IPv4. want, when set, must be one of the link's addresses.
func Address(link netlink.Link, want net.IP) (net.IP, error) {
	// That link's addresses only, filtered by the kernel (a plain dump
	// lists every pod's host veth's link-local too).
	addrs, err := kernel.LinkAddrs(link.Attrs().Index, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	var v6 net.IP
	for _, ip := range addrs {
		if want != nil {
			if ip.Equal(want) {
				return want, nil
			}
			continue
		}
		if !ip.IsGlobalUnicast() {
			continue
		}
		if ip.To4() != nil {
			return ip, nil
		}
		if v6 == nil {
			v6 = ip
		}
	}
	if want != nil {
		return nil, fmt.Errorf("address %s is not on uplink %s", want, link.Attrs().Name)
	}
	if v6 != nil {
		return v6, nil
	}
	return nil, fmt.Errorf("uplink %s has no global address", link.Attrs().Name)
}

// Ready returns an error unless link is administratively up and its
// operational state is up or unknown (a veth or tunnel that reports none).
func Ready(link netlink.Link) error {
	a := link.Attrs()
	if a.Flags&net.FlagUp == 0 || (a.OperState != netlink.OperUp && a.OperState != netlink.OperUnknown) {
		return fmt.Errorf("uplink %s is not up (state %s)", a.Name, a.OperState)
	}
	return nil
}
