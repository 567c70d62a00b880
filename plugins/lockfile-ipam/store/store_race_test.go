package store

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

// TestConcurrentAllocate runs many goroutines through the whole
// read-modify-write (Open, Load, Allocate, Save, Close) at once, some of
// them releasing again: every lease must survive and no address may be
// handed out twice. Run under -race (make race) it also checks the
// package for data races.
func TestConcurrentAllocate(t *testing.T) {
	dir := t.TempDir()
	_, sub, _ := net.ParseCIDR("10.9.0.0/24")
	set := allocator.RangeSet{{Subnet: types.IPNet(*sub)}}
	if err := allocator.Canonicalize([]allocator.RangeSet{set}); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 12, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]string{} // address -> holder, of the leases kept
	errs := make(chan error, workers*rounds)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				cid := fmt.Sprintf("c%d-%d", w, r)
				s, err := Open(dir, "net1", 30*time.Second)
				if err != nil {
					errs <- err
					return
				}
				st, err := s.Load()
				if err != nil {
					s.Close()
					errs <- err
					return
				}
				ips, err := st.Allocate([]allocator.RangeSet{set}, cid, "eth0", nil)
				if err == nil && r%3 == 2 {
					// Give back the previous round's lease in the same write.
					st.Release(fmt.Sprintf("c%d-%d", w, r-1), "eth0")
				}
				if err == nil {
					err = s.Save(st)
				}
				if err != nil {
					s.Close()
					errs <- err
					return
				}
				// Book-keeping while the store lock is still held, so it
				// follows the order of the writes.
				mu.Lock()
				if r%3 == 2 {
					for a, h := range got {
						if h == fmt.Sprintf("c%d-%d", w, r-1) {
							delete(got, a)
						}
					}
				}
				if h, ok := got[ips[0].Address.IP.String()]; ok {
					errs <- fmt.Errorf("%s handed to %s while %s holds it", ips[0].Address.IP, cid, h)
				}
				got[ips[0].Address.IP.String()] = cid
				mu.Unlock()
				if err := s.Close(); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s, err := Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Leases) != len(got) {
		t.Fatalf("state holds %d leases, the workers kept %d", len(st.Leases), len(got))
	}
	for _, l := range st.Leases {
		if got[l.IPs[0].String()] != l.ContainerID {
			t.Errorf("state gives %s to %s, the worker that got it is %q", l.IPs[0], l.ContainerID, got[l.IPs[0].String()])
		}
	}
}
