package main

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// addZoneRule appends `ct original zone set ZONE` to chain of table inet
// table, in a transaction of its own. google/nftables (v0.3.0) cannot
// express it: its ct expression carries NFTA_CT_DIRECTION only for the
// address and port keys, and a zone set without a direction applies to
// both directions (see "Conntrack zones": replies must stay in zone 0).
// So this one rule is encoded here and sent over a netlink socket of our
// own, as elemGetter's lookups are.
func addZoneRule(table, chain string, zone uint16) error {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return fmt.Errorf("nftables netlink: %w", err)
	}
	defer conn.Close()
	zoneVal := make([]byte, 2)
	binary.NativeEndian.PutUint16(zoneVal, zone) // ct_zone is host byte order
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_RULE_TABLE, table)
	ae.String(unix.NFTA_RULE_CHAIN, chain)
	ae.Nested(unix.NFTA_RULE_EXPRESSIONS, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
			ae.String(unix.NFTA_EXPR_NAME, "immediate")
			ae.Nested(unix.NFTA_EXPR_DATA, func(ae *netlink.AttributeEncoder) error {
				ae.Uint32(unix.NFTA_IMMEDIATE_DREG, unix.NFT_REG_1)
				ae.Nested(unix.NFTA_IMMEDIATE_DATA, func(ae *netlink.AttributeEncoder) error {
					ae.Bytes(unix.NFTA_DATA_VALUE, zoneVal)
					return nil
				})
				return nil
			})
			return nil
		})
		ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
			ae.String(unix.NFTA_EXPR_NAME, "ct")
			ae.Nested(unix.NFTA_EXPR_DATA, func(ae *netlink.AttributeEncoder) error {
				ae.Uint32(unix.NFTA_CT_KEY, unix.NFT_CT_ZONE)
				ae.Uint32(unix.NFTA_CT_SREG, unix.NFT_REG_1)
				ae.Uint8(unix.NFTA_CT_DIRECTION, ctDirOriginal)
				return nil
			})
			return nil
		})
		return nil
	})
	rule, err := ae.Encode()
	if err != nil {
		return err
	}
	batch := func(typ uint16) netlink.Message {
		return netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request},
			Data:   nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
		}
	}
	msgs := []netlink.Message{
		batch(unix.NFNL_MSG_BATCH_BEGIN),
		{
			Header: netlink.Header{
				Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE),
				Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Append,
			},
			Data: append(nfgen(unix.NFPROTO_INET, 0), rule...),
		},
		batch(unix.NFNL_MSG_BATCH_END),
	}
	if _, err := conn.SendMessages(msgs); err != nil {
		return fmt.Errorf("nftables: zone rule in %s: %w", chain, err)
	}
	// The rule's acknowledgement, or its error.
	if _, err := conn.Receive(); err != nil {
		return fmt.Errorf("nftables: zone rule in %s: %w", chain, err)
	}
	return nil
}

// ctDirOriginal is IP_CT_DIR_ORIGINAL.
const ctDirOriginal = 0

// nfgen is the nfgenmsg header: family, version 0, resource id (big endian).
func nfgen(family uint8, resID uint16) []byte {
	b := []byte{family, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], resID)
	return b
}
