// Package conflist_test checks the shipped conflists without root: they load
// with libcni as a runtime loads them, name only the project's plugins, and
// every stage accepts its section (its own --validate, as ADD parses it).
package conflist_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/vxvrf/cni/conflist"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/doctor"
)

func files(t *testing.T) []string {
	t.Helper()
	fs, err := filepath.Glob("*.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) < 2 {
		t.Fatalf("expected at least the default and the VRF+VXLAN conflist, found %v", fs)
	}
	return fs
}

func TestConflistsLoad(t *testing.T) {
	for _, f := range files(t) {
		t.Run(f, func(t *testing.T) {
			list, err := libcni.ConfListFromFile(f)
			if err != nil {
				t.Fatalf("libcni: %v", err)
			}
			// libcni picks the highest of cniVersion and cniVersions it
			// implements: 1.1.0 for this release.
			if list.CNIVersion != "1.1.0" {
				t.Errorf("libcni picked cniVersion %q, want 1.1.0", list.CNIVersion)
			}
			var raw struct {
				CNIVersion  string   `json:"cniVersion"`
				CNIVersions []string `json:"cniVersions"`
			}
			b, _ := os.ReadFile(f)
			if err := json.Unmarshal(b, &raw); err != nil {
				t.Fatal(err)
			}
			// containerd 1.6 and podman 4.3 read only cniVersion, up to 1.0.0.
			if raw.CNIVersion != "1.0.0" || !slices.Equal(raw.CNIVersions, []string{"1.0.0", "1.1.0"}) {
				t.Errorf("cniVersion %q cniVersions %v, want 1.0.0 and [1.0.0 1.1.0]", raw.CNIVersion, raw.CNIVersions)
			}
			for _, v := range append(raw.CNIVersions, raw.CNIVersion) {
				if !slices.Contains(cniutil.Versions.SupportedVersions(), v) {
					t.Errorf("cniVersion %s is not supported by the stages (%v)", v, cniutil.Versions.SupportedVersions())
				}
			}
			if len(list.Plugins) == 0 {
				t.Fatal("no plugins")
			}
			for i, p := range list.Plugins {
				if !slices.Contains(testutil.Plugins, p.Network.Type) {
					t.Errorf("plugins[%d]: type %q is not one of ours %v", i, p.Network.Type, testutil.Plugins)
				}
				if _, err := os.Stat(filepath.Join("..", "plugins", p.Network.Type, "main.go")); err != nil {
					t.Errorf("plugins[%d]: no plugin source for %q: %v", i, p.Network.Type, err)
				}
			}
		})
	}
}

// TestDefaultOrder pins the default conflist to the five-stage chain.
func TestDefaultOrder(t *testing.T) {
	list, err := libcni.ConfListFromFile("vxvrf.conflist")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Network.Type)
	}
	if !slices.Equal(types, testutil.Plugins) {
		t.Errorf("default chain %v, want %v", types, testutil.Plugins)
	}
	if list.Name != "vxvrf" {
		t.Errorf("name %q, want vxvrf", list.Name)
	}
}

// TestVRFExample checks the VRF + VXLAN example carries both.
func TestVRFExample(t *testing.T) {
	list, err := libcni.ConfListFromFile("vrf-vxlan.conflist")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Plugins {
		if p.Network.Type != "vrf-vxlan-bridge" {
			continue
		}
		var c struct {
			VRF   *struct{ Table int64 } `json:"vrf"`
			VXLAN *struct{ VNI int64 }   `json:"vxlan"`
		}
		if err := json.Unmarshal(p.Bytes, &c); err != nil {
			t.Fatal(err)
		}
		if c.VRF == nil || c.VRF.Table == 0 || c.VXLAN == nil || c.VXLAN.VNI == 0 {
			t.Errorf("vrf-vxlan-bridge in the VRF example lacks vrf.table or vxlan.vni: %s", p.Bytes)
		}
		return
	}
	t.Error("no vrf-vxlan-bridge stage")
}

// validate runs every stage's own --validate (the parse ADD does, through
// vxvrf validate's code) on the conflist file f: the test has no schema of
// its own, so it can never disagree with the plugins.
func validate(t *testing.T, f string) doctor.Findings {
	t.Helper()
	return doctor.Validate(f, []string{testutil.PluginDir(t, testutil.Plugins...)})
}

func TestConflistsValidate(t *testing.T) {
	for _, f := range files(t) {
		t.Run(f, func(t *testing.T) {
			findings := validate(t, f)
			for _, x := range findings {
				if x.Severity != doctor.OK {
					t.Errorf("%s: %s: %s", x.Severity, x.Check, x.Message)
				}
			}
			if n := len(findings); n != 1+len(testutil.Plugins) {
				t.Errorf("%d findings, want the conflist and each of the %d stages: %v", n, len(testutil.Plugins), findings)
			}
		})
	}
}

// A misspelt key or a bad value in a shipped conflist fails the check with
// the message ADD would give.
func TestConflistValidateCatchesMistakes(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{`"masquerade": true`, `"masqerade": true`, "masquerade"},
		{`"stateDir": "/run/vxvrf"`, `"stateDir": "run/vxvrf"`, "stateDir"},
		{`"subnet": "10.244.1.0/24"`, `"subnet": "10.244.1.0/33"`, "10.244.1.0/33"},
	} {
		b := bytes.Replace(conflist.Default, []byte(c.from), []byte(c.to), 1)
		if bytes.Equal(b, conflist.Default) {
			t.Fatalf("%s not in the default conflist", c.from)
		}
		f := filepath.Join(t.TempDir(), "bad.conflist")
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		findings := validate(t, f)
		if !findings.Failed() {
			t.Errorf("%s: not caught: %v", c.to, findings)
			continue
		}
		var msgs []string
		for _, x := range findings {
			if x.Severity == doctor.Error {
				msgs = append(msgs, x.Message)
			}
		}
		if !strings.Contains(strings.Join(msgs, "\n"), c.want) {
			t.Errorf("%s: messages %q do not name %q", c.to, msgs, c.want)
		}
	}
}

// The embedded Default is the file on disk.
func TestEmbeddedDefault(t *testing.T) {
	b, err := os.ReadFile("vxvrf.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, conflist.Default) {
		t.Error("conflist.Default differs from vxvrf.conflist")
	}
}
