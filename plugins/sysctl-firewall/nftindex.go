package main

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/naming"
)

// The attachment index. An attachment's elements are keyed by what
// packets carry (pod address, device names), not by the attachment, so
// DEL cannot compute them from (network, containerID, ifname) alone. The
// set "attachments" holds one element per attachment, keyed by
// naming.NftAttachmentKey, whose comment is the attachment's tag followed
// by what planNft needs to compute its keys again:
//
//	"vxvrf:1a2b3c4d:0123456789abcdef veth=veth0a1b2c3d br=br-blue masquerade antispoofing 10.1.0.5 fd00::5"
//
// DEL and CHECK look elements up by key (a GETSETELEM that is not a
// dump) and keep only those whose comment carries the attachment's tag,
// so their cost does not grow with the pods on the node. An attachment
// without an index element (added by v0.1.0, or whose comment would not
// fit) is found by the dump of every set, as before.

// setAttach is the index set.
var setAttach = nftSet{name: "attachments", keys: []nftables.SetDatatype{nftables.TypeIFName}}

// maxComment is the longest comment an element takes: the kernel keeps
// 256 bytes of user data, the comment's TLV header and NUL take 3.
const maxComment = 253

// indexEntry is the attachment's index element, or false when its
// comment would be too long (many addresses): DEL then dumps.
func indexEntry(a attachment, p *Policy) (nftElem, bool) {
	c := receipt(naming.NftTag(a.Network, a.ContainerID, a.IfName), p)
	if len(c) > maxComment {
		return nftElem{}, false
	}
	return nftElem{set: setAttach, key: attachmentKey(a), comment: c}, true
}

// receipt is the index comment: the tag, then the policy fields the
// attachment's keys depend on.
func receipt(tag string, p *Policy) string {
	f := []string{tag}
	for _, kv := range [][2]string{{"veth", p.HostVeth}, {"br", p.Bridge}, {"vrf", p.VRF}} {
		if kv[1] != "" {
			f = append(f, kv[0]+"="+kv[1])
		}
	}
	if p.Masquerade {
		f = append(f, "masquerade")
	}
	if p.AntiSpoofing {
		f = append(f, "antispoofing")
	}
	for _, a := range p.Addrs {
		f = append(f, a.IP.String())
	}
	return strings.Join(f, " ")
}

// parseReceipt reads an index comment back (see receipt). The addresses'
// subnets are not in it: they only name masquerade chains, which DEL
// does not touch.
func parseReceipt(comment string) (string, *Policy, error) {
	f := strings.Fields(comment)
	if len(f) == 0 {
		return "", nil, errors.New("empty index comment")
	}
	p := &Policy{}
	for _, s := range f[1:] {
		k, v, kv := strings.Cut(s, "=")
		switch {
		case kv && k == "veth":
			p.HostVeth = v
		case kv && k == "br":
			p.Bridge = v
		case kv && k == "vrf":
			p.VRF = v
		case s == "masquerade":
			p.Masquerade = true
		case s == "antispoofing":
			p.AntiSpoofing = true
		case net.ParseIP(s) != nil:
			p.Addrs = append(p.Addrs, PodAddr{IP: net.ParseIP(s)})
		default:
			return "", nil, fmt.Errorf("index comment %q: unknown field %q", comment, s)
		}
	}
	return f[0], p, nil
}

// elemGetter looks elements up by key on a netlink socket of its own
// (google/nftables v0.3.0 only dumps a whole set).
type elemGetter struct{ conn *netlink.Conn }

func newElemGetter() (*elemGetter, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("nftables netlink: %w", err)
	}
	return &elemGetter{conn: conn}, nil
}

func (g *elemGetter) Close() { _ = g.conn.Close() }

// comment is the comment of the element of s with key, and whether the
// element exists (a missing table or set: it does not).
func (g *elemGetter) comment(s nftSet, key []byte) (string, bool, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, naming.NftTable)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, s.name)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
				ae.Bytes(unix.NFTA_DATA_VALUE, key)
				return nil
			})
			return nil
		})
		return nil
	})
	data, err := ae.Encode()
	if err != nil {
		return "", false, err
	}
	msgs, err := g.conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request,
		},
		Data: append(nfgen(byte(s.table().Family), 0), data...),
	})
	if errors.Is(err, unix.ENOENT) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("get element of %s: %w", s.name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		if c, ok := elemComment(m.Data[4:]); ok {
			return c, true, nil
		}
	}
	return "", true, nil
}

// elemComment is the comment in a NEWSETELEM message's attributes:
// NFTA_SET_ELEM_LIST_ELEMENTS > NFTA_LIST_ELEM > NFTA_SET_ELEM_USERDATA.
func elemComment(b []byte) (string, bool) {
	path := []uint16{unix.NFTA_SET_ELEM_LIST_ELEMENTS, unix.NFTA_LIST_ELEM, unix.NFTA_SET_ELEM_USERDATA}
	for _, typ := range path {
		b = attr(b, typ)
		if b == nil {
			return "", false
		}
	}
	return userdata.GetString(b, userdata.NFTNL_UDATA_SET_ELEM_COMMENT)
}

// attr is the payload of the first attribute of type typ in b, nil if none.
func attr(b []byte, typ uint16) []byte {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil
	}
	for ad.Next() {
		if ad.Type() == typ {
			return ad.Bytes()
		}
	}
	return nil
}
