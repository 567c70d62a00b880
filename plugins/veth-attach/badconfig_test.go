package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/testutil"
)

// TestBadConfigsSpecificCodes drives the binary with many broken configs
// and environments, on ADD and (where a prevResult makes sense) CHECK:
// every one is refused with a specific CNI code — never 0, never 999 —
// and the node and pod are left exactly as they were.
func TestBadConfigsSpecificCodes(t *testing.T) {
	lab, node := newNode(t, "va-badtab")
	pod := addPod(t, lab, "p1")
	mustIn(t, node.NS, "ip", "link", "add", "br-small", "mtu", "1200", "type", "bridge")
	mustIn(t, node.NS, "ip", "link", "add", "vethx", "type", "veth", "peer", "name", "vethy")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS, Env: fakeIPAMs(t, map[string]string{"killed-ipam": "kill -9 $$"})}
	data := t.TempDir()
	v6ipam := map[string]any{"type": "host-local", "dataDir": data, "ranges": [][]map[string]any{{{"subnet": "fd77::/64"}}}}
	prev := func(ips ...any) map[string]any {
		return map[string]any{"cniVersion": "1.0.0", "interfaces": []any{map[string]any{"name": testBridge}}, "ips": ips}
	}
	long := strings.Repeat("c", 260)
	cases := []struct {
		name  string
		extra map[string]any // merged into a valid 1.0.0 config
		raw   string         // or the whole stdin
		cid   string
		ifn   string
		args  string
		code  uint
		// addOnly: a check of ADD's (addresses, routes, MTU, CNI_ARGS);
		// CHECK of the attachment, which does not exist, fails otherwise.
		addOnly bool
	}{
		{name: "container ID overflows the alias", cid: long, code: types.ErrInvalidEnvironmentVariables},
		{name: "container ID with a colon", cid: "a:b", code: types.ErrInvalidEnvironmentVariables},
		{name: "network name overflows", extra: map[string]any{"name": strings.Repeat("n", 200)}, code: types.ErrInvalidNetworkConfig},
		{name: "network name with a slash", extra: map[string]any{"name": "a/b"}, code: types.ErrInvalidNetworkConfig},
		{name: "ifname too long", ifn: "eth0123456789012", code: types.ErrInvalidEnvironmentVariables},
		{name: "ifname with a slash", ifn: "a/b", code: types.ErrInvalidEnvironmentVariables},
		{name: "mtu too small", extra: map[string]any{"mtu": 10}, code: types.ErrInvalidNetworkConfig},
		{name: "mtu too big", extra: map[string]any{"mtu": 70000}, code: types.ErrInvalidNetworkConfig},
		{name: "mtu a string", extra: map[string]any{"mtu": "1500"}, code: types.ErrInvalidNetworkConfig},
		{name: "IPv6 in prevResult below 1280", extra: map[string]any{"mtu": 1000, "prevResult": prev(map[string]any{"address": "fd77::5/64"})}, code: types.ErrInvalidNetworkConfig, addOnly: true},
		{name: "IPv6 ipam on a small bridge", extra: map[string]any{"bridge": "br-small", "ipam": v6ipam}, code: types.ErrInvalidNetworkConfig, addOnly: true},
		{name: "route gw outside the pod subnets", extra: map[string]any{"prevResult": withRoutes(prev(map[string]any{"address": "10.77.0.5/24"}), map[string]any{"dst": "10.99.0.0/16", "gw": "10.55.0.1"})}, code: types.ErrInvalidNetworkConfig, addOnly: true},
		{name: "route gw of another family", extra: map[string]any{"prevResult": withRoutes(prev(map[string]any{"address": "10.77.0.5/24"}), map[string]any{"dst": "fd00::/64", "gw": "10.77.0.1"})}, code: types.ErrInvalidNetworkConfig, addOnly: true},
		{name: "ip gateway outside its subnet", extra: map[string]any{"prevResult": withRoutes(prev(map[string]any{"address": "10.77.0.5/24", "gateway": "10.99.0.1"}), map[string]any{"dst": "0.0.0.0/0"})}, code: types.ErrInvalidNetworkConfig, addOnly: true},
		{name: "multicast address", extra: map[string]any{"prevResult": prev(map[string]any{"address": "ff02::5/64"})}, code: types.ErrInvalidNetworkConfig, addOnly: true},
		{name: "unspecified address", extra: map[string]any{"prevResult": prev(map[string]any{"address": "::/0"})}, code: types.ErrInvalidNetworkConfig, addOnly: true},
		{name: "same address twice", extra: map[string]any{"prevResult": prev(map[string]any{"address": "10.77.0.5/24"}, map[string]any{"address": "10.77.0.5/24"})}, code: types.ErrInvalidNetworkConfig, addOnly: true},
		{name: "same route twice", extra: map[string]any{"prevResult": withRoutes(prev(map[string]any{"address": "10.77.0.5/24", "gateway": "10.77.0.1"}), map[string]any{"dst": "0.0.0.0/0"}, map[string]any{"dst": "0.0.0.0/0"})}, code: types.ErrInvalidNetworkConfig, addOnly: true},
		{name: "address without prefix", extra: map[string]any{"prevResult": prev(map[string]any{"address": "10.77.0.5"})}, code: types.ErrInvalidNetworkConfig},
		{name: "null ip", extra: map[string]any{"prevResult": prev(nil)}, code: types.ErrInvalidNetworkConfig},
		{name: "null interface", extra: map[string]any{"prevResult": map[string]any{"cniVersion": "1.0.0", "interfaces": []any{nil}}}, code: types.ErrInvalidNetworkConfig},
		{name: "prevResult not an object", extra: map[string]any{"prevResult": "x"}, code: types.ErrDecodingFailure},
		{name: "bridge missing", extra: map[string]any{"bridge": "br-nope"}, code: types.ErrInvalidNetworkConfig},
		{name: "bridge is a veth", extra: map[string]any{"bridge": "vethx"}, code: types.ErrInvalidNetworkConfig},
		{name: "bridge name too long", extra: map[string]any{"bridge": "br-0123456789abcdef"}, code: types.ErrInvalidNetworkConfig},
		{name: "mac not a mac", extra: map[string]any{"runtimeConfig": map[string]any{"mac": "zz"}}, code: types.ErrInvalidNetworkConfig},
		{name: "mac all zero", extra: map[string]any{"runtimeConfig": map[string]any{"mac": "00:00:00:00:00:00"}}, code: types.ErrInvalidNetworkConfig},
		{name: "mac multicast", extra: map[string]any{"args": map[string]any{"cni": map[string]any{"mac": "01:00:5e:00:00:01"}}}, code: types.ErrInvalidNetworkConfig},
		{name: "CNI_ARGS mac", args: "MAC=nope", code: types.ErrInvalidEnvironmentVariables, addOnly: true},
		{name: "ipam.type ourselves", extra: map[string]any{"ipam": map[string]any{"type": "veth-attach"}}, code: types.ErrInvalidNetworkConfig},
		{name: "ipam.type another stage", extra: map[string]any{"ipam": map[string]any{"type": "sysctl-firewall"}}, code: types.ErrInvalidNetworkConfig},
		{name: "ipam missing", extra: map[string]any{"ipam": map[string]any{"type": "no-such-ipam"}}, code: types.ErrInvalidNetworkConfig},
		{name: "ipam path", extra: map[string]any{"ipam": map[string]any{"type": "../../bin/true"}}, code: types.ErrInvalidNetworkConfig},
		{name: "ipam killed", extra: map[string]any{"ipam": map[string]any{"type": "killed-ipam"}}, code: types.ErrInternal, addOnly: true},
		{name: "cniVersion too old", extra: map[string]any{"cniVersion": "0.2.0"}, code: types.ErrIncompatibleCNIVersion},
		{name: "cniVersion unknown", extra: map[string]any{"cniVersion": "9.9.9"}, code: types.ErrIncompatibleCNIVersion},
		{name: "malformed JSON", raw: `{"cniVersion":"1.0.0","name":"x",`, code: types.ErrDecodingFailure},
		{name: "no name", raw: `{"cniVersion":"1.0.0","type":"veth-attach"}`, code: types.ErrInvalidNetworkConfig},
	}
	before := nodeState(t, node, pod)
	for _, c := range cases {
		base := map[string]any{"prevResult": bridgePrev("1.0.0")}
		for k, v := range c.extra {
			base[k] = v
		}
		stdin := testutil.Conf("1.0.0", testNet, plugin).Keys(base).Bytes()
		if c.raw != "" {
			stdin = []byte(c.raw)
		}
		for _, verb := range []string{"ADD", "CHECK"} {
			if verb == "CHECK" && (c.addOnly || c.code == types.ErrIncompatibleCNIVersion) {
				continue
			}
			in := testutil.Invocation{Command: verb, ContainerID: "cid-bad", NetNS: pod.Path, IfName: "eth0", Args: c.args, Config: stdin}
			if c.cid != "" {
				in.ContainerID = c.cid
			}
			if c.ifn != "" {
				in.IfName = c.ifn
			}
			o := st.Exec(t, in)
			var got types.Error
			if o.Err == nil || json.Unmarshal(o.Stdout, &got) != nil {
				t.Errorf("%s %s: not a CNI error: %v %s", c.name, verb, o.Err, o.Stdout)
				continue
			}
			if got.Code == 0 || got.Code == types.ErrInternal && c.code != types.ErrInternal {
				t.Errorf("%s %s: code %d %q: unspecific", c.name, verb, got.Code, got.Msg)
			}
			if got.Code != c.code && !(verb == "CHECK" && got.Code == types.ErrInvalidNetworkConfig) {
				t.Errorf("%s %s: code %d %q, want %d", c.name, verb, got.Code, got.Msg, c.code)
			}
		}
	}
	if after := nodeState(t, node, pod); after != before {
		t.Errorf("refused calls changed the node:\nbefore %s\nafter %s", before, after)
	}
	if l := leases(t, data); len(l) != 0 {
		t.Errorf("refused calls kept leases %v", l)
	}
}

func withRoutes(prev map[string]any, routes ...any) map[string]any {
	prev["routes"] = routes
	return prev
}

// TestTeardownOldVersion: DEL of a config whose cniVersion is older than
// any ADD accepts (or missing) still removes the attachment.
func TestTeardownOldVersion(t *testing.T) {
	lab, node := newNode(t, "va-oldv")
	st := stage(t, node)
	for _, ver := range []string{"0.1.0", "0.2.0", ""} {
		pod := addPod(t, lab, "p"+strings.ReplaceAll(ver, ".", ""))
		cid := "c-" + ver
		st.Add(t, cid, pod, testutil.Conf("1.0.0", testNet, plugin).With("bridge", testBridge).Bytes()).OK(t)
		old := map[string]any{"bridge": testBridge, "cniVersion": ver}
		if ver == "" {
			old["cniVersion"] = nil
		}
		st.Del(t, cid, pod, testutil.Conf(ver, testNet, plugin).Keys(old).Bytes()).OK(t)
		if linkExists(node.NS, hostVeth(cid)) || linkExists(pod, "eth0") {
			t.Errorf("DEL at cniVersion %q left the attachment", ver)
		}
	}
}
