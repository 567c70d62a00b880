package install

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vxvrf/cni/pkg/naming"
)

var pluginNames = naming.Stages()

// fixture is a source dir of fake plugin binaries, a cluster config and an
// empty DESTDIR-style root.
func fixture(t *testing.T, node string) *Options {
	t.Helper()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range pluginNames {
		b := make([]byte, 256<<10)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(src, n), b, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Not executable: not a plugin.
	if err := os.WriteFile(filepath.Join(src, "README"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(base, "cluster.json")
	if err := os.WriteFile(cfg, []byte(threeNodes), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Options{
		Root:   filepath.Join(base, "root"),
		SrcDir: src,
		Config: cfg,
		Local:  Local{Name: node},
		Logf:   t.Logf,
	}
}

type fileState struct {
	ino   uint64
	mtime time.Time
	mode  os.FileMode
	data  []byte
}

// snapshot records every file under root, and fails on leftover temp files.
func snapshot(t *testing.T, root string) map[string]fileState {
	t.Helper()
	m := map[string]fileState{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		if strings.Contains(info.Name(), tempMarker) {
			t.Errorf("temporary file left behind: %s", p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		m[rel] = fileState{info.Sys().(*syscall.Stat_t).Ino, info.ModTime(), info.Mode(), data}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameFiles(t *testing.T, before, after map[string]fileState) {
	t.Helper()
	if len(before) != len(after) {
		t.Errorf("files before %d, after %d", len(before), len(after))
	}
	for p, b := range before {
		a, ok := after[p]
		if !ok {
			t.Errorf("%s is gone", p)
			continue
		}
		if a.ino != b.ino || !a.mtime.Equal(b.mtime) || a.mode != b.mode || !bytes.Equal(a.data, b.data) {
			t.Errorf("%s changed (inode %d→%d, mtime %v→%v, mode %v→%v)", p, b.ino, a.ino, b.mtime, a.mtime, b.mode, a.mode)
		}
	}
}

func TestOnceInstallsAndIsIdempotent(t *testing.T) {
	o := fixture(t, "node-b")
	if err := o.Once(); err != nil {
		t.Fatal(err)
	}
	first := snapshot(t, o.Root)
	want := []string{"etc/cni/net.d/10-vxvrf.conflist"}
	for _, n := range pluginNames {
		want = append(want, "opt/cni/bin/"+n)
	}
	if len(first) != len(want) {
		t.Errorf("installed %d files, want %d: %v", len(first), len(want), first)
	}
	for _, p := range want {
		f, ok := first[p]
		if !ok {
			t.Errorf("%s not installed", p)
			continue
		}
		if strings.HasPrefix(p, "opt/") {
			src, _ := os.ReadFile(filepath.Join(o.SrcDir, filepath.Base(p)))
			if f.mode.Perm() != 0o755 || !bytes.Equal(f.data, src) {
				t.Errorf("%s: mode %v, same content %v", p, f.mode, bytes.Equal(f.data, src))
			}
		} else if f.mode.Perm() != 0o644 || !strings.Contains(string(f.data), `"192.0.2.12"`) {
			t.Errorf("%s: mode %v content %s", p, f.mode, f.data)
		}
	}
	// A second run, and a run with the binaries only, change nothing at all.
	if err := o.Once(); err != nil {
		t.Fatal(err)
	}
	if w, err := o.InstallBinaries(); err != nil || len(w) != 0 {
		t.Errorf("second InstallBinaries wrote %v (%v)", w, err)
	}
	sameFiles(t, first, snapshot(t, o.Root))

	// A new binary replaces the old one by rename: a process running the
	// old inode keeps it, the next exec gets the new file.
	newBin := []byte("new version")
	if err := os.WriteFile(filepath.Join(o.SrcDir, "veth-attach"), newBin, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := o.InstallBinaries()
	if err != nil || len(w) != 1 || filepath.Base(w[0]) != "veth-attach" {
		t.Fatalf("update wrote %v (%v)", w, err)
	}
	after := snapshot(t, o.Root)
	if a := after["opt/cni/bin/veth-attach"]; !bytes.Equal(a.data, newBin) || a.ino == first["opt/cni/bin/veth-attach"].ino {
		t.Errorf("veth-attach not replaced by a new inode")
	}
}

func TestStaleTempsRemoved(t *testing.T) {
	o := fixture(t, "node-a")
	bin, conf := o.BinDirPath(), o.ConfDirPath()
	for _, d := range []string{bin, conf} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stale := []string{
		filepath.Join(bin, ".veth-attach"+tempMarker+"123"),
		filepath.Join(conf, ".10-vxvrf.conflist"+tempMarker+"456"),
	}
	for _, s := range stale {
		if err := os.WriteFile(s, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keep := filepath.Join(conf, "99-other.conflist")
	if err := os.WriteFile(keep, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := o.Once(); err != nil {
		t.Fatal(err)
	}
	for _, s := range stale {
		if _, err := os.Stat(s); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", s, err)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("another network's conflist was touched: %v", err)
	}
}

func TestBadConfigLeavesOldFiles(t *testing.T) {
	o := fixture(t, "node-a")
	if err := o.Once(); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, o.Root)
	for _, bad := range []struct{ cfg, want string }{
		{`{"conflist": `, "unexpected EOF"},
		{strings.Replace(threeNodes, `"10.244.1.0/24"`, `"10.244.1.0/33"`, 1), `"10.244.1.0/33" is not a CIDR`},
		{strings.Replace(threeNodes, `"type": "veth-attach"`, `"type": ""`, 1), "does not load with libcni"},
	} {
		if err := os.WriteFile(o.Config, []byte(bad.cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		err := o.Once()
		if err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), o.Config) {
			t.Errorf("error %v: want it to name %s and say %q", err, o.Config, bad.want)
		}
		sameFiles(t, before, snapshot(t, o.Root))
	}
	os.Remove(o.Config)
	if err := o.Once(); err == nil || !strings.Contains(err.Error(), "read cluster config") {
		t.Errorf("missing config: %v", err)
	}
	sameFiles(t, before, snapshot(t, o.Root))
}

// A reader that opens the file in a loop while it is rewritten sees either
// the old or the new content, complete, every time.
func TestWriteIsAtomicForConcurrentReaders(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "10-vxvrf.conflist")
	bin := filepath.Join(dir, "plugin")
	// Large enough that a non-atomic write would be seen half done.
	versions := make([][]byte, 2)
	bins := make([][]byte, 2)
	for i := range versions {
		pad := strings.Repeat(fmt.Sprint(i), 512<<10)
		versions[i], _ = json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "vxvrf", "pad": pad, "plugins": []any{map[string]any{"type": "x"}}})
		bins[i] = bytes.Repeat([]byte{byte('a' + i)}, 1<<20)
	}
	if _, err := WriteFileAtomic(conf, versions[0], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFileAtomic(bin, bins[0], 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var reads [2]int
	errs := make(chan error, 2)
	reader := func(k int, path string, valid func([]byte) error) {
		defer wg.Done()
		for ctx.Err() == nil {
			b, err := os.ReadFile(path)
			if err == nil {
				err = valid(b)
			}
			if err != nil {
				errs <- fmt.Errorf("%s after %d good reads: %w", path, reads[k], err)
				return
			}
			reads[k]++
		}
	}
	wg.Add(2)
	go reader(0, conf, func(b []byte) error {
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("partial conflist (%d bytes): %w", len(b), err)
		}
		return nil
	})
	go reader(1, bin, func(b []byte) error {
		if !bytes.Equal(b, bins[0]) && !bytes.Equal(b, bins[1]) {
			return fmt.Errorf("binary of %d bytes is neither version", len(b))
		}
		return nil
	})
	for i := 1; i <= 40; i++ {
		if _, err := WriteFileAtomic(conf, versions[i%2], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := WriteFileAtomic(bin, bins[i%2], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reads[0] == 0 || reads[1] == 0 {
		t.Errorf("readers did not run: %v", reads)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("files left: %v", entries)
	}
}

func TestWatchRerendersOnChange(t *testing.T) {
	o := fixture(t, "node-c")
	conflist := filepath.Join(o.ConfDirPath(), DefaultConflistName)
	events := make(chan Event, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Watch(ctx, 5*time.Millisecond, func(e Event) { events <- e }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("watch: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("watch did not stop")
		}
	})
	// wait for a pass matching ok, at most 10 s.
	wait := func(what string, ok func(Event) bool) Event {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case e := <-events:
				if ok(e) {
					return e
				}
			case <-deadline:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	wait("first install", func(e Event) bool { return e.Err == nil && e.Changed })
	if !strings.Contains(mustRead(t, conflist), `"192.0.2.13"`) {
		t.Fatal("first render lacks the node address")
	}

	// A fourth node joins: node-c's remotes gain its address.
	joined := strings.Replace(threeNodes, `"nodes": [`, `"nodes": [
    {"name": "node-d", "address": "192.0.2.14", "podCIDRs": ["10.244.3.0/24", "fd00:10:244:3::/64"]},`, 1)
	setConfig(t, o, []byte(joined))
	wait("re-render with node-d", func(e Event) bool { return e.Changed && e.Err == nil })
	var r rendered
	if err := json.Unmarshal([]byte(mustRead(t, conflist)), &r); err != nil {
		t.Fatal(err)
	}
	if got := r.Plugins[1].VXLAN.Remotes; strings.Join(got, ",") != "192.0.2.14,192.0.2.11,192.0.2.12" {
		t.Errorf("remotes after the join: %v", got)
	}
	good := snapshot(t, o.Root)

	// A bad edit: reported, the files stay, the watcher goes on.
	setConfig(t, o, []byte(strings.Replace(joined, `"192.0.2.14"`, `"192.0.2.300"`, 1)))
	e := wait("the bad config's error", func(e Event) bool { return e.Err != nil })
	if !strings.Contains(e.Err.Error(), `address "192.0.2.300" is not a unicast IP address`) {
		t.Errorf("error: %v", e.Err)
	}
	wait("a second pass on the bad config", func(e Event) bool { return e.Err != nil })
	sameFiles(t, good, snapshot(t, o.Root))

	// Fixed again (node-d left): re-rendered.
	setConfig(t, o, []byte(threeNodes))
	wait("re-render after the fix", func(e Event) bool { return e.Changed && e.Err == nil })
	if strings.Contains(mustRead(t, conflist), "192.0.2.14") {
		t.Error("node-d still a remote")
	}

	// Someone deletes the conflist and a binary: put back on the next pass.
	os.Remove(conflist)
	os.Remove(filepath.Join(o.BinDirPath(), "lockfile-ipam"))
	wait("repair", func(e Event) bool {
		_, err1 := os.Stat(conflist)
		_, err2 := os.Stat(filepath.Join(o.BinDirPath(), "lockfile-ipam"))
		return e.Err == nil && err1 == nil && err2 == nil
	})
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// setConfig replaces the config atomically, as a ConfigMap volume update
// does (a half-written file would be a bad config of its own).
func setConfig(t *testing.T, o *Options, data []byte) {
	t.Helper()
	if _, err := WriteFileAtomic(o.Config, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
