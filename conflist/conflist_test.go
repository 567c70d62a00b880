// Package conflist_test checks the shipped conflists without root: they load
// with libcni as a runtime loads them, name only the project's plugins, and
// carry well-formed values for the keys each stage reads.
package conflist_test

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/testutil"
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
				checkPlugin(t, p.Network.Type, p.Bytes)
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

// checkPlugin validates the keys each stage reads, strictly: an unknown or
// misspelt key fails here rather than being ignored by the plugin.
func checkPlugin(t *testing.T, typ string, b []byte) {
	t.Helper()
	strict := func(v any) {
		t.Helper()
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(v); err != nil {
			t.Errorf("%s: %v in %s", typ, err, b)
		}
	}
	type common struct {
		Type         string          `json:"type"`
		Capabilities map[string]bool `json:"capabilities"`
	}
	switch typ {
	case "infra-ensure":
		var c struct {
			common
			Uplink       string `json:"uplink"`
			LocalAddress string `json:"localAddress"`
			StateDir     string `json:"stateDir"`
		}
		strict(&c)
		if c.StateDir != "" && !filepath.IsAbs(c.StateDir) {
			t.Errorf("infra-ensure stateDir %q is not absolute", c.StateDir)
		}
	case "vrf-vxlan-bridge":
		var c struct {
			common
			AnycastGateway bool `json:"anycastGateway"`
			VRF            *struct {
				Name   string `json:"name"`
				Table  int64  `json:"table"`
				Egress bool   `json:"egress"`
			} `json:"vrf"`
			Bridge *struct {
				Name string `json:"name"`
				MTU  int    `json:"mtu"`
				MAC  string `json:"mac"`
			} `json:"bridge"`
			VXLAN *struct {
				VNI      int64    `json:"vni"`
				Port     int      `json:"port"`
				Learning *bool    `json:"learning"`
				Group    string   `json:"group"`
				Remotes  []string `json:"remotes"`
				EVPN     bool     `json:"evpn"`
				Local    string   `json:"local"`
				Dev      string   `json:"dev"`
			} `json:"vxlan"`
		}
		strict(&c)
		if c.VXLAN != nil {
			if c.VXLAN.VNI < 1 || c.VXLAN.VNI > 1<<24-1 {
				t.Errorf("vxlan.vni %d out of range", c.VXLAN.VNI)
			}
			for _, r := range c.VXLAN.Remotes {
				if net.ParseIP(r) == nil {
					t.Errorf("vxlan.remotes: %q is not an IP", r)
				}
			}
		}
		if c.VRF != nil && (c.VRF.Table < 1 || c.VRF.Table >= 253 && c.VRF.Table <= 255) {
			t.Errorf("vrf.table %d is not usable", c.VRF.Table)
		}
	case "lockfile-ipam":
		var c struct {
			common
			IPAM ipamConf `json:"ipam"`
		}
		strict(&c)
		c.IPAM.check(t)
	case "veth-attach":
		var c struct {
			common
			Bridge    string    `json:"bridge"`
			MTU       int       `json:"mtu"`
			Hairpin   bool      `json:"hairpin"`
			EnableDAD bool      `json:"enableDad"`
			IPAM      *ipamConf `json:"ipam"`
		}
		strict(&c)
		if c.IPAM != nil {
			c.IPAM.check(t)
		}
	case "sysctl-firewall":
		var c struct {
			common
			Sysctls       map[string]string `json:"sysctls"`
			HostSysctls   map[string]string `json:"hostSysctls"`
			Masquerade    bool              `json:"masquerade"`
			AntiSpoofing  bool              `json:"antiSpoofing"`
			Uplink        string            `json:"uplink"`
			ConntrackZone *uint16           `json:"conntrackZone"`
		}
		strict(&c)
		for k := range c.Sysctls {
			if len(k) < 4 || k[:4] != "net." {
				t.Errorf("sysctl %q is not net.*", k)
			}
		}
	}
}

type ipamConf struct {
	Type   string `json:"type"`
	Ranges [][]struct {
		Subnet     string `json:"subnet"`
		RangeStart string `json:"rangeStart"`
		RangeEnd   string `json:"rangeEnd"`
		Gateway    string `json:"gateway"`
	} `json:"ranges"`
	Routes []struct {
		Dst string `json:"dst"`
		GW  string `json:"gw"`
	} `json:"routes"`
	DataDir     string `json:"dataDir"`
	ResolvConf  string `json:"resolvConf"`
	LockTimeout string `json:"lockTimeout"`
}

func (c *ipamConf) check(t *testing.T) {
	t.Helper()
	if len(c.Ranges) == 0 {
		t.Error("ipam: no ranges")
	}
	for _, set := range c.Ranges {
		for _, r := range set {
			_, subnet, err := net.ParseCIDR(r.Subnet)
			if err != nil {
				t.Errorf("ipam subnet: %v", err)
				continue
			}
			for _, a := range []string{r.RangeStart, r.RangeEnd, r.Gateway} {
				if a != "" && !subnet.Contains(net.ParseIP(a)) {
					t.Errorf("ipam: %s is not in %s", a, r.Subnet)
				}
			}
		}
	}
	for _, r := range c.Routes {
		if _, _, err := net.ParseCIDR(r.Dst); err != nil {
			t.Errorf("ipam route: %v", err)
		}
	}
	if c.DataDir != "" && !filepath.IsAbs(c.DataDir) {
		t.Errorf("ipam dataDir %q is not absolute", c.DataDir)
	}
}
