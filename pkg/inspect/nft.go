package inspect

import (
	"fmt"
	"net"
	"strings"

	"github.com/google/nftables"

	"github.com/vxvrf/cni/pkg/naming"
)

// NftObject is one object of sysctl-firewall's nftables tables: a chain
// (Set "") or a set or map element, with its comment.
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
	return fmt.Sprintf("nftables element %s %s @%s { %s } (%s)", o.Family, naming.NftTable, o.Set, nftKey(o.Set, o.Key), o.Comment)
}

// NftObjects lists the chains and set elements of sysctl-firewall's
// nftables tables (inet and bridge vxvrf) in the current network
// namespace, over netlink (no nft binary needed). A missing table lists
// nothing.
func NftObjects() ([]NftObject, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	var out []NftObject
	for _, fam := range []struct {
		f    nftables.TableFamily
		name string
	}{{nftables.TableFamilyINet, "inet"}, {nftables.TableFamilyBridge, "bridge"}} {
		t, err := c.ListTableOfFamily(naming.NftTable, fam.f)
		if err != nil {
			continue // no table
		}
		chains, err := c.ListChainsOfTableFamily(fam.f)
		if err != nil {
			return nil, fmt.Errorf("list %s chains: %w", fam.name, err)
		}
		for _, ch := range chains {
			if ch.Table.Name == naming.NftTable {
				out = append(out, NftObject{Family: fam.name, Chain: ch.Name})
			}
		}
		sets, err := c.GetSets(t)
		if err != nil {
			return nil, fmt.Errorf("list %s sets: %w", fam.name, err)
		}
		for _, s := range sets {
			els, err := c.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("list %s @%s: %w", fam.name, s.Name, err)
			}
			for _, el := range els {
				out = append(out, NftObject{Family: fam.name, Set: s.Name, Key: el.Key, Comment: el.Comment})
			}
		}
	}
	return out, nil
}

// nftKey renders an element's key as nft prints it, from the layout of
// sysctl-firewall's sets (plugins/sysctl-firewall/nft.go): fwd/masq
// address . ifname, allow ifname . address, guard and the zone jump maps
// ifname. Anything else (restorejump's mark) is hex.
func nftKey(set string, key []byte) string {
	const ifsz = 16
	ifname := func(b []byte) string { return fmt.Sprintf("%q", strings.TrimRight(string(b), "\x00")) }
	ip := func(b []byte) string { return net.IP(b).String() }
	switch {
	case (strings.HasPrefix(set, "fwd") || strings.HasPrefix(set, "masq")) && (len(key) == 4+ifsz || len(key) == 16+ifsz):
		return ip(key[:len(key)-ifsz]) + " . " + ifname(key[len(key)-ifsz:])
	case strings.HasPrefix(set, "allow") && (len(key) == ifsz+4 || len(key) == ifsz+16):
		return ifname(key[:ifsz]) + " . " + ip(key[ifsz:])
	case (strings.HasPrefix(set, "guard") || strings.HasSuffix(set, "jump") || set == "attachments") && len(key) == ifsz:
		return ifname(key)
	}
	return fmt.Sprintf("0x%x", key)
}

// nftOwner says whose an object is: the network hash (8 hex digits) of a
// per-network chain or a tagged element, and for an attachment's element
// its tag (naming.NftTag, read with naming.NftTagOf). Base chains and
// untagged elements are nobody's.
func nftOwner(o NftObject) (netHash, attTag string) {
	if o.Set == "" {
		for _, p := range []string{"masq-", "z-"} {
			if rest, ok := strings.CutPrefix(o.Chain, p); ok && len(rest) > 8 && rest[8] == '-' {
				return rest[:8], ""
			}
		}
		return "", ""
	}
	if rest, ok := strings.CutPrefix(o.Comment, "vxvrf-zone:"); ok {
		return rest, ""
	}
	if rest, ok := strings.CutPrefix(o.Comment, "vxvrf:"); ok {
		if h, _, ok := strings.Cut(rest, ":"); ok {
			return h, naming.NftTagOf(o.Comment)
		}
	}
	return "", ""
}

// nftNetHash is the 8 hex digits naming.NftNetworkTag puts in the tags of
// network.
func nftNetHash(network string) string {
	return strings.TrimSuffix(strings.TrimPrefix(naming.NftNetworkTag(network), "vxvrf:"), ":")
}
