// Package allocator is the pure part of lockfile-ipam: host-local compatible
// ranges and range sets, their validation and defaults, and allocation over
// an in-memory State. It does no I/O; the store package persists State.
//
// Range and RangeSet have the JSON shape of host-local's
// (containernetworking/plugins .../host-local/backend/allocator), on
// purpose, but are not those types: host-local's Canonicalize accepts a
// rangeStart after rangeEnd, and its messages do not
// name the config keys ("RangeStart ... not in network ..."), while every
// refusal here must name the user's key (code 7). The arithmetic on
// addresses is the library's (pkg/ip).
package allocator

import (
	"fmt"
	"math/big"
	"net"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ip"
)

// Range is one pool of addresses inside a subnet (host-local's Range).
type Range struct {
	Subnet     types.IPNet `json:"subnet"`
	RangeStart net.IP      `json:"rangeStart,omitempty"` // first address, inclusive
	RangeEnd   net.IP      `json:"rangeEnd,omitempty"`   // last address, inclusive
	Gateway    net.IP      `json:"gateway,omitempty"`
}

// RangeSet is a list of ranges of one family; one address is allocated per set.
type RangeSet []Range

// canonicalIP returns ip as 4 bytes for IPv4 and 16 bytes for IPv6.
func canonicalIP(a net.IP) (net.IP, error) {
	if v4 := a.To4(); v4 != nil {
		return v4, nil
	}
	if v6 := a.To16(); v6 != nil {
		return v6, nil
	}
	return nil, fmt.Errorf("%q is neither an IPv4 nor an IPv6 address", a.String())
}

// Canonicalize validates r and fills in host-local's defaults: gateway =
// subnet+1, rangeStart = subnet+1 (the gateway is skipped when allocating),
// rangeEnd = broadcast-1 (IPv4) or the last address (IPv6).
func (r *Range) Canonicalize() error {
	if r.Subnet.IP == nil || r.Subnet.Mask == nil {
		return fmt.Errorf("missing subnet")
	}
	subnetIP, err := canonicalIP(r.Subnet.IP)
	if err != nil {
		return fmt.Errorf("subnet: %w", err)
	}
	r.Subnet.IP = subnetIP
	ones, bits := r.Subnet.Mask.Size()
	if bits == 0 || len(r.Subnet.IP) != len(r.Subnet.Mask) {
		return fmt.Errorf("subnet %s: address and mask families differ", r.subnetString())
	}
	if ones > bits-2 {
		return fmt.Errorf("subnet %s is too small to allocate from (/%d)", r.subnetString(), ones)
	}
	if network := r.Subnet.IP.Mask(r.Subnet.Mask); !network.Equal(r.Subnet.IP) {
		return fmt.Errorf("subnet %s has host bits set: the network address for /%d is %s", r.subnetString(), ones, network)
	}
	sub := net.IPNet(r.Subnet)
	check := func(what string, a *net.IP, def net.IP) error {
		if *a == nil {
			*a = def
			return nil
		}
		c, err := canonicalIP(*a)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if len(c) != len(r.Subnet.IP) || !sub.Contains(c) {
			return fmt.Errorf("%s %s is outside subnet %s", what, c, r.subnetString())
		}
		*a = c
		return nil
	}
	if err := check("gateway", &r.Gateway, ip.NextIP(r.Subnet.IP)); err != nil {
		return err
	}
	if err := check("rangeStart", &r.RangeStart, ip.NextIP(r.Subnet.IP)); err != nil {
		return err
	}
	if err := check("rangeEnd", &r.RangeEnd, lastIP(r.Subnet)); err != nil {
		return err
	}
	if ip.Cmp(r.RangeStart, r.RangeEnd) > 0 {
		return fmt.Errorf("rangeStart %s is after rangeEnd %s", r.RangeStart, r.RangeEnd)
	}
	return nil
}

func (r *Range) subnetString() string { return (*net.IPNet)(&r.Subnet).String() }

// lastIP is the last usable address of a subnet: broadcast-1 for IPv4.
func lastIP(subnet types.IPNet) net.IP {
	end := make(net.IP, len(subnet.IP))
	for i := range subnet.IP {
		end[i] = subnet.IP[i] | ^subnet.Mask[i]
	}
	if len(end) == net.IPv4len {
		end[3]--
	}
	return end
}

// Contains reports whether a lies within [RangeStart, RangeEnd] of r.
// r must be canonical.
func (r *Range) Contains(a net.IP) bool {
	c, err := canonicalIP(a)
	if err != nil || len(c) != len(r.RangeStart) {
		return false
	}
	return ip.Cmp(c, r.RangeStart) >= 0 && ip.Cmp(c, r.RangeEnd) <= 0
}

// Overlaps reports whether two canonical ranges share an address.
func (r *Range) Overlaps(o *Range) bool {
	if len(r.RangeStart) != len(o.RangeStart) {
		return false
	}
	return ip.Cmp(r.RangeStart, o.RangeEnd) <= 0 && ip.Cmp(o.RangeStart, r.RangeEnd) <= 0
}

// size is the number of addresses in r, gateway included.
func (r *Range) size() *big.Int {
	n := new(big.Int).Sub(new(big.Int).SetBytes(r.RangeEnd), new(big.Int).SetBytes(r.RangeStart))
	return n.Add(n, big.NewInt(1))
}

func (r Range) String() string { return fmt.Sprintf("%s-%s", r.RangeStart, r.RangeEnd) }

// Canonicalize validates every range of the set: at least one range, one
// family, no overlaps inside the set.
func (s RangeSet) Canonicalize() error {
	if len(s) == 0 {
		return fmt.Errorf("empty range set")
	}
	for i := range s {
		if err := s[i].Canonicalize(); err != nil {
			return fmt.Errorf("range %d: %w", i, err)
		}
		if len(s[i].RangeStart) != len(s[0].RangeStart) {
			return fmt.Errorf("range %d (%s) is not of the same family as range 0 (%s)", i, s[i].subnetString(), s[0].subnetString())
		}
	}
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[i].Overlaps(&s[j]) {
				return fmt.Errorf("range %d (%s) overlaps range %d (%s)", i, s[i], j, s[j])
			}
		}
	}
	return nil
}

// Overlaps reports whether any range of s overlaps any range of o.
func (s RangeSet) Overlaps(o RangeSet) bool {
	for i := range s {
		for j := range o {
			if s[i].Overlaps(&o[j]) {
				return true
			}
		}
	}
	return false
}

// RangeFor returns the range of s containing a.
func (s RangeSet) RangeFor(a net.IP) (*Range, bool) {
	for i := range s {
		if s[i].Contains(a) {
			return &s[i], true
		}
	}
	return nil, false
}

// IsV4 reports whether the set is IPv4.
func (s RangeSet) IsV4() bool { return len(s) > 0 && len(s[0].RangeStart) == net.IPv4len }

// String lists the set's ranges; it is also the set's key for the cursor.
func (s RangeSet) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Canonicalize validates a list of range sets: each set, and no overlap
// between sets.
func Canonicalize(sets []RangeSet) error {
	if len(sets) == 0 {
		return fmt.Errorf("no IP ranges specified")
	}
	for i := range sets {
		if err := sets[i].Canonicalize(); err != nil {
			return fmt.Errorf("range set %d: %w", i, err)
		}
	}
	for i := range sets {
		for j := i + 1; j < len(sets); j++ {
			if sets[i].Overlaps(sets[j]) {
				return fmt.Errorf("range set %d overlaps range set %d", i, j)
			}
		}
	}
	return nil
}
