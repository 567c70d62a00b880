package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

// smallSets are an IPv4 set of two ranges and an IPv6 set small enough to
// run out: allocations wrap, fail and skip gateways.
func smallSets(t testing.TB) []allocator.RangeSet {
	t.Helper()
	rng := func(subnet, start, end string) allocator.Range {
		_, n, err := net.ParseCIDR(subnet)
		if err != nil {
			t.Fatal(err)
		}
		return allocator.Range{Subnet: types.IPNet(*n), RangeStart: net.ParseIP(start), RangeEnd: net.ParseIP(end)}
	}
	sets := []allocator.RangeSet{
		{rng("10.1.0.0/29", "", ""), rng("10.1.1.0/30", "", "")},
		{rng("fd01::/125", "", "")},
	}
	if err := allocator.Canonicalize(sets); err != nil {
		t.Fatal(err)
	}
	return sets
}

// stateFile is the state file's content ("" when there is none).
func stateFile(t testing.TB, dir string) string {
	t.Helper()
	p, _ := Paths(dir, "net1")
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestEditMatchesDecoding: a random run of ADDs (next free, requested,
// duplicate, exhausted) and DELs (first, middle, last, only, unknown
// lease) through Store.Allocate/Release gives, step by step, the results,
// errors and file bytes that the decoding path (State.Allocate/Release,
// Encode) gives; and once the file is stamped the steps edit it instead
// of decoding it, also after a lost stamp sent one step down the decoding
// path.
func TestEditMatchesDecoding(t *testing.T) {
	sets := smallSets(t)
	dir := t.TempDir()
	ref := allocator.NewState("net1")
	r := rand.New(rand.NewPCG(10, 4000))
	// Container IDs sorting before, between and after each other, one
	// that reads like an address, and ifnames of one container.
	cids := []string{"0", "a", "a0", "b", "m", "z", "10.1.0.3", "fd01::3", "ab-c_d.e"}
	ifnames := []string{"eth0", "net1"}
	addrs := []string{"10.1.0.2", "10.1.0.3", "10.1.0.6", "10.1.1.1", "10.1.1.2", "10.1.0.1", "fd01::2", "fd01::7", "fd01::1", "10.9.9.9"}
	edits := 0
	for step := range 600 {
		cid, ifname := cids[r.IntN(len(cids))], ifnames[r.IntN(len(ifnames))]
		s, err := Open(dir, "net1", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if step%41 == 40 {
			s.writeStamp(false) // as after a kill between rename and stamp
		}
		stamped := s.stamped()
		var got, want string
		if r.IntN(5) < 3 {
			var req []net.IP
			for range r.IntN(3) {
				req = append(req, net.ParseIP(addrs[r.IntN(len(addrs))]))
			}
			ips, err := s.Allocate(sets, cid, ifname, req)
			got = fmt.Sprint(ips, err)
			ips, err = ref.Allocate(sets, cid, ifname, req)
			want = fmt.Sprint(ips, err)
		} else {
			var held []net.IP
			if i := ref.Find(cid, ifname); i >= 0 {
				held = ref.Leases[i].IPs
			}
			ref.Release(cid, ifname)
			rel, err := s.Release(cid, ifname)
			got = fmt.Sprint(rel, err)
			want = fmt.Sprint(held, nil)
		}
		if s.edited != stamped {
			t.Fatalf("step %d: edited %v with the stamp matching %v", step, s.edited, stamped)
		}
		if s.edited {
			edits++
		}
		s.Close()
		if got != want {
			t.Fatalf("step %d (%s/%s): got %s, want %s", step, cid, ifname, got, want)
		}
		if f := stateFile(t, dir); f != "" {
			b, err := Encode(ref)
			if err != nil {
				t.Fatal(err)
			}
			if f != string(b) {
				t.Fatalf("step %d: the state file differs from the decoding path's:\n%s\nwant\n%s", step, f, b)
			}
		} else if len(ref.Leases) > 0 {
			t.Fatalf("step %d: no state file", step)
		}
	}
	if edits < 500 {
		t.Fatalf("only %d of 600 steps edited the file", edits)
	}
}

// stamped reports whether the state file is the one the stamp names.
func (s *Store) stamped() bool {
	data, unmap, ok := s.mapTrusted()
	if ok {
		_ = data
		unmap()
	}
	return ok
}

// TestEditNeedsStamp: a state file not written by this version's Save or
// edit is decoded (and so validated) before it is changed: an earlier
// version's indented file and the current format without a stamp are
// kept, lease by lease, and stamped by the first change; a file changed
// behind the stamp (a duplicate address added by hand) is refused as
// corrupt, not edited; so is one replaced by another file.
func TestEditNeedsStamp(t *testing.T) {
	sets := smallSets(t)
	old := allocator.NewState("net1")
	old.Leases = []allocator.Lease{
		{ContainerID: "k1", IfName: "eth0", IPs: []net.IP{net.ParseIP("10.1.0.2"), net.ParseIP("fd01::2")}},
		{ContainerID: "k2", IfName: "eth0", IPs: []net.IP{net.ParseIP("10.1.0.3"), net.ParseIP("fd01::3")}},
	}
	old.LastReserved = map[string]net.IP{sets[0].String(): net.ParseIP("10.1.0.3"), sets[1].String(): net.ParseIP("fd01::3")}
	indented, err := json.MarshalIndent(old, "", "  ") // what the first versions wrote
	if err != nil {
		t.Fatal(err)
	}
	current, err := Encode(old)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{"indented": append(indented, '\n'), "unstamped": current} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p, _ := Paths(dir, "net1")
			if err := os.WriteFile(p, content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, "net1", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			ips, err := s.Allocate(sets, "k3", "eth0", nil)
			if err != nil || s.edited {
				t.Fatalf("first ADD: %v, edited %v", err, s.edited)
			}
			if a := ips[0].Address.IP.String(); a != "10.1.0.4" {
				t.Errorf("first ADD got %s, want 10.1.0.4 (after the upgraded cursor)", a)
			}
			if _, err := s.Allocate(sets, "k1", "eth0", nil); err == nil || !strings.Contains(err.Error(), "already holds [10.1.0.2 fd01::2]") {
				t.Errorf("an upgraded lease is not kept: %v", err)
			}
			if !s.edited {
				t.Error("the second command did not edit the stamped file")
			}
			if rel, err := s.Release("k2", "eth0"); rel == nil || err != nil || !s.edited {
				t.Errorf("DEL of an upgraded lease: %v %v, edited %v", rel, err, s.edited)
			}
			s.Close()
			want := `{"version":1,"network":"net1","leases":[
{"containerID":"k1","ifname":"eth0","ips":["10.1.0.2","fd01::2"]},
{"containerID":"k3","ifname":"eth0","ips":["10.1.0.4","fd01::4"]}
],"lastReserved":{"10.1.0.1-10.1.0.6,10.1.1.1-10.1.1.2":"10.1.0.4","fd01::1-fd01::7":"fd01::4"}}
`
			if f := stateFile(t, dir); f != want {
				t.Errorf("state file:\n%s\nwant\n%s", f, want)
			}
		})
	}

	// Changed behind the stamp: k1's IPv6 address given to k3 as well,
	// the size kept.
	dir := t.TempDir()
	s, err := Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"k1", "k2"} {
		if _, err := s.Allocate(sets, c, "eth0", nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	p, _ := Paths(dir, "net1")
	for _, tc := range []struct {
		name   string
		change func(string) error
	}{
		{"edited in place", func(f string) error {
			fh, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				return err
			}
			defer fh.Close()
			_, err = fh.WriteString(f)
			return err
		}},
		{"replaced", func(f string) error {
			if err := os.WriteFile(p+".new", []byte(f), 0o600); err != nil {
				return err
			}
			return os.Rename(p+".new", p)
		}},
	} {
		f := stateFile(t, dir)
		bad := strings.Replace(f, `"fd01::3"`, `"fd01::2"`, 1)
		if bad == f || len(bad) != len(f) {
			t.Fatalf("test edit did not apply:\n%s", f)
		}
		if err := tc.change(bad); err != nil {
			t.Fatal(err)
		}
		s, err = Open(dir, "net1", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Allocate(sets, "k4", "eth0", nil); err == nil || !strings.Contains(err.Error(), "leased twice") {
			t.Errorf("%s: ADD on a file changed behind the stamp: %v (edited %v)", tc.name, err, s.edited)
		}
		if _, err := s.Release("k1", "eth0"); err == nil || !strings.Contains(err.Error(), "leased twice") {
			t.Errorf("%s: DEL on a file changed behind the stamp: %v", tc.name, err)
		}
		s.Close()
		if got := stateFile(t, dir); got != bad {
			t.Errorf("%s: a corrupt file was overwritten", tc.name)
		}
		if err := tc.change(f); err != nil { // back, for the next case
			t.Fatal(err)
		}
	}
}

// killChildEnv makes TestKillAnyMoment's binary the child it kills.
const killChildEnv = "LOCKFILE_IPAM_TEST_KILL_CHILD"

// TestKillAnyMoment SIGKILLs a process doing ADDs and DELs through the
// store at random moments (in the middle of an edit, a write, a rename,
// a stamp). After every kill: the next Open removes the temp file, the
// state file decodes and validates, and when the stamp names it, it is
// byte for byte what Encode makes of it (so the edits it allows are
// sound).
func TestKillAnyMoment(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(t, dir)
		return
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(7, 7))
	trusted := 0
	for round := range 30 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillAnyMoment$")
		cmd.Env = append(os.Environ(), killChildEnv+"="+dir, "LOCKFILE_IPAM_TEST_ROUND="+strconv.Itoa(round))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(5+r.IntN(60)) * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		s, err := Open(dir, "net1", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, tempName("net1"))); !os.IsNotExist(err) {
			t.Errorf("round %d: temp file left after Open: %v", round, err)
		}
		st, err := s.Load()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if data, unmap, ok := s.mapTrusted(); ok {
			trusted++
			enc, err := Encode(st)
			if err != nil || !bytes.Equal(enc, data) {
				t.Errorf("round %d: the stamped file is not what Encode writes (%v):\n%s", round, err, data)
			}
			unmap()
		}
		s.Close()
	}
	if trusted == 0 {
		t.Error("no kill left a stamped file")
	}
}

// killChild adds and removes leases until it is killed.
func killChild(t *testing.T, dir string) {
	_, n, _ := net.ParseCIDR("10.2.0.0/16")
	sets := []allocator.RangeSet{{{Subnet: types.IPNet(*n)}}}
	if err := allocator.Canonicalize(sets); err != nil {
		t.Fatal(err)
	}
	round := os.Getenv("LOCKFILE_IPAM_TEST_ROUND")
	for i := 0; ; i++ {
		s, err := Open(dir, "net1", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if i%7 == 6 {
			s.writeStamp(false) // some writes through the decoding path
		}
		if _, err := s.Allocate(sets, fmt.Sprintf("r%s-%d", round, i), "eth0", nil); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			if _, err := s.Release(fmt.Sprintf("r%s-%d", round, i-1), "eth0"); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
	}
}

// TestEditPastLeasedRun: the cursor wraps onto a run of 700 leased
// addresses with one hole (a network whose oldest pods live on): the edit
// finds the hole as decoding does, and asks its passes over the file only
// ScanLimit questions before one more pass builds a set, instead of a pass
// per leased address.
func TestEditPastLeasedRun(t *testing.T) {
	var sets []allocator.RangeSet
	for _, c := range []string{"10.3.0.0/22", "fd03::/64"} {
		_, n, _ := net.ParseCIDR(c)
		sets = append(sets, allocator.RangeSet{{Subnet: types.IPNet(*n)}})
	}
	if err := allocator.Canonicalize(sets); err != nil {
		t.Fatal(err)
	}
	st := allocator.NewState("net1")
	for i := 2; i < 702; i++ {
		if i == 650 {
			continue
		}
		st.Leases = append(st.Leases, allocator.Lease{ContainerID: fmt.Sprintf("c%04d", i), IfName: "eth0",
			IPs: []net.IP{net.IPv4(10, 3, byte(i>>8), byte(i)), net.ParseIP(fmt.Sprintf("fd03::%x", i))}})
	}
	st.LastReserved[sets[0].String()] = sets[0][0].RangeEnd
	st.LastReserved[sets[1].String()] = net.ParseIP("fd03::1")
	dir := t.TempDir()
	s, err := Open(dir, "net1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	e, ok := s.openEdit()
	if !ok {
		t.Fatal("a saved state is not stamped")
	}
	picked, err := allocator.Pick(sets, e.last, e.used, nil)
	e.close()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(picked); got != "[10.3.2.138 fd03::28a]" {
		t.Errorf("picked %s, want the holes 10.3.2.138 (650) and fd03::28a", got)
	}
	if e.asked != allocator.ScanLimit || e.set == nil {
		t.Errorf("%d questions answered by a pass each, set built: %v", e.asked, e.set != nil)
	}
	want, err := st.Allocate(sets, "new", "eth0", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Allocate(sets, "new", "eth0", nil)
	if err != nil || !s.edited || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Allocate (edited %v): %v %v, want %v", s.edited, got, err, want)
	}
}
