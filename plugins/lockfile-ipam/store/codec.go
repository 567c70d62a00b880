package store

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

// The state file is read and written on every ADD and DEL, so with
// thousands of leases its encoding is the plugin's hot path. encoding/json
// (reflection, net.IP text methods, MarshalIndent's second pass) cost ~5 µs
// per lease; the hand-written pair below does the same format in a small
// fraction of that. It is still plain JSON, one lease per line:
//
//	{"version":1,"network":"blue","leases":[
//	{"containerID":"c1","ifname":"eth0","ips":["10.20.0.2","fd00::2"]}
//	],"lastReserved":{"10.20.0.1-10.20.0.254":"10.20.0.2"}}
//
// parseState accepts a strict subset of JSON (the four keys and the three
// lease keys spelled exactly, each once; printable-ASCII strings without
// escapes; no null); anything else is left to encoding/json, whose result
// and error messages stay the reference (Decode).

// appendState appends st as the state file's JSON (st normalized); ok is
// false when an address has no text form (encoding/json then reports it).
func appendState(b []byte, st *allocator.State) (_ []byte, ok bool) {
	ok = true
	b = appendHeader(b, st.Version, st.Network)
	for i, l := range st.Leases {
		if i > 0 {
			b = append(b, ',')
		}
		b, ok = appendLease(b, l, ok)
	}
	if len(st.Leases) > 0 {
		b = append(b, '\n')
	}
	return appendTail(b, st.LastReserved, ok)
}

// appendHeader is the file up to and including the leases' '['.
func appendHeader(b []byte, version int, network string) []byte {
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(version), 10)
	b = append(b, `,"network":`...)
	b = appendString(b, network)
	return append(b, `,"leases":[`...)
}

// appendLease is one lease's line: a newline and its object (the comma
// between leases is the caller's).
func appendLease(b []byte, l allocator.Lease, ok bool) ([]byte, bool) {
	b = append(b, "\n{\"containerID\":"...)
	b = appendString(b, l.ContainerID)
	b = append(b, `,"ifname":`...)
	b = appendString(b, l.IfName)
	b = append(b, `,"ips":`...)
	if l.IPs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for j, a := range l.IPs {
			if j > 0 {
				b = append(b, ',')
			}
			b, ok = appendIP(b, a, ok)
		}
		b = append(b, ']')
	}
	return append(b, '}'), ok
}

// tailKey starts the file's tail: what follows the last lease's line.
const tailKey = `],"lastReserved":`

// appendTail is the file from the leases' ']' on: the cursors, keys
// sorted.
func appendTail(b []byte, last map[string]net.IP, ok bool) ([]byte, bool) {
	b = append(b, tailKey+"{"...)
	keys := make([]string, 0, len(last))
	for k := range last {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b, ok = appendIP(b, last[k], ok)
	}
	return append(b, "}}\n"...), ok
}

// appendIP writes a as encoding/json does (net.IP's MarshalText: "" for
// none, IPv4-mapped IPv6 as IPv4); ok becomes false for an address of
// neither length.
func appendIP(b []byte, a net.IP, ok bool) ([]byte, bool) {
	if len(a) == 0 {
		return append(b, `""`...), ok
	}
	addr, valid := netip.AddrFromSlice(a)
	if !valid {
		return b, false
	}
	b = append(b, '"')
	b = addr.Unmap().AppendTo(b)
	return append(b, '"'), ok
}

// appendString writes s as a JSON string: printable ASCII as is, anything
// else through encoding/json.
func appendString(b []byte, s string) []byte {
	if !plainASCII(s) {
		q, _ := json.Marshal(s) // a string always marshals
		return append(b, q...)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainASCII: printable ASCII without '"' and '\\' (nothing to escape, and
// nothing encoding/json would escape for HTML either).
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// parser reads the strict subset; any failure means "not for the fast
// path", never "corrupt".
type parser struct {
	d   []byte
	s   string // d as one string: every decoded string is a piece of it
	i   int
	bad bool
	// ips hands out the decoded addresses, 16 bytes each, from shared
	// chunks instead of one allocation per address; ipSlots holds the
	// leases' address lists; leaseCap is the expected number of leases.
	ips      []byte
	ipSlots  []net.IP
	leaseCap int
}

// parseState decodes data when it is in the fast subset; ok is false
// otherwise (then encoding/json decides).
func parseState(data []byte) (st *allocator.State, ok bool) {
	p := &parser{d: data, s: string(data)}
	// Sized once: a lease per "containerID", about two addresses each.
	p.leaseCap = bytes.Count(data, []byte(`"containerID"`))
	p.ipSlots = make([]net.IP, 0, 2*p.leaseCap)
	st = &allocator.State{}
	var seen [4]bool
	p.each('{', '}', func() {
		switch p.key() {
		case "version":
			p.once(seen[:], 0)
			st.Version = p.int()
		case "network":
			p.once(seen[:], 1)
			st.Network = p.str()
		case "leases":
			p.once(seen[:], 2)
			st.Leases = make([]allocator.Lease, 0, p.leaseCap)
			p.each('[', ']', func() { st.Leases = append(st.Leases, p.lease()) })
		case "lastReserved":
			p.once(seen[:], 3)
			st.LastReserved = p.ipMap()
		default:
			p.bad = true
		}
	})
	p.skipSpace()
	if p.bad || p.i != len(p.d) || seen != [4]bool{true, true, true, true} {
		return nil, false
	}
	return st, true
}

// each reads open, then items separated by commas (item reads one), then
// close.
func (p *parser) each(openCh, closeCh byte, item func()) {
	p.expect(openCh)
	if p.peek() == closeCh {
		p.i++
		return
	}
	for !p.bad {
		item()
		if p.peek() == ',' {
			p.i++
			continue
		}
		p.expect(closeCh)
		return
	}
}

// key reads an object key and its colon.
func (p *parser) key() string {
	k := p.str()
	p.expect(':')
	return k
}

// once marks key k of an object seen; a second time is not for us.
func (p *parser) once(seen []bool, k int) {
	if seen[k] {
		p.bad = true
	}
	seen[k] = true
}

func (p *parser) skipSpace() {
	for p.i < len(p.d) {
		switch p.d[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek is the next non-space byte (0 at the end).
func (p *parser) peek() byte {
	p.skipSpace()
	if p.i >= len(p.d) {
		return 0
	}
	return p.d[p.i]
}

func (p *parser) expect(c byte) {
	if p.peek() != c {
		p.bad = true
		return
	}
	p.i++
}

// str reads a plain string; it returns a piece of p.s, not a copy.
func (p *parser) str() string {
	p.expect('"')
	if p.bad {
		return ""
	}
	rest := p.d[p.i:]
	for j, c := range rest {
		if c == '"' {
			s := p.s[p.i : p.i+j]
			p.i += j + 1
			return s
		}
		if c < 0x20 || c > 0x7e || c == '\\' {
			break
		}
	}
	p.bad = true
	return ""
}

func (p *parser) int() int {
	p.skipSpace()
	start := p.i
	for p.i < len(p.d) && p.d[p.i] >= '0' && p.d[p.i] <= '9' {
		p.i++
	}
	if p.i == start || (p.d[start] == '0' && p.i-start > 1) || p.i-start > 9 {
		p.bad = true
		return 0
	}
	n, _ := strconv.Atoi(string(p.d[start:p.i]))
	return n
}

// ip parses a non-empty address as net.IP's UnmarshalText (net.ParseIP)
// does: 16 bytes, IPv4 as IPv4-mapped; no zone.
func (p *parser) ip() net.IP {
	s := p.str()
	if p.bad {
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		p.bad = true
		return nil
	}
	if len(p.ips)+net.IPv6len > cap(p.ips) {
		p.ips = make([]byte, 0, 256*net.IPv6len)
	}
	b := a.As16()
	n := len(p.ips)
	p.ips = append(p.ips, b[:]...)
	return net.IP(p.ips[n : n+net.IPv6len : n+net.IPv6len])
}

func (p *parser) lease() allocator.Lease {
	var l allocator.Lease
	var seen [3]bool
	p.each('{', '}', func() {
		switch p.key() {
		case "containerID":
			p.once(seen[:], 0)
			l.ContainerID = p.str()
		case "ifname":
			p.once(seen[:], 1)
			l.IfName = p.str()
		case "ips":
			p.once(seen[:], 2)
			// The lease's addresses are consecutive slots of p.ipSlots
			// (a fresh array when they run out), capped so that an
			// append to one lease never writes into the next.
			if cap(p.ipSlots)-len(p.ipSlots) < 2 {
				p.ipSlots = make([]net.IP, 0, 64)
			}
			n := len(p.ipSlots)
			p.each('[', ']', func() {
				if len(p.ipSlots) == cap(p.ipSlots) { // more than the slots left: copy to fresh ones
					old := p.ipSlots[n:]
					p.ipSlots = append(make([]net.IP, 0, 2*len(old)+64), old...)
					n = 0
				}
				p.ipSlots = append(p.ipSlots, p.ip())
			})
			l.IPs = p.ipSlots[n:len(p.ipSlots):len(p.ipSlots)]
		default:
			p.bad = true
		}
	})
	if seen != [3]bool{true, true, true} {
		p.bad = true
	}
	return l
}

func (p *parser) ipMap() map[string]net.IP {
	out := map[string]net.IP{}
	p.each('{', '}', func() {
		k := p.key()
		if _, dup := out[k]; dup {
			p.bad = true
		}
		out[k] = p.ip()
	})
	return out
}
