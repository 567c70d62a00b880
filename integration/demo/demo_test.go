package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxvrf/cni/integration/demokit"
	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/testutil"
)

const vrfConflist = "../../conflist/vrf-vxlan.conflist"

func plugin(t *testing.T, conf []byte, typ string) map[string]any {
	t.Helper()
	var got map[string]any
	if _, err := chain.Edit(conf, func(_ map[string]any, plugins []map[string]any) error {
		got = chain.Plugin(plugins, typ)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestPrepareVRF(t *testing.T) {
	raw, err := os.ReadFile(vrfConflist)
	if err != nil {
		t.Fatal(err)
	}
	// A kernel with VRF: the conflist runs as written.
	out, notes, err := prepare(raw, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 0 {
		t.Errorf("notes on a VRF kernel: %q", notes)
	}
	if _, ok := plugin(t, out, "vrf-vxlan-bridge")["vrf"]; !ok {
		t.Errorf("vrf removed on a kernel with VRF")
	}
	// Without VRF: vrf removed, said plainly, everything else kept.
	out, notes, err = prepare(raw, false)
	if err != nil {
		t.Fatal(err)
	}
	p := plugin(t, out, "vrf-vxlan-bridge")
	if _, ok := p["vrf"]; ok {
		t.Errorf("vrf kept on a kernel without VRF")
	}
	if vx, _ := p["vxlan"].(map[string]any); vx == nil || vx["vni"] != float64(100) {
		t.Errorf("vxlan changed: %v", p["vxlan"])
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "NO VRF support") || !strings.Contains(notes[0], "CONFIG_NET_VRF") {
		t.Errorf("notes = %q, want one saying the kernel has no VRF", notes)
	}
	if plugin(t, out, "sysctl-firewall")["masquerade"] != true {
		t.Errorf("other stages changed: %s", out)
	}
}

func TestPrepareAddsVXLAN(t *testing.T) {
	raw, err := os.ReadFile("../../conflist/vxvrf.conflist")
	if err != nil {
		t.Fatal(err)
	}
	out, notes, err := prepare(raw, false)
	if err != nil {
		t.Fatal(err)
	}
	vx, _ := plugin(t, out, "vrf-vxlan-bridge")["vxlan"].(map[string]any)
	if vx == nil || vx["vni"] != float64(demoVNI) {
		t.Errorf("vxlan = %v, want vni %d", vx, demoVNI)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "no vxlan") {
		t.Errorf("notes = %q, want one saying vxlan was added", notes)
	}
	if _, _, err := prepare([]byte(`{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"veth-attach"}]}`), true); err == nil {
		t.Errorf("a conflist without vrf-vxlan-bridge was accepted")
	}
}

func TestPodCIDRs(t *testing.T) {
	conf := []byte(`{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"lockfile-ipam","ipam":{"ranges":[
		[{"subnet":"10.100.0.0/16"}],[{"subnet":"fd00:10::/64"}]]}}]}`)
	for i, want := range [][]string{
		{"10.100.0.0/17", "fd00:10::/65"},
		{"10.100.128.0/17", "fd00:10:0:0:8000::/65"},
	} {
		got, err := podCIDRs(conf, i, 2)
		if err != nil {
			t.Fatal(err)
		}
		for j := range want {
			if !sameCIDR(got[j], want[j]) {
				t.Errorf("node %d: %v, want %v", i, got, want)
			}
		}
	}
	small := []byte(`{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"lockfile-ipam","ipam":{"ranges":[[{"subnet":"10.0.0.0/30"}]]}}]}`)
	if _, err := podCIDRs(small, 0, 2); err == nil {
		t.Errorf("a /30 was split between two nodes")
	}
	if _, err := podCIDRs([]byte(`{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"x"}]}`), 0, 2); err == nil {
		t.Errorf("a conflist without ranges was accepted")
	}
}

func sameCIDR(a, b string) bool {
	ipa, x, err1 := net.ParseCIDR(a)
	ipb, y, err2 := net.ParseCIDR(b)
	return err1 == nil && err2 == nil && ipa.Equal(x.IP) && ipb.Equal(y.IP) && x.String() == y.String()
}

// binDir is a directory holding the built plugins and vxvrf-installer, as
// make demo's bin/.
func binDir(t *testing.T) string {
	t.Helper()
	plugins := testutil.PluginDir(t, testutil.Plugins...)
	dir := t.TempDir()
	for _, p := range testutil.Plugins {
		if err := os.Symlink(filepath.Join(plugins, p), filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "vxvrf-installer"), "./deploy/installer")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vxvrf-installer: %v: %s", err, out)
	}
	return dir
}

// labLeft lists the namespaces of the lab still there.
func labLeft(lab string) []string {
	var left []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), os.Getenv("VXVRF_LAB_PREFIX")+lab+"-") {
			left = append(left, e.Name())
		}
	}
	return left
}

// TestDemo runs the demo as make demo does, twice in a row on the same lab
// name: with the shipped VRF conflist (without VRF on a kernel that has
// none), then with the default conflist (which gets a VXLAN); then with a
// conflist whose last stage fails: the demo fails and leaves nothing behind
// either way.
func TestDemo(t *testing.T) {
	testutil.RequireRoot(t)
	bin := binDir(t)
	const lab = "demot"
	run := func(conflist string) (*demo, error) {
		d := &demo{Lab: demokit.Lab{Name: "demo"}, conflist: conflist, lab: lab}
		err := d.run(bin)
		d.Cleanup()
		if left := labLeft(lab); len(left) > 0 {
			t.Errorf("%s: namespaces left: %v", conflist, left)
		}
		if _, statErr := os.Stat(d.Tmp); d.Tmp != "" && !os.IsNotExist(statErr) {
			t.Errorf("%s: temp dir %s left", conflist, d.Tmp)
		}
		return d, err
	}
	for _, c := range []string{vrfConflist, "../../conflist/vxvrf.conflist"} {
		d, err := run(c)
		if err != nil || d.Failures > 0 {
			t.Fatalf("demo with %s: err %v, %d failed checks", c, err, d.Failures)
		}
	}

	raw, err := os.ReadFile("../../conflist/vxvrf.conflist")
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.conflist")
	if err := os.WriteFile(bad, []byte(strings.ReplaceAll(string(raw), "arp_notify", "no_such_sysctl")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(bad); err == nil || !strings.Contains(err.Error(), "no_such_sysctl") {
		t.Errorf("demo with a failing stage: err %v, want the stage's error", err)
	}
}
