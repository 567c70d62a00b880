package integration

import (
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// upgradeVNI puts a VXLAN device into the default conflist, so the
// upgrade covers the bridge and the VXLAN device.
const upgradeVNI = 4711

func withVXLAN(conf map[string]any, plugins []map[string]any) error {
	chain.Plugin(plugins, "vrf-vxlan-bridge")["vxlan"] = map[string]any{"vni": upgradeVNI}
	return nil
}

// upgradeEnv is a node where the previous release's chain (built from git,
// testutil.PreviousRelease) attached pod p1; it checks that release left
// its shared devices without ownership marks.
func upgradeEnv(t *testing.T, lab string) (*env, *pod) {
	t.Helper()
	prev := testutil.PreviousPlugins(t)
	e := newEnv(t, lab, nil, withVXLAN)
	old := e.chainFor(e.conf, []string{prev})
	p1 := e.newPod("p1")
	e.add(old, p1)
	links := e.links()
	for _, dev := range []string{naming.BridgeName(e.chain.List.Name), naming.VXLANName(upgradeVNI)} {
		alias, ok := links[dev]
		if !ok || alias != "" {
			t.Fatalf("the previous release's ADD left %s present=%t alias %q; want it, unmarked", dev, ok, alias)
		}
	}
	return e, p1
}

// TestUpgradeAdd: on a node set up by the previous release, today's ADD
// adopts and marks the bridge and the VXLAN device; the new pod's firewall
// state joins the old one's in iptables; both pods talk; CHECK of the old
// attachment passes; DEL and GC of today's binaries leave
// nothing.
func TestUpgradeAdd(t *testing.T) {
	t.Parallel()
	e, p1 := upgradeEnv(t, "it-upa")
	p2 := e.addPod("p2")
	links := e.links()
	mark := naming.NetworkMark(e.chain.List.Name)
	for _, dev := range []string{naming.BridgeName(e.chain.List.Name), naming.VXLANName(upgradeVNI)} {
		if links[dev] != mark {
			t.Errorf("after today's ADD %s has alias %q, want %q", dev, links[dev], mark)
		}
	}
	// The network has the old release's iptables attachment: auto keeps
	// its new pods in iptables too (sysctl-firewall README, "Which backend").
	if ch := naming.AttachmentChain(e.chain.List.Name, p2.rt.ContainerID, p2.rt.IfName); !strings.Contains(e.ruleset(), ch) {
		t.Errorf("today's ADD of p2 is not in iptables (no chain %s) next to p1's", ch)
	}
	e.connectivity(p1, p2)
	for _, p := range []*pod{p1, p2} {
		if err := e.chain.Check(ctx(t), p.rt); err != nil {
			t.Errorf("CHECK %s: %v", p.rt.ContainerID, err)
		}
	}
	e.teardown(p1, p2)
}

// TestUpgradeGC: on a node set up by the previous release, today's GC with
// an empty list (which first DELs the cached old attachment) recognises
// the previous release's unmarked devices as the network's and removes
// them.
func TestUpgradeGC(t *testing.T) {
	t.Parallel()
	e, p1 := upgradeEnv(t, "it-upg")
	if err := e.chain.GC(ctx(t), []types.GCAttachment{}); err != nil {
		t.Errorf("GC with an empty list: %v", err)
	}
	e.noLeftovers(p1)
	e.networkGone()
	if _, ok := e.links()[naming.VXLANName(upgradeVNI)]; ok {
		t.Errorf("GC left the previous release's %s", naming.VXLANName(upgradeVNI))
	}
}
