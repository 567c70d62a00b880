package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// withRefBridge replaces lockfile-ipam, veth-attach and sysctl-firewall by
// the reference bridge plugin on the bridge vrf-vxlan-bridge made, with
// lockfile-ipam as its IPAM; mtu 0 leaves the bridge plugin's "mtu" unset.
func withRefBridge(network string, mtu int) func(map[string]any, []map[string]any) error {
	return func(conf map[string]any, plugins []map[string]any) error {
		ipam := chain.Plugin(plugins, "lockfile-ipam")["ipam"].(map[string]any)
		ipam["type"] = "lockfile-ipam"
		br := map[string]any{"type": "bridge", "bridge": naming.BridgeName(network), "isGateway": true, "ipMasq": false, "ipam": ipam}
		if mtu != 0 {
			br["mtu"] = mtu
		}
		conf["plugins"] = []any{plugins[0], plugins[1], br}
		return nil
	}
}

// TestRefBridgeAfterVXLAN: the reference bridge plugin swapped in after
// vrf-vxlan-bridge, on two nodes. With its "mtu" set to the overlay MTU
// (as the vrf-vxlan-bridge README says) the pods get 1450, a DF packet of
// exactly that size crosses the nodes and one byte more fails at the
// sender; CHECK of the whole chain passes although the bridge plugin's
// result no longer lists the uplink (vrf-vxlan-bridge used to take the
// bridge for the uplink: "bridge br-x has mtu 1450, want 1400"). Without
// "mtu" the pods get 1500, full-size packets are lost between nodes, and
// CHECK says so, naming the key to set.
func TestRefBridgeAfterVXLAN(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	// One CNI_PATH directory with our plugins and the reference bridge.
	bin := t.TempDir()
	ours, ref := testutil.PluginDir(t, testutil.Plugins...), testutil.ReferencePlugins(t, "bridge")
	for _, p := range append(append([]string{}, testutil.Plugins...), "bridge") {
		dir := ours
		if p == "bridge" {
			dir = ref
		}
		if err := os.Symlink(filepath.Join(dir, p), filepath.Join(bin, p)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := New("cl-refbr", 2, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	const mtu = 1450
	ctx := func() context.Context {
		cx, cancel := context.WithTimeout(context.Background(), Timeout)
		t.Cleanup(cancel)
		return cx
	}

	good := network(t, c, Spec{Name: "refbr", VNI: 530, Mode: Remotes, Subnet4: "10.53.0.0/16", Edit: withRefBridge("refbr", mtu)})
	a, b := addPod(t, good, 0, "a"), addPod(t, good, 1, "b")
	for _, p := range []*Pod{a, b} {
		if got := sh(t, p.NS, "cat", "/sys/class/net/eth0/mtu"); got != fmt.Sprint(mtu) {
			t.Errorf("%s: pod MTU %s, want %d", p.Name, got, mtu)
		}
		if err := good.Chains[p.Node].Check(ctx(), p.RT); err != nil {
			t.Errorf("CHECK %s: %v", p.Name, err)
		}
	}
	dst := b.IP(true).Address.IP
	if err := Ping(a.NS, dst, "-M", "do", "-s", fmt.Sprint(mtu-28)); err != nil {
		t.Errorf("%s -> %s: a DF packet of exactly the MTU %d did not cross: %v", a.Name, b.Name, mtu, err)
	}
	out, err := a.NS.In("ping", "-c1", "-W1", "-M", "do", "-s", fmt.Sprint(mtu-28+1), dst.String())
	if err == nil || !strings.Contains(strings.ToLower(string(out)+err.Error()), "message too long") {
		t.Errorf("%s -> %s: one byte over the MTU did not fail at the sender: %v %s", a.Name, b.Name, err, out)
	}

	// Control: the bridge plugin without "mtu".
	bad := network(t, c, Spec{Name: "refbr2", VNI: 531, Mode: Remotes, Subnet4: "10.54.0.0/16", Edit: withRefBridge("refbr2", 0)})
	x, y := addPod(t, bad, 0, "x"), addPod(t, bad, 1, "y")
	if got := sh(t, x.NS, "cat", "/sys/class/net/eth0/mtu"); got != "1500" {
		t.Errorf("%s: without \"mtu\" the pod MTU is %s; this control expects the bridge plugin's 1500", x.Name, got)
	}
	if err := Ping(x.NS, y.IP(true).Address.IP, "-M", "do", "-s", fmt.Sprint(1500-28)); err == nil {
		t.Errorf("%s -> %s: a 1500-byte DF packet crossed a 1450 overlay: the control does not show the loss", x.Name, y.Name)
	}
	err = bad.Chains[0].Check(ctx(), x.RT)
	if err == nil || !strings.Contains(err.Error(), "has mtu 1500, more than the bridge's 1450") || !strings.Contains(err.Error(), `"mtu": 1450`) {
		t.Errorf("CHECK %s without \"mtu\": %v, want the port MTU named with the key to set", x.Name, err)
	}

	for _, p := range []*Pod{a, b} {
		del(t, good, p)
	}
	for _, p := range []*Pod{x, y} {
		del(t, bad, p)
	}
}
