package store

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Load()
	if err != nil || len(st.Leases) != 0 {
		t.Fatalf("empty load: %v %v", st, err)
	}
	st.Leases = append(st.Leases,
		allocator.Lease{ContainerID: "b", IfName: "eth0", IPs: []net.IP{net.ParseIP("10.0.0.3").To4(), net.ParseIP("fd00::3")}},
		allocator.Lease{ContainerID: "a", IfName: "eth0", IPs: []net.IP{net.ParseIP("10.0.0.2").To4()}})
	st.LastReserved["10.0.0.1-10.0.0.254"] = net.ParseIP("10.0.0.3").To4()
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Leases) != 2 || got.Leases[0].ContainerID != "a" || got.Leases[1].IPs[1].String() != "fd00::3" ||
		got.LastReserved["10.0.0.1-10.0.0.254"].String() != "10.0.0.3" || got.Network != "net1" {
		t.Fatalf("round trip: %+v", got)
	}
	// Only the state and lock files remain; no temp files.
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != "net1.json" || names[1] != "net1.lock" {
		t.Fatalf("dir holds %v", names)
	}
}

func TestStaleTempRemoved(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".net1.json.tmp-123")
	if err := os.WriteFile(stale, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Save(allocator.NewState("net1")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temp file still there: %v", err)
	}
}

func TestCorruptNotOverwritten(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":       "not json",
		"empty":         "",
		"wrong network": `{"version":1,"network":"other","leases":[],"lastReserved":{}}`,
		"bad ip":        `{"version":1,"network":"net1","leases":[{"containerID":"a","ifname":"eth0","ips":["10.0.0.300"]}],"lastReserved":{}}`,
		"unknown key":   `{"version":1,"network":"net1","leases":[],"lastReserved":{},"x":1}`,
		"version":       `{"version":7,"network":"net1","leases":[],"lastReserved":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "net1.json")
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, "net1", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Load(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("want ErrCorrupt, got %v", err)
			}
			if b, _ := os.ReadFile(p); string(b) != content {
				t.Fatalf("file changed to %q", b)
			}
		})
	}
}

func TestLockTimeout(t *testing.T) {
	dir := t.TempDir()
	_, lockPath := Paths(dir, "net1")
	holder := flock.New(lockPath)
	if err := holder.Lock(); err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock()
	if _, err := Open(dir, "net1", 50*time.Millisecond); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("want ErrLockTimeout, got %v", err)
	}
	// Another network's lock is independent.
	s, err := Open(dir, "net2", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := holder.Unlock(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if err := s.Save(allocator.NewState("net1")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(lockPath); err != nil {
		t.Fatalf("lock file next to a state file removed: %v", err)
	}
}

// TestNoStateLeavesNothing: an Open/Close that saved nothing (a failed
// first ADD) removes the lock file and the directories it created, but
// never a directory that was there before or holds other files.
func TestNoStateLeavesNothing(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", "b", "data")
	s, err := Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if entries, _ := os.ReadDir(base); len(entries) != 0 {
		t.Fatalf("a state-less Open/Close left %v in %s", entries, base)
	}
	// A directory holding another network's state stays.
	other, err := Open(dir, "net2", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Save(allocator.NewState("net2")); err != nil {
		t.Fatal(err)
	}
	other.Close()
	s, err = Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 || entries[0].Name() != "net2.json" || entries[1].Name() != "net2.lock" {
		t.Fatalf("dir holds %v, want net2's two files", entries)
	}
}

// TestWaiterOnRemovedLock: a process waiting on a lock file that the
// holder removes at Close does not believe it holds the network's lock: it
// takes the lock on the file the path names afterwards.
func TestWaiterOnRemovedLock(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Store)
	go func() {
		s, err := Open(dir, "net1", 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- s
	}()
	time.Sleep(50 * time.Millisecond) // the waiter has opened the old inode
	first.Close()                     // no state: removes the lock file
	second := <-got
	if second == nil {
		return
	}
	defer second.Close()
	_, lockPath := Paths(dir, "net1")
	holder := flock.New(lockPath)
	if ok, err := holder.TryLock(); err != nil || ok {
		t.Fatalf("the lock file at %s is not locked by the waiter (ok %v, err %v)", lockPath, ok, err)
	}
}

// TestSymlinksNotFollowed: a dangling symlink in place of the lock file
// does not create its target, a symlinked state file is refused as
// corrupt, a symlink in place of the data dir is refused, and the files
// written are 0600.
func TestSymlinksNotFollowed(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "created-by-lock")
	_, lockPath := Paths(dir, "net1")
	if err := os.Symlink(target, lockPath); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir, "net1", 100*time.Millisecond); err == nil {
		s.Close()
		t.Error("Open followed or accepted a symlinked lock file")
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("the lock symlink's target was created: %v", err)
	}
	os.Remove(lockPath)

	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(`{"version":1,"network":"net1","leases":[],"lastReserved":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	statePath, _ := Paths(dir, "net1")
	if err := os.Symlink(secret, statePath); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Load of a symlinked state file: %v, want ErrCorrupt", err)
	}
	s.Close()
	os.Remove(statePath)

	link := filepath.Join(t.TempDir(), "datalink")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(link, "net1", time.Second); err == nil {
		s.Close()
		t.Error("Open accepted a symlinked data dir")
	}

	s, err = Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(allocator.NewState("net1")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, p := range []string{statePath, lockPath} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", p, fi.Mode(), err)
		}
	}
}

// TestMutualExclusionWithRemovals: many concurrent holders, half of which
// end without a state file (so Close removes the lock file and the data
// dir under the others' feet), are never inside the lock together.
func TestMutualExclusionWithRemovals(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var inside, maxInside, saves atomic.Int32
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(dir, "net1", 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for m := maxInside.Load(); n > m; m = maxInside.Load() {
				if maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			if i%2 == 0 && i > 40 {
				st, err := s.Load()
				if err != nil {
					t.Error(err)
				} else if err := s.Save(st); err != nil {
					t.Error(err)
				} else {
					saves.Add(1)
				}
			}
			inside.Add(-1)
			s.Close()
		}()
	}
	wg.Wait()
	if maxInside.Load() != 1 {
		t.Fatalf("%d holders were inside the lock at once", maxInside.Load())
	}
	if saves.Load() == 0 {
		t.Fatal("no holder saved")
	}
}

// A writer killed inside Save leaves its temp file (every lease, with
// container IDs). The next lock holder removes it even when it saves
// nothing, as a DEL of an attachment without lease does.
func TestKilledWritersTempRemovedWithoutSave(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(allocator.NewState("net1")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	tmp := filepath.Join(dir, tempName("net1"))
	if err := os.WriteFile(tmp, []byte(`{"leases":[{"containerID":"secret"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the killed writer's temp file is still there: %v", err)
	}
}
