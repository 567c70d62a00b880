package allocator

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
)

// StateVersion is the format version written into every state file.
const StateVersion = 1

// Lease is the addresses held by one attachment (containerID, ifname).
type Lease struct {
	ContainerID string   `json:"containerID"`
	IfName      string   `json:"ifname"`
	IPs         []net.IP `json:"ips"`
}

// State is the content of one network's state file.
type State struct {
	Version int     `json:"version"`
	Network string  `json:"network"`
	Leases  []Lease `json:"leases"`
	// LastReserved is the round-robin cursor: range set (its String())
	// → the address last handed out from it.
	LastReserved map[string]net.IP `json:"lastReserved"`
}

// NewState returns an empty state for network.
func NewState(network string) *State {
	return &State{Version: StateVersion, Network: network, Leases: []Lease{}, LastReserved: map[string]net.IP{}}
}

// Errors of Allocate; the plugin maps them to CNI codes.
var (
	ErrDuplicate   = errors.New("duplicate allocation")
	ErrExhausted   = errors.New("no free address")
	ErrRequested   = errors.New("requested address not available")
	ErrUnsatisfied = errors.New("requested address not in any range set")
)

// Find returns the index of the lease of (containerID, ifName), or -1.
func (st *State) Find(containerID, ifName string) int {
	for i, l := range st.Leases {
		if l.ContainerID == containerID && l.IfName == ifName {
			return i
		}
	}
	return -1
}

// addrKey is a's map key: its 16-byte form, so an IPv4 address is one key
// whatever its length, without the cost of a.String(). Every address of a
// state is 4 or 16 bytes (ParseIP, canonicalIP); anything else keys as
// zero.
func addrKey(a net.IP) (k [16]byte) {
	copy(k[:], a.To16())
	return k
}

// usedSet answers "is this address leased?". Allocation after the
// round-robin cursor usually asks about one or two addresses, so the first
// few questions scan the leases (no allocation); a longer search builds a
// set once.
type usedSet struct {
	leases []Lease
	asked  int
	set    map[[16]byte]bool
}

// ScanLimit is how many questions are answered by a scan before the set is
// built.
const ScanLimit = 8

func (u *usedSet) has(a net.IP) bool {
	if u.set == nil && u.asked < ScanLimit {
		u.asked++
		for _, l := range u.leases {
			for _, b := range l.IPs {
				if a.Equal(b) {
					return true
				}
			}
		}
		return false
	}
	if u.set == nil {
		u.set = make(map[[16]byte]bool, 2*len(u.leases))
		for _, l := range u.leases {
			for _, b := range l.IPs {
				u.set[addrKey(b)] = true
			}
		}
	}
	return u.set[addrKey(a)]
}

// Allocate leases one address per range set to (containerID, ifName).
// requested addresses are honoured first (each must fall into a distinct
// range set); the other sets get the next free address after the set's
// cursor, round robin, skipping gateways. On error st is unchanged.
func (st *State) Allocate(sets []RangeSet, containerID, ifName string, requested []net.IP) ([]*current.IPConfig, error) {
	if i := st.Find(containerID, ifName); i >= 0 {
		return nil, DuplicateError(containerID, ifName, st.Leases[i].IPs)
	}
	used := &usedSet{leases: st.Leases}
	picked, err := Pick(sets, st.LastReserved, used.has, requested)
	if err != nil {
		return nil, err
	}
	Advance(sets, st.LastReserved, picked)
	st.Leases = append(st.Leases, Lease{ContainerID: containerID, IfName: ifName, IPs: picked})
	return IPConfigs(sets, picked), nil
}

// DuplicateError is Allocate's error for an attachment that holds ips.
func DuplicateError(containerID, ifName string, ips []net.IP) error {
	return fmt.Errorf("%w: container %q ifname %q already holds %v", ErrDuplicate, containerID, ifName, ips)
}

// Pick chooses one address per range set, as Allocate does, from the
// cursors in last (read only) and used, which answers whether an address
// is leased; it is how Allocate works on a state that is not decoded into
// a State.
func Pick(sets []RangeSet, last map[string]net.IP, used func(net.IP) bool, requested []net.IP) ([]net.IP, error) {
	picked := make([]net.IP, len(sets))
	for _, req := range requested {
		c, err := canonicalIP(req)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnsatisfied, err)
		}
		found := false
		for si, set := range sets {
			r, ok := set.RangeFor(c)
			if !ok {
				continue
			}
			found = true
			switch {
			case picked[si] != nil:
				return nil, fmt.Errorf("%w: %s and %s both fall into range set %d (%s); one address per range set", ErrRequested, picked[si], c, si, set)
			case c.Equal(r.Gateway):
				return nil, fmt.Errorf("%w: %s is the gateway of range %s", ErrRequested, c, r)
			case used(c):
				return nil, fmt.Errorf("%w: %s is already leased", ErrRequested, c)
			}
			picked[si] = c
			break
		}
		if !found {
			return nil, fmt.Errorf("%w: %s", ErrUnsatisfied, c)
		}
	}
	for si, set := range sets {
		if picked[si] != nil {
			continue
		}
		a := nextFree(set, last[set.String()], used)
		if a == nil {
			return nil, fmt.Errorf("%w in range set %d (%s)", ErrExhausted, si, set)
		}
		picked[si] = a
	}
	return picked, nil
}

// Advance moves each set's round-robin cursor in last to its picked
// address.
func Advance(sets []RangeSet, last map[string]net.IP, picked []net.IP) {
	for si, set := range sets {
		last[set.String()] = picked[si]
	}
}

// IPConfigs is the result's ips for the picked addresses: each with its
// range's mask and gateway.
func IPConfigs(sets []RangeSet, picked []net.IP) []*current.IPConfig {
	out := make([]*current.IPConfig, len(sets))
	for si, set := range sets {
		r, _ := set.RangeFor(picked[si])
		out[si] = &current.IPConfig{
			Address: net.IPNet{IP: picked[si], Mask: r.Subnet.Mask},
			Gateway: r.Gateway,
		}
	}
	return out
}

// nextFree walks the set from the address after last (or from the first
// range's start when last is not in the set), wrapping around once, and
// returns the first address that is neither a gateway nor used.
func nextFree(set RangeSet, last net.IP, used func(net.IP) bool) net.IP {
	ri, cur := 0, net.IP(nil)
	for i := range set {
		if last != nil && set[i].Contains(last) {
			ri, cur = i, last
			break
		}
	}
	var start net.IP
	for {
		r := &set[ri]
		switch {
		case cur == nil:
			cur = r.RangeStart
		case cur.Equal(r.RangeEnd):
			ri = (ri + 1) % len(set)
			r = &set[ri]
			cur = r.RangeStart
		default:
			cur = ip.NextIP(cur)
		}
		if start == nil {
			start = cur
		} else if cur.Equal(start) {
			return nil
		}
		if !cur.Equal(r.Gateway) && !used(cur) {
			return cur
		}
	}
}

// Release removes the lease of (containerID, ifName); it reports whether
// there was one.
func (st *State) Release(containerID, ifName string) bool {
	i := st.Find(containerID, ifName)
	if i < 0 {
		return false
	}
	st.Leases = append(st.Leases[:i], st.Leases[i+1:]...)
	return true
}

// Retain keeps only the leases for which keep is true and returns the
// removed ones.
func (st *State) Retain(keep func(containerID, ifName string) bool) []Lease {
	var kept, removed []Lease
	for _, l := range st.Leases {
		if keep(l.ContainerID, l.IfName) {
			kept = append(kept, l)
		} else {
			removed = append(removed, l)
		}
	}
	if kept == nil {
		kept = []Lease{}
	}
	st.Leases = kept
	return removed
}

// Free is the number of addresses still available in set: its size minus
// the gateways inside its ranges and the leased addresses inside it.
func (st *State) Free(set RangeSet) *big.Int {
	n := new(big.Int)
	for i := range set {
		n.Add(n, set[i].size())
		if set[i].Contains(set[i].Gateway) {
			n.Sub(n, big.NewInt(1))
		}
	}
	seen := map[[16]byte]bool{}
	for _, l := range st.Leases {
		for _, a := range l.IPs {
			if r, ok := set.RangeFor(a); ok && !a.Equal(r.Gateway) && !seen[addrKey(a)] {
				seen[addrKey(a)] = true
				n.Sub(n, big.NewInt(1))
			}
		}
	}
	if n.Sign() < 0 {
		n.SetInt64(0)
	}
	return n
}

// Normalize makes a decoded state usable: nil maps and slices become empty,
// addresses canonical, leases sorted for a stable file.
func (st *State) Normalize() {
	if st.Leases == nil {
		st.Leases = []Lease{}
	}
	if st.LastReserved == nil {
		st.LastReserved = map[string]net.IP{}
	}
	for i := range st.Leases {
		for j, a := range st.Leases[i].IPs {
			if c, err := canonicalIP(a); err == nil {
				st.Leases[i].IPs[j] = c
			}
		}
	}
	// A file we wrote is sorted already: check in one pass before sorting.
	if !slices.IsSortedFunc(st.Leases, compareLeases) {
		slices.SortStableFunc(st.Leases, compareLeases)
	}
}

// compareLeases orders leases by (containerID, ifname).
func compareLeases(a, b Lease) int {
	if c := strings.Compare(a.ContainerID, b.ContainerID); c != 0 {
		return c
	}
	return strings.Compare(a.IfName, b.IfName)
}

// Validate reports a decoded state that cannot be trusted: wrong version,
// another network, empty keys, unparsable addresses or duplicates.
func (st *State) Validate(network string) error {
	if st.Version != StateVersion {
		return fmt.Errorf("unsupported state version %d (want %d)", st.Version, StateVersion)
	}
	if st.Network != network {
		return fmt.Errorf("state belongs to network %q, not %q", st.Network, network)
	}
	// Sorted leases (every file this plugin wrote) hold a duplicate next to
	// each other: no set of keys needed.
	sorted := slices.IsSortedFunc(st.Leases, compareLeases)
	var keys map[[2]string]bool
	if !sorted {
		keys = make(map[[2]string]bool, len(st.Leases))
	}
	addrs := make(map[[16]byte]bool, 2*len(st.Leases))
	for i, l := range st.Leases {
		if l.ContainerID == "" || l.IfName == "" {
			return fmt.Errorf("lease with empty containerID or ifname")
		}
		k := [2]string{l.ContainerID, l.IfName}
		if (sorted && i > 0 && compareLeases(st.Leases[i-1], l) == 0) || keys[k] {
			return fmt.Errorf("two leases for container %q ifname %q", l.ContainerID, l.IfName)
		}
		if !sorted {
			keys[k] = true
		}
		for _, a := range l.IPs {
			if a == nil {
				return fmt.Errorf("lease of container %q has an invalid address", l.ContainerID)
			}
			if len(a) != net.IPv4len && len(a) != net.IPv6len {
				return fmt.Errorf("lease of container %q has an invalid address", l.ContainerID)
			}
			if addrs[addrKey(a)] {
				return fmt.Errorf("address %s leased twice", a)
			}
			addrs[addrKey(a)] = true
		}
	}
	return nil
}
