package main

import (
	"strings"
	"testing"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

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
	node, pod := testutil.NodeWithPod(t, "vb-upg")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
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
			conf := testutil.Conf("1.1.0", tc.network, plugin).Keys(tc.extra).Bytes()
			testutil.Stage{Plugin: plugin, In: node.NetNS, Dir: testutil.PreviousPlugins(t)}.Add(t, "c1", pod, conf).OK(t)
			unmarked(t, node, tc.devs...)
			if tc.addNew {
				st.Add(t, "c2", pod, conf).OK(t)
				for _, dev := range tc.devs {
					if a := alias(t, node, dev); a != naming.NetworkMark(tc.network) {
						t.Errorf("after today's ADD %s has alias %q, want %q", dev, a, naming.NetworkMark(tc.network))
					}
				}
				st.Check(t, "c1", pod, conf).OK(t)
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
		conf := testutil.Conf("1.1.0", "upe", plugin).With("bridge", map[string]any{"name": "solo0"}).Bytes()
		testutil.Stage{Plugin: plugin, In: node.NetNS, Dir: testutil.PreviousPlugins(t)}.Add(t, "c1", pod, conf).OK(t)
		e := st.Add(t, "c2", pod, conf).CNIError(t)
		if e.Code != 7 || !strings.Contains(e.Msg, `bridge.name "solo0"`) {
			t.Errorf("code %d %q, want 7 naming bridge.name", e.Code, e.Msg)
		}
		gcEmpty(t, node, "upe", map[string]any{"bridge": map[string]any{"name": "solo0"}})
		if link(t, node, "solo0") == nil {
			t.Error("GC deleted an unmarked bridge it cannot tell from someone else's")
		}
	})
}
