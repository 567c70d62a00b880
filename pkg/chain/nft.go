package chain

import (
	"fmt"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"

	"github.com/vxvrf/cni/pkg/naming"
)

// NftObject is one object of sysctl-firewall's nftables tables: a chain
// (Element false) or a set element, with its comment.
type NftObject struct {
	Family  string // "inet" or "bridge"
	Chain   string // chain name, for a chain
	Set     string // set name, for an element
	Key     []byte
	Comment string
}

func (o NftObject) String() string {
	if o.Set == "" {
		return fmt.Sprintf("nftables chain %s %s %s", o.Family, naming.NftTable, o.Chain)
	}
	return fmt.Sprintf("nftables element %s %s @%s %x (%s)", o.Family, naming.NftTable, o.Set, o.Key, o.Comment)
}

// NftObjects lists the chains and set elements of sysctl-firewall's
// nftables tables in node, over netlink (no nft binary needed).
func NftObjects(node ns.NetNS) ([]NftObject, error) {
	var out []NftObject
	err := node.Do(func(ns.NetNS) error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		for fam, name := range map[nftables.TableFamily]string{nftables.TableFamilyINet: "inet", nftables.TableFamilyBridge: "bridge"} {
			t, err := c.ListTableOfFamily(naming.NftTable, fam)
			if err != nil {
				continue // no table
			}
			chains, err := c.ListChainsOfTableFamily(fam)
			if err != nil {
				return err
			}
			for _, ch := range chains {
				if ch.Table.Name == naming.NftTable {
					out = append(out, NftObject{Family: name, Chain: ch.Name})
				}
			}
			sets, err := c.GetSets(t)
			if err != nil {
				return err
			}
			for _, s := range sets {
				els, err := c.GetSetElements(s)
				if err != nil {
					return err
				}
				for _, el := range els {
					out = append(out, NftObject{Family: name, Set: s.Name, Key: el.Key, Comment: el.Comment})
				}
			}
		}
		return nil
	})
	return out, err
}

// nftLeftovers lists the objects of one attachment (its tag) or, with cid
// "", of the whole network (its elements and masquerade chains).
func nftLeftovers(objs []NftObject, network, cid, ifName string) []string {
	var left []string
	for _, o := range objs {
		switch {
		case o.Set != "" && cid != "" && o.Comment == naming.NftTag(network, cid, ifName):
			left = append(left, cid+": "+o.String())
		case o.Set != "" && cid == "" && strings.HasPrefix(o.Comment, naming.NftNetworkTag(network)):
			left = append(left, o.String())
		case o.Set == "" && cid == "" && strings.HasPrefix(o.Chain, naming.NftMasqPrefix(network)):
			left = append(left, o.String())
		}
	}
	return left
}
