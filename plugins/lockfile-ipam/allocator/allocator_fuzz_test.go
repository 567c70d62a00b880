package allocator_test

import (
	"math/big"
	"net"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/store"
)

// FuzzAllocate decodes a state file, builds a range set from fuzzed bounds
// and allocates n addresses for new attachments, then releases one and
// allocates again. Properties: no panic; every address handed out is in
// the set, not a gateway, and held by no other lease (no address is handed
// out twice); the state still validates; Free drops by one per lease.
func FuzzAllocate(f *testing.F) {
	for _, s := range []struct {
		state, subnet, start, end, gw string
		n                             uint8
	}{
		{`{"version":1,"network":"net1","leases":[]}`, "10.244.1.0/24", "", "", "", 3},
		{`{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":["10.244.1.2"]}],"lastReserved":{"10.244.1.1-10.244.1.254":"10.244.1.254"}}`, "10.244.1.0/24", "", "", "", 4},
		{`{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":["10.0.0.1"]}]}`, "10.0.0.0/30", "", "", "10.0.0.2", 5},
		{`{"version":1,"network":"net1","lastReserved":{"10.0.0.1-10.0.0.2":"99.0.0.1"}}`, "10.0.0.0/30", "", "", "", 3},
		{`{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":["fd00::2"]}]}`, "fd00::/126", "", "", "", 4},
		{`{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":["10.100.1.2","::ffff:10.100.1.3"]}]}`, "10.100.0.0/16", "10.100.1.2", "10.100.1.5", "10.100.0.1", 6},
		{`{"version":1,"network":"net1","leases":[]}`, "10.244.1.7/32", "", "", "", 2},
		{`{"version":1,"network":"net1","leases":[]}`, "10.244.1.0/24", "10.244.1.9", "10.244.1.3", "", 2},
	} {
		f.Add([]byte(s.state), s.subnet, s.start, s.end, s.gw, s.n)
	}
	f.Fuzz(func(t *testing.T, state []byte, subnet, start, end, gw string, n uint8) {
		st, err := store.Decode(state, "net1")
		if err != nil {
			return
		}
		_, ipn, err := net.ParseCIDR(subnet)
		if err != nil {
			return
		}
		r := allocator.Range{Subnet: types.IPNet(*ipn), RangeStart: net.ParseIP(start), RangeEnd: net.ParseIP(end), Gateway: net.ParseIP(gw)}
		set := allocator.RangeSet{r}
		if err := allocator.Canonicalize([]allocator.RangeSet{set}); err != nil {
			return
		}
		holder := map[string]string{}
		for _, l := range st.Leases {
			for _, a := range l.IPs {
				holder[a.String()] = l.ContainerID
			}
		}
		alloc := func(cid string) {
			before := st.Free(set)
			ips, err := st.Allocate([]allocator.RangeSet{set}, cid, "eth0", nil)
			if err != nil {
				if after := st.Free(set); after.Cmp(before) != 0 {
					t.Fatalf("a failed Allocate changed Free from %s to %s", before, after)
				}
				return
			}
			if len(ips) != 1 || ips[0] == nil {
				t.Fatalf("Allocate returned %v", ips)
			}
			a := ips[0].Address.IP
			rr, ok := set.RangeFor(a)
			if !ok {
				t.Fatalf("%s handed out outside %s", a, set)
			}
			if a.Equal(rr.Gateway) {
				t.Fatalf("the gateway %s handed out", a)
			}
			if h, taken := holder[a.String()]; taken {
				t.Fatalf("%s handed out to %s while %s holds it", a, cid, h)
			}
			holder[a.String()] = cid
			if err := st.Validate("net1"); err != nil {
				t.Fatalf("state invalid after Allocate: %v", err)
			}
			if after := st.Free(set); new(big.Int).Sub(before, after).Int64() != 1 {
				t.Fatalf("Free went from %s to %s after one lease", before, after)
			}
		}
		for i := 0; i < int(n%16); i++ {
			alloc("new" + string(rune('a'+i)))
		}
		if st.Release("newa", "eth0") {
			for k, v := range holder {
				if v == "newa" {
					delete(holder, k)
				}
			}
		}
		alloc("again")
		if _, err := store.Encode(st); err != nil {
			t.Fatalf("state does not encode: %v", err)
		}
	})
}
