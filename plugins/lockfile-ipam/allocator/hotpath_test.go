package allocator

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// TestDuplicateLeasesSortedOrNot: two leases of one attachment are refused
// whether the leases are sorted (found side by side) or not (found by set),
// and the same address twice too, in 4- and 16-byte form.
func TestDuplicateLeasesSortedOrNot(t *testing.T) {
	ip := net.ParseIP
	for name, leases := range map[string][]Lease{
		"sorted":   {{"a", "eth0", []net.IP{ip("10.0.0.2")}}, {"a", "eth0", []net.IP{ip("10.0.0.3")}}, {"b", "eth0", []net.IP{ip("10.0.0.4")}}},
		"unsorted": {{"a", "eth0", []net.IP{ip("10.0.0.2")}}, {"b", "eth0", []net.IP{ip("10.0.0.4")}}, {"a", "eth0", []net.IP{ip("10.0.0.3")}}},
	} {
		st := NewState("n")
		st.Leases = leases
		if err := st.Validate("n"); err == nil || !strings.Contains(err.Error(), "two leases") {
			t.Errorf("%s: got %v", name, err)
		}
	}
	st := NewState("n")
	st.Leases = []Lease{{"a", "eth0", []net.IP{ip("10.0.0.2").To4()}}, {"b", "eth0", []net.IP{ip("10.0.0.2")}}}
	if err := st.Validate("n"); err == nil || !strings.Contains(err.Error(), "leased twice") {
		t.Errorf("4- and 16-byte forms of one address: got %v", err)
	}
	st.Leases[1].IPs[0] = ip("10.0.0.3")
	if err := st.Validate("n"); err != nil {
		t.Errorf("distinct leases refused: %v", err)
	}
}

// TestNextFreePastManyUsed: after the cursor come more used addresses than
// the scan answers (the set takes over) and the address of each family that
// is free is found; addresses leased in 16-byte form count as used.
func TestNextFreePastManyUsed(t *testing.T) {
	s := sets(t, RangeSet{mustRange(t, "10.0.0.0/24", "", "", "")}, RangeSet{mustRange(t, "fd00::/120", "", "", "")})
	st := NewState("n")
	for i := 2; i < 2+3*ScanLimit; i++ {
		if i == 2+2*ScanLimit {
			continue // the one hole
		}
		st.Leases = append(st.Leases, Lease{fmt.Sprintf("c%d", i), "eth0",
			[]net.IP{net.ParseIP(fmt.Sprintf("10.0.0.%d", i)), net.ParseIP(fmt.Sprintf("fd00::%x", i))}})
	}
	st.LastReserved[s[0].String()] = net.ParseIP("10.0.0.1").To4()
	st.LastReserved[s[1].String()] = net.ParseIP("fd00::1")
	ips, err := st.Allocate(s, "new", "eth0", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("10.0.0.%d", 2+2*ScanLimit), fmt.Sprintf("fd00::%x", 2+2*ScanLimit)}
	for i, w := range want {
		if got := ips[i].Address.IP.String(); got != w {
			t.Errorf("set %d: got %s, want %s", i, got, w)
		}
	}
}
