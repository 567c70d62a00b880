package allocator

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func mustRange(t *testing.T, subnet, start, end, gw string) Range {
	t.Helper()
	n, err := types.ParseCIDR(subnet)
	if err != nil {
		t.Fatal(err)
	}
	r := Range{Subnet: types.IPNet(*n)}
	if start != "" {
		r.RangeStart = net.ParseIP(start)
	}
	if end != "" {
		r.RangeEnd = net.ParseIP(end)
	}
	if gw != "" {
		r.Gateway = net.ParseIP(gw)
	}
	return r
}

func sets(t *testing.T, ss ...RangeSet) []RangeSet {
	t.Helper()
	if err := Canonicalize(ss); err != nil {
		t.Fatalf("canonicalize: %v", err)
	}
	return ss
}

func TestCanonicalizeDefaults(t *testing.T) {
	s := sets(t, RangeSet{mustRange(t, "10.0.0.0/24", "", "", "")}, RangeSet{mustRange(t, "fd00::/120", "", "", "")})
	r4, r6 := s[0][0], s[1][0]
	if r4.Gateway.String() != "10.0.0.1" || r4.RangeStart.String() != "10.0.0.1" || r4.RangeEnd.String() != "10.0.0.254" {
		t.Errorf("v4 defaults: %+v", r4)
	}
	if r6.Gateway.String() != "fd00::1" || r6.RangeStart.String() != "fd00::1" || r6.RangeEnd.String() != "fd00::ff" {
		t.Errorf("v6 defaults: %+v", r6)
	}
	if len(r4.Gateway) != 4 || len(r4.RangeStart) != 4 {
		t.Errorf("v4 addresses not canonical 4-byte")
	}
}

func TestCanonicalizeErrors(t *testing.T) {
	cases := []struct {
		name string
		sets []RangeSet
		want string
	}{
		{"host bits", []RangeSet{{mustRange(t, "10.0.0.5/24", "", "", "")}}, "host bits"},
		{"slash31", []RangeSet{{mustRange(t, "10.0.0.0/31", "", "", "")}}, "too small"},
		{"slash32", []RangeSet{{mustRange(t, "10.0.0.0/32", "", "", "")}}, "too small"},
		{"slash127", []RangeSet{{mustRange(t, "fd00::/127", "", "", "")}}, "too small"},
		{"slash128", []RangeSet{{mustRange(t, "fd00::/128", "", "", "")}}, "too small"},
		{"start outside", []RangeSet{{mustRange(t, "10.0.0.0/24", "10.0.1.1", "", "")}}, "rangeStart 10.0.1.1 is outside"},
		{"end outside", []RangeSet{{mustRange(t, "10.0.0.0/24", "", "10.0.1.1", "")}}, "rangeEnd 10.0.1.1 is outside"},
		{"gateway outside", []RangeSet{{mustRange(t, "10.0.0.0/24", "", "", "10.0.1.1")}}, "gateway 10.0.1.1 is outside"},
		{"family mismatch start", []RangeSet{{mustRange(t, "10.0.0.0/24", "fd00::1", "", "")}}, "outside"},
		{"start after end", []RangeSet{{mustRange(t, "10.0.0.0/24", "10.0.0.50", "10.0.0.10", "")}}, "after rangeEnd"},
		{"overlap in set", []RangeSet{{mustRange(t, "10.0.0.0/24", "10.0.0.10", "10.0.0.20", ""), mustRange(t, "10.0.0.0/24", "10.0.0.20", "10.0.0.30", "")}}, "overlaps range"},
		{"overlap across sets", []RangeSet{{mustRange(t, "10.0.0.0/24", "", "", "")}, {mustRange(t, "10.0.0.0/16", "", "", "")}}, "range set 0 overlaps range set 1"},
		{"mixed families", []RangeSet{{mustRange(t, "10.0.0.0/24", "", "", ""), mustRange(t, "fd00::/64", "", "", "")}}, "same family"},
		{"empty set", []RangeSet{{}}, "empty range set"},
		{"none", nil, "no IP ranges"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Canonicalize(c.sets)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want error containing %q", err, c.want)
			}
		})
	}
}

func TestSlash30Allowed(t *testing.T) {
	s := sets(t, RangeSet{mustRange(t, "10.0.0.0/30", "", "", "")})
	st := NewState("n")
	ipc, err := st.Allocate(s, "c1", "eth0", nil)
	if err != nil || ipc[0].Address.String() != "10.0.0.2/30" {
		t.Fatalf("first: %v %v", ipc, err)
	}
	if _, err := st.Allocate(s, "c2", "eth0", nil); !errors.Is(err, ErrExhausted) {
		t.Fatalf("second on /30 should be exhausted, got %v", err)
	}
	if st.Free(s[0]).Sign() != 0 {
		t.Fatalf("free = %v, want 0", st.Free(s[0]))
	}
}

func TestRoundRobinSkipsGateway(t *testing.T) {
	s := sets(t, RangeSet{mustRange(t, "10.0.0.0/29", "", "", "")}) // .1 gw, .2-.6 usable
	st := NewState("n")
	var got []string
	for i := 0; i < 5; i++ {
		ipc, err := st.Allocate(s, fmt.Sprintf("c%d", i), "eth0", nil)
		if err != nil {
			t.Fatalf("alloc %d: %v", i, err)
		}
		if !ipc[0].Gateway.Equal(net.ParseIP("10.0.0.1")) {
			t.Errorf("gateway %v", ipc[0].Gateway)
		}
		got = append(got, ipc[0].Address.IP.String())
	}
	if strings.Join(got, ",") != "10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5,10.0.0.6" {
		t.Fatalf("order %v", got)
	}
	if _, err := st.Allocate(s, "c9", "eth0", nil); !errors.Is(err, ErrExhausted) {
		t.Fatalf("want exhausted, got %v", err)
	}
	// Release .3; round robin continues after the cursor (.6), wraps and finds .3.
	if !st.Release("c1", "eth0") {
		t.Fatal("release c1")
	}
	if !st.Release("c4", "eth0") { // frees .6, the cursor
		t.Fatal("release c4")
	}
	ipc, err := st.Allocate(s, "c10", "eth0", nil)
	if err != nil || ipc[0].Address.IP.String() != "10.0.0.3" {
		t.Fatalf("after wrap got %v %v, want 10.0.0.3 (not the just-freed .6)", ipc, err)
	}
	ipc, err = st.Allocate(s, "c11", "eth0", nil)
	if err != nil || ipc[0].Address.IP.String() != "10.0.0.6" {
		t.Fatalf("next got %v %v, want 10.0.0.6", ipc, err)
	}
}

func TestCustomGatewayInMiddle(t *testing.T) {
	s := sets(t, RangeSet{mustRange(t, "10.0.0.0/24", "10.0.0.10", "10.0.0.12", "10.0.0.11")})
	st := NewState("n")
	a, _ := st.Allocate(s, "a", "eth0", nil)
	b, _ := st.Allocate(s, "b", "eth0", nil)
	if a[0].Address.IP.String() != "10.0.0.10" || b[0].Address.IP.String() != "10.0.0.12" {
		t.Fatalf("got %v %v", a, b)
	}
}

func TestMultiRangeSet(t *testing.T) {
	s := sets(t, RangeSet{mustRange(t, "10.0.0.0/24", "10.0.0.10", "10.0.0.10", ""), mustRange(t, "10.0.1.0/24", "10.0.1.10", "10.0.1.10", "")})
	st := NewState("n")
	a, _ := st.Allocate(s, "a", "eth0", nil)
	b, err := st.Allocate(s, "b", "eth0", nil)
	if err != nil || a[0].Address.String() != "10.0.0.10/24" || b[0].Address.String() != "10.0.1.10/24" || b[0].Gateway.String() != "10.0.1.1" {
		t.Fatalf("got %v %v %v", a, b, err)
	}
}

func TestDualStackAndDuplicate(t *testing.T) {
	s := sets(t, RangeSet{mustRange(t, "10.0.0.0/24", "", "", "")}, RangeSet{mustRange(t, "fd00::/64", "", "", "")})
	st := NewState("n")
	ipc, err := st.Allocate(s, "c1", "eth0", nil)
	if err != nil || len(ipc) != 2 || ipc[0].Address.String() != "10.0.0.2/24" || ipc[1].Address.String() != "fd00::2/64" {
		t.Fatalf("got %v %v", ipc, err)
	}
	// Another ifname of the same container is a different attachment.
	if _, err := st.Allocate(s, "c1", "net1", nil); err != nil {
		t.Fatalf("second ifname: %v", err)
	}
	before := fmt.Sprint(st.Leases)
	if _, err := st.Allocate(s, "c1", "eth0", nil); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("want duplicate, got %v", err)
	}
	if fmt.Sprint(st.Leases) != before {
		t.Fatal("duplicate ADD changed the leases")
	}
}

func TestRequested(t *testing.T) {
	s := sets(t, RangeSet{mustRange(t, "10.0.0.0/24", "", "", "")}, RangeSet{mustRange(t, "fd00::/64", "", "", "")})
	st := NewState("n")
	ipc, err := st.Allocate(s, "c1", "eth0", []net.IP{net.ParseIP("fd00::99"), net.ParseIP("10.0.0.77")})
	if err != nil || ipc[0].Address.IP.String() != "10.0.0.77" || ipc[1].Address.IP.String() != "fd00::99" {
		t.Fatalf("got %v %v", ipc, err)
	}
	// Only one requested: the other set allocates normally (after the cursor).
	ipc, err = st.Allocate(s, "c2", "eth0", []net.IP{net.ParseIP("10.0.0.5")})
	if err != nil || ipc[0].Address.IP.String() != "10.0.0.5" || ipc[1].Address.IP.String() != "fd00::9a" {
		t.Fatalf("got %v %v", ipc, err)
	}
	before := fmt.Sprint(st)
	for name, req := range map[string][]net.IP{
		"taken":       {net.ParseIP("10.0.0.77")},
		"gateway":     {net.ParseIP("10.0.0.1")},
		"outside":     {net.ParseIP("192.168.0.1")},
		"same set x2": {net.ParseIP("10.0.0.8"), net.ParseIP("10.0.0.9")},
		"broadcast":   {net.ParseIP("10.0.0.255")},
	} {
		if _, err := st.Allocate(s, "c3", "eth0", req); err == nil || !(errors.Is(err, ErrRequested) || errors.Is(err, ErrUnsatisfied)) {
			t.Errorf("%s: want requested error, got %v", name, err)
		}
	}
	if fmt.Sprint(st) != before {
		t.Fatal("failed requests changed the state")
	}
}

func TestRetainAndFree(t *testing.T) {
	s := sets(t, RangeSet{mustRange(t, "10.0.0.0/29", "", "", "")})
	st := NewState("n")
	for _, c := range []string{"a", "b", "c"} {
		if _, err := st.Allocate(s, c, "eth0", nil); err != nil {
			t.Fatal(err)
		}
	}
	if st.Free(s[0]).Int64() != 2 {
		t.Fatalf("free %v want 2", st.Free(s[0]))
	}
	removed := st.Retain(func(cid, _ string) bool { return cid == "b" })
	if len(removed) != 2 || len(st.Leases) != 1 || st.Leases[0].ContainerID != "b" {
		t.Fatalf("removed %v kept %v", removed, st.Leases)
	}
	if st.Release("zzz", "eth0") {
		t.Fatal("release of unknown reported true")
	}
}

func TestValidate(t *testing.T) {
	st := NewState("n")
	st.Leases = []Lease{{ContainerID: "a", IfName: "eth0", IPs: []net.IP{net.ParseIP("10.0.0.2")}}, {ContainerID: "b", IfName: "eth0", IPs: []net.IP{net.ParseIP("10.0.0.2")}}}
	if err := st.Validate("n"); err == nil || !strings.Contains(err.Error(), "leased twice") {
		t.Fatalf("got %v", err)
	}
	if err := NewState("n").Validate("m"); err == nil {
		t.Fatal("wrong network accepted")
	}
}
