package store

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ip"

	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

// benchSets is a dual-stack pair of range sets large enough for 4,000 leases.
func benchSets(b *testing.B) []allocator.RangeSet {
	b.Helper()
	var sets []allocator.RangeSet
	for _, s := range []string{"10.128.0.0/16", "fd00:128::/64"} {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			b.Fatal(err)
		}
		sets = append(sets, allocator.RangeSet{{Subnet: types.IPNet(*n)}})
	}
	if err := allocator.Canonicalize(sets); err != nil {
		b.Fatal(err)
	}
	return sets
}

// filledState holds n leases of sets (the first n addresses of each set,
// 64-character container IDs), as n ADDs would have left it.
func filledState(b *testing.B, sets []allocator.RangeSet, n int) *allocator.State {
	b.Helper()
	st := allocator.NewState("bench")
	next := make([]net.IP, len(sets))
	for si, set := range sets {
		next[si] = set[0].RangeStart
	}
	for i := 0; i < n; i++ {
		ips := make([]net.IP, len(sets))
		for si, set := range sets {
			next[si] = ip.NextIP(next[si])
			ips[si] = next[si]
			st.LastReserved[set.String()] = next[si]
		}
		st.Leases = append(st.Leases, allocator.Lease{ContainerID: fmt.Sprintf("%064d", i), IfName: "eth0", IPs: ips})
	}
	return st
}

// BenchmarkAddDel is one ADD and one DEL of lockfile-ipam's state work
// (lock, Allocate or Release, unlock: what the plugin does) with n leases
// already held; "decoded" is the same on a state file that is not stamped
// (an earlier version's, or edited), which is decoded and encoded whole.
func BenchmarkAddDel(b *testing.B) {
	sets := benchSets(b)
	for _, n := range []int{10, 1000, 4000} {
		for _, decoded := range []bool{false, true} {
			name := fmt.Sprint("edit/", n)
			if decoded {
				name = fmt.Sprint("decoded/", n)
			}
			b.Run(name, func(b *testing.B) {
				dir := b.TempDir()
				s, err := Open(dir, "bench", time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Save(filledState(b, sets, n)); err != nil {
					b.Fatal(err)
				}
				s.Close()
				cycle := func(f func(s *Store) error) {
					s, err := Open(dir, "bench", time.Second)
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					if decoded {
						s.writeStamp(false)
					}
					if err := f(s); err != nil {
						b.Fatal(err)
					}
					if s.edited == decoded {
						b.Fatalf("edited %v, want %v", s.edited, !decoded)
					}
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					cycle(func(s *Store) error {
						_, err := s.Allocate(sets, "probe", "eth0", nil)
						return err
					})
					cycle(func(s *Store) error {
						_, err := s.Release("probe", "eth0")
						return err
					})
				}
			})
		}
	}
}

// BenchmarkCodec is Decode and Encode alone of a state with n leases.
func BenchmarkCodec(b *testing.B) {
	sets := benchSets(b)
	for _, n := range []int{10, 1000, 4000} {
		st := filledState(b, sets, n)
		data, err := Encode(st)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("decode/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				if _, err := Decode(data, "bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("encode/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				if _, err := Encode(st); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("allocate/%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := st.Allocate(sets, "probe", "eth0", nil); err != nil {
					b.Fatal(err)
				}
				st.Release("probe", "eth0")
			}
		})
	}
}
