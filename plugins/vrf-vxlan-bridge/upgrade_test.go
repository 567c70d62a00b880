package main

import (
	"strings"
	"testing"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// prevInv is inv for the previous release's binary (testutil.PreviousPlugins).
func prevInv(t *testing.T, cmd, cid string, pod *netsim.NS, config []byte) testutil.Invocation {
	i := inv(cmd, cid, pod, config)
	i.Dir = testutil.PreviousPlugins(t)
	return i
}

// unmarked fails the test unless the devices exist without an alias (as
// the previous release left them).
func unmarked(t *testing.T, node *netsim.Node, devs ...string) {
	t.Helper()
	for _, dev := range devs {
		if a := alias(t, node, dev); a != "" {
			t.Fatalf("the previous release left %s with alias %q; want none", dev, a)
		}
	}
}

// TestUpgradeDevices: the previous release's bridge and VXLAN device
// (under the default and under a configured bridge name) are adopted and
// marked by today's ADD and removed by today's GC; GC alone removes them
// too. An empty bridge under a name of the config's choosing cannot be
// told from someone else's: refused, and left alone.
func TestUpgradeDevices(t *testing.T) {
	node, pod := labNode(t, "vb-upg")
	for _, tc := range []struct {
		network string
		extra   map[string]any
		devs    []string
		addNew  bool
	}{
		{"upa", map[string]any{"vxlan": map[string]any{"vni": 591, "remotes": []string{"198.18.0.40"}}}, []string{naming.BridgeName("upa"), "vxlan-591"}, true},
		{"upb", map[string]any{"bridge": map[string]any{"name": "tenant0"}, "vxlan": map[string]any{"vni": 592}}, []string{"tenant0", "vxlan-592"}, true},
		{"upc", map[string]any{}, []string{naming.BridgeName("upc")}, true},
		{"upd", map[string]any{"vxlan": map[string]any{"vni": 594}}, []string{naming.BridgeName("upd"), "vxlan-594"}, false},
	} {
		t.Run(tc.network, func(t *testing.T) {
			conf := netConf("1.1.0", tc.network, tc.extra)
			testutil.MustRun(t, node.NetNS, prevInv(t, "ADD", "c1", pod, conf))
			unmarked(t, node, tc.devs...)
			if tc.addNew {
				testutil.MustRun(t, node.NetNS, inv("ADD", "c2", pod, conf))
				for _, dev := range tc.devs {
					if a := alias(t, node, dev); a != naming.NetworkMark(tc.network) {
						t.Errorf("after today's ADD %s has alias %q, want %q", dev, a, naming.NetworkMark(tc.network))
					}
				}
				testutil.MustRun(t, node.NetNS, inv("CHECK", "c1", pod, conf))
			}
			gcEmpty(t, node, tc.network, tc.extra)
			for _, dev := range tc.devs {
				if link(t, node, dev) != nil {
					t.Errorf("GC left %s", dev)
				}
			}
		})
	}
	t.Run("empty custom bridge", func(t *testing.T) {
		conf := netConf("1.1.0", "upe", map[string]any{"bridge": map[string]any{"name": "solo0"}})
		testutil.MustRun(t, node.NetNS, prevInv(t, "ADD", "c1", pod, conf))
		e := testutil.Run(t, node.NetNS, inv("ADD", "c2", pod, conf)).CNIError(t)
		if e.Code != 7 || !strings.Contains(e.Msg, `bridge.name "solo0"`) {
			t.Errorf("code %d %q, want 7 naming bridge.name", e.Code, e.Msg)
		}
		gcEmpty(t, node, "upe", map[string]any{"bridge": map[string]any{"name": "solo0"}})
		if link(t, node, "solo0") == nil {
			t.Error("GC deleted an unmarked bridge it cannot tell from someone else's")
		}
	})
}
