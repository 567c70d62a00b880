package chain

import (
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/pkg/inspect"
	"github.com/vxvrf/cni/pkg/naming"
)

// NftObject is one object of sysctl-firewall's nftables tables, as vxvrf
// inspect reads it.
type NftObject = inspect.NftObject

// NftObjects lists the chains and set elements of sysctl-firewall's
// nftables tables in node (inspect.NftObjects, over netlink).
func NftObjects(node ns.NetNS) ([]NftObject, error) {
	var out []NftObject
	err := node.Do(func(ns.NetNS) error {
		var err error
		out, err = inspect.NftObjects()
		return err
	})
	return out, err
}

// nftLeftovers lists the objects of one attachment (its tag) or, with cid
// "", of the whole network (its elements and masquerade chains).
func nftLeftovers(objs []NftObject, network, cid, ifName string) []string {
	var left []string
	for _, o := range objs {
		switch {
		case o.Set != "" && cid != "" && naming.NftTagOf(o.Comment) == naming.NftTag(network, cid, ifName):
			left = append(left, cid+": "+o.String())
		case o.Set != "" && cid == "" && strings.HasPrefix(o.Comment, naming.NftNetworkTag(network)):
			left = append(left, o.String())
		case o.Set == "" && cid == "" && strings.HasPrefix(o.Chain, naming.NftMasqPrefix(network)):
			left = append(left, o.String())
		}
	}
	return left
}
