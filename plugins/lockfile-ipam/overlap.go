package main

import (
	"errors"
	"net"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/overlap"
)

// checkOverlap answers code (7 for ADD, 50 for STATUS) when a configured
// subnet overlaps another device's in the routing table of the network's
// bridge (the bridge carrying the network's mark; see overlap.Check).
// Without such a bridge (a network's first pod on this node, or a bridge
// this project did not make) there is no table to judge: veth-attach
// checks again at ADD.
func checkOverlap(conf *NetConf, code uint) error {
	br, err := overlap.NetworkBridge(conf.Name)
	if err != nil || br == nil {
		return err
	}
	var subnets []*net.IPNet
	for _, set := range conf.Sets {
		for _, r := range set {
			s := net.IPNet(r.Subnet)
			subnets = append(subnets, &s)
		}
	}
	err = overlap.Check(br, subnets)
	var oe *overlap.Error
	if errors.As(err, &oe) {
		return cniutil.Errorf(code, "lockfile-ipam: %v", err)
	}
	if err != nil {
		return cniutil.Errorf(types.ErrInternal, "lockfile-ipam: %v", err)
	}
	return nil
}
