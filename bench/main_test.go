package main

import (
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxvrf/cni/internal/testutil"
)

func TestStats(t *testing.T) {
	var d []time.Duration
	for i := 11; i >= 1; i-- { // 11..1 ms, unsorted
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := stats(d)
	if s.N != 11 || s.Median != 6 || s.P10 != 2 || s.P90 != 10 {
		t.Fatalf("stats of 1..11 ms: %+v", s)
	}
	if s := stats(nil); s.N != 0 {
		t.Fatalf("stats of nothing: %+v", s)
	}
}

func TestRewriteReadme(t *testing.T) {
	f := filepath.Join(t.TempDir(), "README.md")
	before, after := "# x\n\nintro\n", "\n\nrest\n"
	if err := os.WriteFile(f, []byte(before+beginMarker+"\nold\nlines\n"+endMarker+after), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewriteReadme(f, "new\n"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != before+beginMarker+"\nnew\n"+endMarker+after {
		t.Fatalf("rewritten to %q", b)
	}
	if err := os.WriteFile(f, []byte("no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewriteReadme(f, "new\n"); err == nil {
		t.Fatal("a README without the block was accepted")
	}
}

// TestSmokeRun is `go run ./bench` with the smallest settings: every chain
// but ours-nft (until sysctl-firewall has that backend) is measured, the
// IPAM curve has both plugins, the plots are PNGs and only the README block
// changes.
func TestSmokeRun(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("builds a lab")
	}
	dir := t.TempDir()
	readme := filepath.Join(dir, "README.md")
	if err := os.WriteFile(readme, []byte("top\n"+beginMarker+"\n"+endMarker+"\nbottom\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := options{
		bin:        testutil.PluginDir(t, testutil.Plugins...),
		ref:        testutil.ReferencePlugins(t, "bridge", "host-local", "tuning", "firewall", "portmap"),
		out:        filepath.Join(dir, "results"),
		readme:     readme,
		iterations: 2, levels: []int{0, 1}, concurrent: 2, leases: []int{10, 50}, quick: true,
	}
	if err := run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	res, err := readResults(filepath.Join(o.out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Chains) != 4 {
		t.Fatalf("%d chains", len(res.Chains))
	}
	for _, c := range res.Chains {
		if c.NA != "" {
			if c.Name == "ours-nft" && strings.HasPrefix(c.NA, "n/a (backend not available") {
				continue
			}
			t.Errorf("%s not measured: %s", c.Name, c.NA)
			continue
		}
		if len(c.Levels) != 2 || c.Levels[1].Pods != 1 {
			t.Errorf("%s levels: %+v", c.Name, c.Levels)
		}
		for _, l := range c.Levels {
			if l.Add.N != 2 || l.Del.N != 2 || l.Add.Median <= 0 || l.Del.Median <= 0 {
				t.Errorf("%s at %d pods: %+v", c.Name, l.Pods, l)
			}
		}
		if c.ConcurrentAdd <= 0 || c.ConcurrentDel <= 0 || c.FirstAdd <= 0 {
			t.Errorf("%s: concurrent %v/%v first %v", c.Name, c.ConcurrentAdd, c.ConcurrentDel, c.FirstAdd)
		}
		if len(c.Stages) == 0 {
			t.Errorf("%s: no stages", c.Name)
		}
		for _, s := range append(c.Stages, c.StagesFull...) {
			if s.Add.N != 2 || s.Del.N != 2 { // one exec per plugin per ADD and DEL
				t.Errorf("%s stage %s: %+v", c.Name, s.Plugin, s)
			}
		}
		if len(c.StagesFull) != len(c.Stages) {
			t.Errorf("%s: stages at the last level %+v", c.Name, c.StagesFull)
		}
	}
	if len(res.IPAM) != 4 {
		t.Errorf("IPAM results: %+v", res.IPAM)
	}
	for _, name := range []string{plotPods, plotStages, plotLeases} {
		f, err := os.Open(filepath.Join(o.out, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(f); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		f.Close()
	}
	b, _ := os.ReadFile(readme)
	s := string(b)
	if !strings.HasPrefix(s, "top\n"+beginMarker+"\nMeasured by `make bench`") || !strings.HasSuffix(s, endMarker+"\nbottom\n") ||
		!strings.Contains(s, "| ours-ipt |") || !strings.Contains(s, "(results/"+plotPods+")") {
		t.Errorf("README:\n%s", s)
	}
}
