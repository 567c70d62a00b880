package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/pkg/netsim"
	"github.com/vxvrf/cni/pkg/testutil"
)

// in runs a command in the node and returns its output; it fails the test
// when the command fails.
func in(t *testing.T, node *netsim.Node, args ...string) string {
	t.Helper()
	out, err := node.In(args[0], args[1:]...)
	if err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
	return string(out)
}

// tableRules are the `ip rule` lines (IPv4) that look up table.
func tableRules(t *testing.T, node *netsim.Node, table int) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(in(t, node, "ip", "rule", "show"), "\n") {
		if strings.Contains(l, fmt.Sprintf("lookup %d ", table)) || strings.HasSuffix(l, fmt.Sprintf("lookup %d", table)) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// TestOwnershipVRF: the VRF is marked, its egress route and rule carry
// protocol 118; GC of other networks naming the VRF, the uplink or the
// table deletes nothing; ADD refuses someone else's VRF or a veth as
// vrf.name; GC of the network deletes its devices, routes and rule and
// leaves the routes and rules other software put in its table.
func TestOwnershipVRF(t *testing.T) {
	node, pod := labNode(t, "vb-ovrf")
	testutil.RequireVRF(t, node.NS)
	vrfConf := map[string]any{"table": 310, "egress": true}
	conf := netConf("1.1.0", "gov", map[string]any{"vrf": vrfConf, "vxlan": map[string]any{"vni": 1310}})
	testutil.MustRun(t, node.NetNS, inv("ADD", "c1", pod, conf))
	vrf, br := naming.VRFName("gov"), naming.BridgeName("gov")
	if a := alias(t, node, vrf); a != "vxvrf:gov" {
		t.Errorf("vrf alias %q, want vxvrf:gov", a)
	}
	if rt := in(t, node, "ip", "route", "show", "table", "310", "proto", "118"); !strings.Contains(rt, "default via") {
		t.Errorf("egress default route without protocol 118: %q", in(t, node, "ip", "route", "show", "table", "310"))
	}
	if rs := tableRules(t, node, 310); len(rs) != 1 || !strings.Contains(rs[0], "proto 118") {
		t.Errorf("egress rules %q, want one with proto 118", rs)
	}
	// Someone else's route in the table and rule with the same selector.
	in(t, node, "ip", "route", "add", "10.9.9.0/24", "dev", "eth0", "table", "310", "proto", "static")
	in(t, node, "ip", "rule", "add", "fwmark", "0x1360000/0xffff0000", "lookup", "310", "pref", "900", "proto", "static")

	state := func() string {
		return in(t, node, "ip", "-o", "link", "show") + in(t, node, "ip", "route", "show", "table", "310") + strings.Join(tableRules(t, node, 310), "\n")
	}
	before := state()
	for _, h := range []struct {
		network string
		extra   map[string]any
	}{
		{"hostile", map[string]any{"vrf": map[string]any{"name": vrf, "table": 310}, "bridge": map[string]any{"name": "eth0"}}},
		{"hostile", map[string]any{"vrf": map[string]any{"name": "eth0", "table": 310}, "bridge": map[string]any{"name": br}, "vxlan": map[string]any{"vni": 1310}}},
	} {
		gcEmpty(t, node, h.network, h.extra)
		if after := state(); after != before {
			t.Errorf("GC of network %s with %v changed the node:\nbefore:\n%s\nafter:\n%s", h.network, h.extra, before, after)
		}
	}

	in(t, node, "ip", "link", "add", "mgmt", "type", "vrf", "table", "320")
	for _, tc := range []struct {
		vrf  map[string]any
		want string
	}{
		{map[string]any{"name": "mgmt", "table": 320}, `vrf.name "mgmt" names an existing device not created by vxvrf`},
		{map[string]any{"name": "eth0", "table": 321}, "type veth"},
		{map[string]any{"name": vrf, "table": 310}, `belongs to vxvrf network "gov"`},
	} {
		e := testutil.Run(t, node.NetNS, inv("ADD", "c1", pod, netConf("1.1.0", "fv", map[string]any{"vrf": tc.vrf}))).CNIError(t)
		if e.Code != 7 || !strings.Contains(e.Msg, tc.want) {
			t.Errorf("vrf %v: %d %q, want 7 saying %q", tc.vrf, e.Code, e.Msg, tc.want)
		}
		if link(t, node, naming.BridgeName("fv")) != nil {
			t.Fatalf("vrf %v: the refused ADD created a bridge", tc.vrf)
		}
	}
	if a := alias(t, node, "mgmt"); a != "" {
		t.Errorf("refused ADD marked mgmt: %q", a)
	}

	gcEmpty(t, node, "gov", map[string]any{"vrf": vrfConf, "vxlan": map[string]any{"vni": 1310}})
	for _, dev := range []string{vrf, br, "vxlan-1310"} {
		if link(t, node, dev) != nil {
			t.Errorf("GC left %s", dev)
		}
	}
	if rt := strings.TrimSpace(in(t, node, "ip", "route", "show", "table", "310")); rt != "10.9.9.0/24 dev eth0 proto static scope link" {
		t.Errorf("table 310 after GC: %q, want only the foreign route", rt)
	}
	if rs := tableRules(t, node, 310); len(rs) != 1 || !strings.Contains(rs[0], "proto static") {
		t.Errorf("rules after GC: %q, want only the foreign one", rs)
	}
	if link(t, node, "mgmt") == nil {
		t.Error("GC removed mgmt")
	}
}

// TestUpgradeVRF: the previous release's VRF network with egress (VRF,
// bridge, VXLAN, default route copied into the table, reply rule without
// protocol) is adopted by today's ADD (devices marked, the route and the
// rule replaced by marked ones, exactly one rule), passes CHECK and is
// removed by today's GC; GC alone removes it too, copied route and rule
// included.
func TestUpgradeVRF(t *testing.T) {
	node, pod := labNode(t, "vb-uvrf")
	testutil.RequireVRF(t, node.NS)
	for i, addNew := range []bool{true, false} {
		t.Run(fmt.Sprintf("add=%t", addNew), func(t *testing.T) {
			network, table, vni := fmt.Sprintf("upv%d", i), 330+i, 1330+i
			extra := map[string]any{"vrf": map[string]any{"table": table, "egress": true}, "vxlan": map[string]any{"vni": vni}}
			conf := netConf("1.1.0", network, extra)
			devs := []string{naming.VRFName(network), naming.BridgeName(network), naming.VXLANName(uint32(vni))}
			testutil.MustRun(t, node.NetNS, prevInv(t, "ADD", "c1", pod, conf))
			unmarked(t, node, devs...)
			if rs := tableRules(t, node, table); len(rs) != 1 || strings.Contains(rs[0], "proto 118") {
				t.Fatalf("the previous release's rules: %q", rs)
			}
			if addNew {
				testutil.MustRun(t, node.NetNS, inv("ADD", "c2", pod, conf))
				for _, dev := range devs {
					if a := alias(t, node, dev); a != naming.NetworkMark(network) {
						t.Errorf("%s alias %q after today's ADD", dev, a)
					}
				}
				if rs := tableRules(t, node, table); len(rs) != 1 || !strings.Contains(rs[0], "proto 118") {
					t.Errorf("rules after today's ADD: %q, want exactly one, proto 118", rs)
				}
				if rt := in(t, node, "ip", "route", "show", "table", fmt.Sprint(table)); !strings.Contains(rt, "proto 118") {
					t.Errorf("table %d after today's ADD: %q", table, rt)
				}
				testutil.MustRun(t, node.NetNS, inv("CHECK", "c1", pod, conf))
			}
			gcEmpty(t, node, network, extra)
			for _, dev := range devs {
				if link(t, node, dev) != nil {
					t.Errorf("GC left %s", dev)
				}
			}
			if rs := tableRules(t, node, table); len(rs) != 0 {
				t.Errorf("GC left rules %q", rs)
			}
			if rt := strings.TrimSpace(in(t, node, "ip", "route", "show", "table", fmt.Sprint(table))); rt != "" {
				t.Errorf("GC left in table %d: %q", table, rt)
			}
		})
	}
}
