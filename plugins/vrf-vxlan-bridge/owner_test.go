package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// gcEmpty runs GC with an empty valid-attachments list and the given
// plugin keys; it must succeed.
func gcEmpty(t *testing.T, node *netsim.Node, network string, extra map[string]any) {
	t.Helper()
	e := map[string]any{"cni.dev/valid-attachments": []any{}}
	for k, v := range extra {
		e[k] = v
	}
	testutil.Stage{Plugin: plugin, In: node.NetNS}.GC(t, testutil.Conf("1.1.0", network, plugin).Keys(e).Bytes()).OK(t)
}

// alias is the alias of a link of the node ("" when it has none); the
// test fails when the link does not exist.
func alias(t *testing.T, node *netsim.Node, name string) string {
	t.Helper()
	return mustLink(t, node, name).Attrs().Alias
}

// TestMarks: ADD marks the bridge and the VXLAN device with the network's
// alias; a second ADD keeps them.
func TestMarks(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-mark")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	conf := testutil.Conf("1.1.0", "mk", plugin).With("vxlan", map[string]any{"vni": 520}).Bytes()
	for _, cid := range []string{"c1", "c2"} {
		st.Add(t, cid, pod, conf).OK(t)
		for _, dev := range []string{naming.BridgeName("mk"), "vxlan-520"} {
			if a := alias(t, node, dev); a != "vxvrf:mk" {
				t.Errorf("after ADD %s: %s has alias %q, want vxvrf:mk", cid, dev, a)
			}
		}
	}
}

// TestGCOwnsOnly: GC with an empty list deletes only devices that carry
// the network's mark: not the node's uplink given as bridge.name, not a
// pod's host veth given as vrf.name or bridge.name, not another network's
// bridge, not a bridge or VXLAN device made by someone else under the
// configured names.
func TestGCOwnsOnly(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-gco")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	// A pod's host veth as veth-attach leaves it (tagged for network "p").
	if _, err := node.In("ip", "link", "add", "vxpodveth", "type", "veth", "peer", "name", "vxpodpeer"); err != nil {
		t.Fatal(err)
	}
	if _, err := node.In("ip", "link", "set", "vxpodveth", "alias", "vxvrf:p:c1:eth0"); err != nil {
		t.Fatal(err)
	}
	// Another network's devices.
	st.Add(t, "c1", pod, testutil.Conf("1.1.0", "other", plugin).With("vxlan", map[string]any{"vni": 531}).Bytes()).OK(t)
	// Someone else's bridge with a port, and someone else's VXLAN device
	// under the name of VNI 532.
	for _, c := range [][]string{
		{"link", "add", "opsbr", "type", "bridge"},
		{"link", "set", "vxpodpeer", "master", "opsbr"},
		{"link", "add", "vxlan-532", "type", "vxlan", "id", "532", "dstport", "4789", "dev", "eth0"},
	} {
		if _, err := node.In("ip", c...); err != nil {
			t.Fatal(err)
		}
	}
	for _, extra := range []map[string]any{
		{"bridge": map[string]any{"name": "eth0"}},
		{"bridge": map[string]any{"name": "vxpodveth"}, "vrf": map[string]any{"name": "vxpodpeer", "table": 100}},
		{"vrf": map[string]any{"name": "vxpodveth", "table": 100}},
		{"bridge": map[string]any{"name": naming.BridgeName("other")}, "vxlan": map[string]any{"vni": 531}},
		{"bridge": map[string]any{"name": "opsbr"}, "vxlan": map[string]any{"vni": 532}},
	} {
		gcEmpty(t, node, "gco", extra)
		for _, dev := range []string{"eth0", "vxpodveth", "vxpodpeer", naming.BridgeName("other"), "vxlan-531", "opsbr", "vxlan-532"} {
			if link(t, node, dev) == nil {
				t.Fatalf("GC of network gco with %v deleted %s, which is not gco's", extra, dev)
			}
		}
	}
	if a := alias(t, node, "opsbr"); a != "" {
		t.Errorf("GC marked someone else's bridge: alias %q", a)
	}
	// GC of the other network takes its own devices, and only those.
	gcEmpty(t, node, "other", map[string]any{"vxlan": map[string]any{"vni": 531}})
	if link(t, node, naming.BridgeName("other")) != nil || link(t, node, "vxlan-531") != nil {
		t.Error("GC of network other left its devices")
	}
	for _, dev := range []string{"eth0", "vxpodveth", "opsbr", "vxlan-532"} {
		if link(t, node, dev) == nil {
			t.Errorf("GC of network other deleted %s", dev)
		}
	}
}

// TestGCConfigChanged: GC finds the network's devices by their mark, so it
// removes them when the config has changed since ADD or no longer
// validates (another VNI, an invalid VNI, unparsable addresses, another
// bridge name, another cniVersion).
func TestGCConfigChanged(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-gcc")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	for i, extra := range []map[string]any{
		{"vxlan": map[string]any{"vni": 541}},
		{"vxlan": map[string]any{"vni": "not a number", "remotes": []any{"300.1.2.3", nil}}},
		{"vxlan": map[string]any{"vni": 99999999, "local": "nope", "group": 7}, "bridge": map[string]any{"name": "elsewhere", "mtu": -3, "mac": "zz"}},
		{"vxlan": "a string", "bridge": "a string", "vrf": map[string]any{"table": "x"}},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			conf := testutil.Conf("1.1.0", "gcc", plugin).With("vxlan", map[string]any{"vni": 540}).Bytes()
			st.Add(t, "c1", pod, conf).OK(t)
			gcEmpty(t, node, "gcc", extra)
			if link(t, node, naming.BridgeName("gcc")) != nil || link(t, node, "vxlan-540") != nil {
				t.Errorf("GC with config %v left the network's devices", extra)
			}
			if link(t, node, "eth0") == nil {
				t.Fatal("GC removed the uplink")
			}
		})
	}
}

// TestAddRefusesForeign: ADD refuses (code 7, naming the key, the device
// and what it is) a configured name held by a device this project did not
// make for the network, and changes nothing.
func TestAddRefusesForeign(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-foe")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	st.Add(t, "c1", pod, testutil.Conf("1.1.0", "other", plugin).Bytes()).OK(t)
	for _, c := range [][]string{
		{"link", "add", "opsbr", "type", "bridge"},
		{"link", "add", "vxlan-552", "type", "vxlan", "id", "552", "dstport", "4789", "dev", "eth0"},
	} {
		if _, err := node.In("ip", c...); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		extra map[string]any
		want  []string
	}{
		{map[string]any{"bridge": map[string]any{"name": "eth0"}, "vxlan": map[string]any{"vni": 551}},
			[]string{`bridge.name "eth0" names an existing device not created by vxvrf`, "type veth", "no vxvrf alias"}},
		{map[string]any{"bridge": map[string]any{"name": "opsbr"}, "vxlan": map[string]any{"vni": 551}},
			[]string{`bridge.name "opsbr"`, "type bridge", "no vxvrf alias"}},
		{map[string]any{"bridge": map[string]any{"name": naming.BridgeName("other")}, "vxlan": map[string]any{"vni": 551}},
			[]string{naming.BridgeName("other"), `belongs to vxvrf network "other"`}},
		{map[string]any{"vxlan": map[string]any{"vni": 552}},
			[]string{`vxlan.vni 552`, `"vxlan-552"`, "type vxlan"}},
	} {
		e := st.Add(t, "c2", pod, testutil.Conf("1.1.0", "foe", plugin).Keys(tc.extra).Bytes()).CNIError(t)
		if e.Code != 7 {
			t.Errorf("%v: code %d (%s), want 7", tc.extra, e.Code, e.Msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(e.Msg, w) {
				t.Errorf("%v: error %q does not say %q", tc.extra, e.Msg, w)
			}
		}
		if link(t, node, naming.BridgeName("foe")) != nil || link(t, node, "vxlan-551") != nil {
			t.Fatalf("%v: refused ADD created devices", tc.extra)
		}
		if a := alias(t, node, "opsbr"); a != "" {
			t.Errorf("refused ADD marked opsbr: %q", a)
		}
	}
	// CHECK reports a foreign device under the configured name too.
	if _, err := node.In("ip", "link", "add", naming.BridgeName("chk"), "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	if _, err := node.In("ip", "link", "set", naming.BridgeName("chk"), "up"); err != nil {
		t.Fatal(err)
	}
	if _, err := node.In("ip", "link", "set", naming.BridgeName("chk"), "alias", "ops"); err != nil {
		t.Fatal(err)
	}
	if e := st.Check(t, "c1", pod, testutil.Conf("1.1.0", "chk", plugin).Bytes()).CNIError(t); !strings.Contains(e.Msg, "not created by vxvrf") {
		t.Errorf("CHECK on a foreign bridge: %d %q", e.Code, e.Msg)
	}
}

// TestDelNeverBlocked: DEL succeeds, with empty output, whatever the
// config: an unsupported old cniVersion, invalid or changed keys, no
// name, no JSON at all, no CNI_CONTAINERID or CNI_IFNAME. (It changes
// nothing; GC removes the devices.) Like every stage's DEL it refuses the
// node's own netns as CNI_NETNS (8).
func TestDelNeverBlocked(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-del")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	st.Add(t, "c1", pod, testutil.Conf("1.1.0", "dl", plugin).With("vxlan", map[string]any{"vni": 560}).Bytes()).OK(t)
	for _, stdin := range []string{
		`{"cniVersion":"0.1.0","name":"dl","type":"vrf-vxlan-bridge","vxlan":{"vni":560}}`,
		`{"cniVersion":"0.2.0","name":"dl","type":"vrf-vxlan-bridge"}`,
		`{"cniVersion":"1.1.0","name":"dl","type":"vrf-vxlan-bridge","vxlan":{"vni":561}}`,
		`{"cniVersion":"1.1.0","name":"dl","type":"vrf-vxlan-bridge","vxlan":{"vni":0,"local":"x"},"bridge":{"mtu":1}}`,
		`{"cniVersion":"1.1.0","name":"dl","type":"vrf-vxlan-bridge","prevResult":{"ips":[null],"interfaces":[null]}}`,
		`{"cniVersion":"9.9.9","type":"vrf-vxlan-bridge"}`,
		`not json`,
	} {
		o := st.Del(t, "c1", nil, []byte(stdin))
		if o.Err != nil || len(o.Stdout) != 0 {
			t.Errorf("DEL with %s: %v, stdout %q", stdin, o.Err, o.Stdout)
		}
	}
	if o := st.Exec(t, testutil.Invocation{Command: "DEL", Config: []byte(`not json`)}); o.Err != nil || len(o.Stdout) != 0 {
		t.Errorf("DEL without CNI_CONTAINERID and CNI_IFNAME: %v, stdout %q", o.Err, o.Stdout)
	}
	if e := st.Del(t, "c1", node.NS, []byte(`not json`)).CNIError(t); e.Code != types.ErrInvalidNetNS {
		t.Errorf("DEL with the node's own netns: code %d %q, want 8", e.Code, e.Msg)
	}
	if link(t, node, naming.BridgeName("dl")) == nil || link(t, node, "vxlan-560") == nil {
		t.Error("DEL removed a shared device")
	}
}

// TestHostilePrevResult: a prevResult with null or inconsistent entries is
// refused (6 when it does not decode, 7 when it is malformed) before any
// device is created, and never passed on.
func TestHostilePrevResult(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-hpr")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	eth0 := map[string]any{"name": "eth0"}
	addr := map[string]any{"address": "10.1.0.2/24", "interface": 0}
	for _, tc := range []struct {
		prev  any
		codes []uint
	}{
		{map[string]any{"cniVersion": "1.1.0", "interfaces": []any{eth0}, "ips": []any{nil}}, []uint{7}},
		{map[string]any{"cniVersion": "1.1.0", "interfaces": []any{nil}}, []uint{7}},
		{map[string]any{"cniVersion": "1.1.0", "interfaces": []any{eth0}, "routes": []any{nil}}, []uint{7}},
		{map[string]any{"cniVersion": "1.1.0", "interfaces": []any{eth0}, "ips": []any{map[string]any{"address": "10.1.0.2/24", "interface": 5}}}, []uint{7}},
		{map[string]any{"cniVersion": "1.1.0", "interfaces": []any{eth0}, "ips": []any{map[string]any{"interface": 0}}}, []uint{6, 7}},
		{map[string]any{"cniVersion": "1.1.0", "interfaces": []any{eth0}, "ips": []any{addr}, "routes": []any{map[string]any{"gw": "10.1.0.1"}}}, []uint{6, 7}},
		{map[string]any{"cniVersion": "1.1.0", "interfaces": "eth0"}, []uint{6, 7}},
		{"a string", []uint{6}},
		{[]any{1, 2}, []uint{6}},
	} {
		conf := testutil.Conf("1.1.0", "hpr", plugin).Keys(map[string]any{"vxlan": map[string]any{"vni": 570}, "prevResult": tc.prev}).Bytes()
		o := st.Add(t, "c1", pod, conf)
		e := o.CNIError(t)
		ok := false
		for _, c := range tc.codes {
			ok = ok || e.Code == c
		}
		if !ok {
			t.Errorf("prevResult %v: code %d (%s), want one of %v", tc.prev, e.Code, e.Msg, tc.codes)
		}
		if link(t, node, naming.BridgeName("hpr")) != nil || link(t, node, "vxlan-570") != nil {
			t.Fatalf("prevResult %v: devices created by a refused ADD", tc.prev)
		}
		if len(o.Stderr) > 0 && strings.Contains(string(o.Stderr), "panic") {
			t.Errorf("prevResult %v: stderr mentions a panic: %s", tc.prev, o.Stderr)
		}
	}
}

// TestLimitsBeforeChange: a container ID or network name too long for the
// names derived from them is refused (4 / 7) before any device exists.
func TestLimitsBeforeChange(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-lim")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	long := strings.Repeat("c", 250)
	e := st.Add(t, long, pod, testutil.Conf("1.1.0", "lim", plugin).With("vxlan", map[string]any{"vni": 580}).Bytes()).CNIError(t)
	if e.Code != 4 {
		t.Errorf("container ID of %d bytes: code %d (%s), want 4", len(long), e.Code, e.Msg)
	}
	if link(t, node, naming.BridgeName("lim")) != nil || link(t, node, "vxlan-580") != nil {
		t.Error("devices created before the container ID was refused")
	}
	net := strings.Repeat("n", naming.MaxNetworkNameLen+1)
	e = st.Add(t, "c1", pod, testutil.Conf("1.1.0", net, plugin).With("vxlan", map[string]any{"vni": 581}).Bytes()).CNIError(t)
	if e.Code != 7 {
		t.Errorf("network name of %d bytes: code %d (%s), want 7", len(net), e.Code, e.Msg)
	}
	if link(t, node, naming.BridgeName(net)) != nil || link(t, node, "vxlan-581") != nil {
		t.Error("devices created before the network name was refused")
	}
}

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
	node, pod := testutil.NodeWithPod(t, "vb-ovrf")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	testutil.RequireVRF(t, node.NS)
	vrfConf := map[string]any{"table": 310, "egress": true}
	conf := testutil.Conf("1.1.0", "gov", plugin).Keys(map[string]any{"vrf": vrfConf, "vxlan": map[string]any{"vni": 1310}}).Bytes()
	st.Add(t, "c1", pod, conf).OK(t)
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
		e := st.Add(t, "c1", pod, testutil.Conf("1.1.0", "fv", plugin).With("vrf", tc.vrf).Bytes()).CNIError(t)
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
	node, pod := testutil.NodeWithPod(t, "vb-uvrf")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	testutil.RequireVRF(t, node.NS)
	for i, addNew := range []bool{true, false} {
		t.Run(fmt.Sprintf("add=%t", addNew), func(t *testing.T) {
			network, table, vni := fmt.Sprintf("upv%d", i), 330+i, 1330+i
			extra := map[string]any{"vrf": map[string]any{"table": table, "egress": true}, "vxlan": map[string]any{"vni": vni}}
			conf := testutil.Conf("1.1.0", network, plugin).Keys(extra).Bytes()
			devs := []string{naming.VRFName(network), naming.BridgeName(network), naming.VXLANName(uint32(vni))}
			testutil.Stage{Plugin: plugin, In: node.NetNS, Dir: testutil.PreviousPlugins(t)}.Add(t, "c1", pod, conf).OK(t)
			unmarked(t, node, devs...)
			if rs := tableRules(t, node, table); len(rs) != 1 || strings.Contains(rs[0], "proto 118") {
				t.Fatalf("the previous release's rules: %q", rs)
			}
			if addNew {
				st.Add(t, "c2", pod, conf).OK(t)
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
				st.Check(t, "c1", pod, conf).OK(t)
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

// TestConcurrentAddsMark: concurrent ADDs of a network with a bridge name
// of its own choosing all succeed: a device another ADD has just created
// and not yet marked is not taken for someone else's.
func TestConcurrentAddsMark(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-cmk")
	testutil.PluginDir(t, plugin)
	for round := 0; round < 3; round++ {
		network := fmt.Sprintf("cmk%d", round)
		extra := map[string]any{"bridge": map[string]any{"name": fmt.Sprintf("tenant%d", round)}, "vxlan": map[string]any{"vni": 620 + round}}
		concurrentAdds(t, node, pod, testutil.Conf("1.1.0", network, plugin).Keys(extra).Bytes(), 12)
		for _, dev := range []string{fmt.Sprintf("tenant%d", round), fmt.Sprintf("vxlan-%d", 620+round)} {
			if a := alias(t, node, dev); a != naming.NetworkMark(network) {
				t.Errorf("%s has alias %q", dev, a)
			}
		}
	}
}
