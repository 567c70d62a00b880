package main

import (
	"errors"
	"net"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/overlap"
)

// checkOverlap refuses (7) pod addresses whose subnet overlaps another
// device's in the bridge's routing table (see overlap.Check), whichever
// IPAM gave them.
func checkOverlap(br netlink.Link, ips []*current.IPConfig) error {
	subnets := make([]*net.IPNet, 0, len(ips))
	for _, ipc := range ips {
		a := ipc.Address
		subnets = append(subnets, &a)
	}
	err := overlap.Check(br, subnets)
	var oe *overlap.Error
	if errors.As(err, &oe) {
		return cniutil.Errorf(types.ErrInvalidNetworkConfig, "veth-attach: %v", err)
	}
	return err
}
