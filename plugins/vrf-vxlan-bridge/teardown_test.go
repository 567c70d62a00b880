package main

import (
	"testing"

	"github.com/containernetworking/cni/pkg/utils"

	"github.com/vxvrf/cni/pkg/naming"
)

// TestTeardownDevices: GC takes every usable name from a config and
// leaves out what is unusable, without failing on the rest.
func TestTeardownDevices(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want netDevices
	}{
		{`{"name":"red","vrf":{"table":100},"vxlan":{"vni":7}}`,
			netDevices{network: "red", mark: "vxvrf:red", vrf: "vrf-red", table: 100, bridge: "br-red", vxlan: "vxlan-7", vni: 7}},
		{`{"name":"red","vrf":{"name":"v1","table":254},"bridge":{"name":"b1","mtu":"x"},"vxlan":{"vni":0}}`,
			netDevices{network: "red", mark: "vxvrf:red", vrf: "v1", bridge: "b1"}},
		{`{"name":"red","vrf":"x","bridge":{"name":"has space"},"vxlan":{"vni":1.5}}`,
			netDevices{network: "red", mark: "vxvrf:red", vrf: "vrf-red"}},
		{`{"name":"red","vrf":null,"bridge":7,"vxlan":{"vni":16777216}}`,
			netDevices{network: "red", mark: "vxvrf:red", bridge: "br-red"}},
	} {
		if got := teardownDevices([]byte(tc.in)); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

// FuzzTeardownDevices: any stdin gives names that are valid interface
// names or empty, a table and VNI in range or 0, and never a panic.
func FuzzTeardownDevices(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion":"1.1.0","name":"red","type":"vrf-vxlan-bridge","vrf":{"table":100,"egress":true},"bridge":{"mac":"02:00:5e:00:01:01"},"vxlan":{"vni":100,"remotes":["198.18.0.12"]}}`,
		`{"name":"x","bridge":{"name":"eth0"},"vrf":{"name":"vx0123456789abc","table":4294967295}}`,
		`{"name":"x","vxlan":{"vni":-1},"vrf":{"table":1e300}}`,
		`[]`, `null`, `{"vrf":[],"bridge":[],"vxlan":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stdin []byte) {
		d := teardownDevices(stdin)
		for _, n := range []string{d.vrf, d.bridge, d.vxlan} {
			if n != "" && utils.ValidateInterfaceName(n) != nil {
				t.Fatalf("invalid device name %q from %q", n, stdin)
			}
		}
		if d.table < 0 || d.table > MaxTable || d.vni < 0 || d.vni > MaxVNI || (d.vni == 0) != (d.vxlan == "") {
			t.Fatalf("table %d vni %d vxlan %q from %q", d.table, d.vni, d.vxlan, stdin)
		}
		if d.mark != naming.NetworkMark(d.network) {
			t.Fatalf("mark %q for network %q", d.mark, d.network)
		}
	})
}
