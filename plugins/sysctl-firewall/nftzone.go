package main

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// addZoneRule appends `ct original zone set ZONE` to chain of table inet
// table, in a transaction of its own. google/nftables (v0.3.0) cannot
// express it: its ct expression carries NFTA_CT_DIRECTION only for the
// address and port keys, and a zone set without a direction applies to
// both directions (see "Conntrack zones": replies must stay in zone 0).
// So this one rule is sent over a netlink socket of our own, encoded here.
func addZoneRule(table, chain string, zone uint16) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	zoneVal := make([]byte, 2)
	binary.NativeEndian.PutUint16(zoneVal, zone) // ct_zone is host byte order
	imm := nlaNested(unix.NFTA_LIST_ELEM,
		nla(unix.NFTA_EXPR_NAME, cstr("immediate")),
		nlaNested(unix.NFTA_EXPR_DATA,
			nla(unix.NFTA_IMMEDIATE_DREG, be32(unix.NFT_REG_1)),
			nlaNested(unix.NFTA_IMMEDIATE_DATA, nla(unix.NFTA_DATA_VALUE, zoneVal)),
		))
	ct := nlaNested(unix.NFTA_LIST_ELEM,
		nla(unix.NFTA_EXPR_NAME, cstr("ct")),
		nlaNested(unix.NFTA_EXPR_DATA,
			nla(unix.NFTA_CT_KEY, be32(unix.NFT_CT_ZONE)),
			nla(unix.NFTA_CT_SREG, be32(unix.NFT_REG_1)),
			nla(unix.NFTA_CT_DIRECTION, []byte{ctDirOriginal}),
		))
	rule := concat(
		nla(unix.NFTA_RULE_TABLE, cstr(table)),
		nla(unix.NFTA_RULE_CHAIN, cstr(chain)),
		nlaNested(unix.NFTA_RULE_EXPRESSIONS, imm, ct),
	)
	const seq = 1
	msg := concat(
		nlmsg(unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, seq, nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES), nil),
		nlmsg(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWRULE,
			unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_APPEND, seq+1, nfgen(unix.NFPROTO_INET, 0), rule),
		nlmsg(unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, seq+2, nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES), nil),
	)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, os.Getpagesize())
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return fmt.Errorf("netlink: malformed reply")
			}
			typ, seqNo, data := binary.NativeEndian.Uint16(b[4:6]), binary.NativeEndian.Uint32(b[8:12]), b[unix.NLMSG_HDRLEN:l]
			if typ == unix.NLMSG_ERROR && seqNo == seq+1 && len(data) >= 4 {
				if errno := int32(binary.NativeEndian.Uint32(data[:4])); errno != 0 {
					return fmt.Errorf("nftables: zone rule in %s: %w", chain, unix.Errno(-errno))
				}
				return nil
			}
			b = b[(l+3)&^3:]
		}
	}
}

// ctDirOriginal is IP_CT_DIR_ORIGINAL.
const ctDirOriginal = 0

// nlmsg is one netlink message: header, nfgenmsg, attributes.
func nlmsg(typ, flags uint16, seq uint32, nfg, attrs []byte) []byte {
	body := concat(nfg, attrs)
	h := make([]byte, unix.NLMSG_HDRLEN)
	binary.NativeEndian.PutUint32(h[0:4], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(h[4:6], typ)
	binary.NativeEndian.PutUint16(h[6:8], flags)
	binary.NativeEndian.PutUint32(h[8:12], seq)
	return pad4(concat(h, body))
}

// nfgen is the nfgenmsg header: family, version 0, resource id (big endian).
func nfgen(family uint8, resID uint16) []byte {
	b := []byte{family, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], resID)
	return b
}

func nla(typ uint16, data []byte) []byte {
	h := make([]byte, 4)
	binary.NativeEndian.PutUint16(h[0:2], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(h[2:4], typ)
	return pad4(concat(h, data))
}

func nlaNested(typ uint16, children ...[]byte) []byte {
	return nla(typ|unix.NLA_F_NESTED, concat(children...))
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func be32(v uint32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, v)
	return b
}
