package integration

import (
	"slices"
	"strings"
	"testing"

	"github.com/vxvrf/cni/pkg/chain"
	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/pkg/testutil"
)

// TestInspectNodeAddresses: inspect shows the configured
// bridge.nodeAddresses and reports one the bridge lacks.
func TestInspectNodeAddresses(t *testing.T) {
	want := []string{"10.244.1.250/24", "fd00:10:244:1::fa/64"}
	e := newEnv(t, "inspna", nil, func(_ map[string]any, plugins []map[string]any) error {
		chain.Plugin(plugins, "vrf-vxlan-bridge")["bridge"] = map[string]any{"nodeAddresses": []string{"10.244.1.250/24", "fd00:10:244:1:0::fa/64"}}
		return nil
	})
	conflist := e.writeConflist(e.conf)
	e.addPod("p1")
	b := e.inspect("--conflist", conflist).Networks[0].Bridge
	if !slices.Equal(b.NodeAddrs, want) || len(b.MissingNodeAddrs) != 0 || !slices.Contains(b.Addrs, want[0]) {
		t.Fatalf("bridge %+v, want node addresses %v, none missing", b, want)
	}
	e.in("ip", "addr", "del", want[0], "dev", naming.BridgeName("vxvrf"))
	b = e.inspect("--conflist", conflist).Networks[0].Bridge
	if !slices.Equal(b.MissingNodeAddrs, want[:1]) {
		t.Errorf("missing %v, want %v", b.MissingNodeAddrs, want[:1])
	}
	text, _, _ := testutil.RunTool(t, e.node.NetNS, "inspect", "--conflist", conflist)
	for _, w := range []string{"node addr 10.244.1.250/24, fd00:10:244:1::fa/64 (bridge.nodeAddresses)", "node addresses missing from the bridge: 10.244.1.250/24"} {
		if !strings.Contains(text, w) {
			t.Errorf("inspect text lacks %q:\n%s", w, text)
		}
	}
}
