package main

// Hostile and broken input (issue 7): the real binary, driven like a
// runtime, with configs that must be refused or torn down without harm.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// nodeState is what a refused or torn-down call must leave as it was: the
// node's and the pod's links (name, type, mtu, mac, master, admin state)
// and addresses (without flags such as tentative, which change by
// themselves).
func nodeState(t *testing.T, node *netsim.Node, pod *netsim.NS) string {
	t.Helper()
	s := nsState(t, node.NS)
	if pod != nil {
		s += "pod:\n" + nsState(t, pod)
	}
	return s
}

func nsState(t *testing.T, n *netsim.NS) string {
	t.Helper()
	var links []struct {
		IfName  string   `json:"ifname"`
		MTU     int      `json:"mtu"`
		Address string   `json:"address"`
		Master  string   `json:"master"`
		Flags   []string `json:"flags"`
		Info    struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(mustIn(t, n, "ip", "-j", "-d", "addr")), &links); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, l := range links {
		fmt.Fprintf(&b, "%s %s mtu %d %s master %q up %v:", l.IfName, l.Info.Kind, l.MTU, l.Address, l.Master, slices.Contains(l.Flags, "UP"))
		for _, a := range l.AddrInfo {
			fmt.Fprintf(&b, " %s/%d", a.Local, a.PrefixLen)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// fakeIPAMs writes scripts into a fresh directory and returns the env with
// that directory first in CNI_PATH.
func fakeIPAMs(t *testing.T, scripts map[string]string) []string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := env(t)
	return []string{"CNI_PATH=" + dir + string(os.PathListSeparator) + strings.TrimPrefix(e[0], "CNI_PATH=")}
}

var allVerbs = []string{"ADD", "CHECK", "STATUS", "GC", "DEL"}

// verbConf is a config (1.1.0, so every verb runs) with ipam for verb.
func verbConf(verb string, ipam map[string]any) []byte {
	extra := map[string]any{"ipam": ipam, "prevResult": bridgePrev("1.1.0")}
	if verb == "GC" {
		extra["cni.dev/valid-attachments"] = []any{}
	}
	return testutil.Conf("1.1.0", testNet, plugin).Keys(extra).Bytes()
}

// TestSelfDelegation: ipam.type naming one of our non-IPAM stages is
// refused with 7 on ADD, CHECK, STATUS and GC, DEL succeeds, and nothing
// runs recursively or changes on the node. An IPAM that runs veth-attach
// again is stopped by the delegation depth.
func TestSelfDelegation(t *testing.T) {
	lab, node := newNode(t, "va-self")
	pod := addPod(t, lab, "p1")
	self := filepath.Join(testutil.PluginDir(t, "veth-attach"), "veth-attach")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS, Env: fakeIPAMs(t, map[string]string{"loop-ipam": "exec " + self})}
	before := nodeState(t, node, pod)
	for _, stage := range append(append([]string{}, nonIPAMStages...), "loop-ipam") {
		for _, verb := range allVerbs {
			start := time.Now()
			o := st.Run(t, verb, "cid-h", pod, verbConf(verb, map[string]any{"type": stage}))
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("%s %s took %s", stage, verb, d)
			}
			if verb == "DEL" {
				if o.Err != nil {
					t.Errorf("%s DEL: %v %s", stage, o.Err, o.Stdout)
				}
				continue
			}
			cerr := o.CNIError(t)
			if cerr.Code != types.ErrInvalidNetworkConfig {
				t.Errorf("ipam.type %s %s: code %d (%s), want 7", stage, verb, cerr.Code, cerr.Msg)
			}
			if stage == "loop-ipam" && !strings.Contains(cerr.Msg, depthEnv) {
				t.Errorf("loop-ipam %s: message does not name the depth: %s", verb, cerr.Msg)
			}
		}
	}
	if after := nodeState(t, node, pod); after != before {
		t.Errorf("refused calls changed the node:\nbefore %s\nafter %s", before, after)
	}
}

// TestDeadIPAM: an IPAM that dies without output (SIGKILL), one that exits
// 1 with a code-less message and one missing from CNI_PATH give a real code
// on every verb, never 0: 999 naming the plugin and its exit status, 7
// (STATUS 50) for the missing binary. ADD leaves nothing behind.
func TestDeadIPAM(t *testing.T) {
	lab, node := newNode(t, "va-dead")
	pod := addPod(t, lab, "p1")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS, Env: fakeIPAMs(t, map[string]string{
		"killed-ipam":   "kill -9 $$",
		"codeless-ipam": `echo '{"msg":"no code"}'; exit 1`,
	})}
	before := nodeState(t, node, pod)
	for _, c := range []struct {
		ipam, want string
		code       uint
	}{
		{"killed-ipam", "signal: killed", types.ErrInternal},
		{"codeless-ipam", "exit status 1", types.ErrInternal},
		{"no-such-ipam", "no plugin in CNI_PATH", types.ErrInvalidNetworkConfig},
	} {
		for _, verb := range allVerbs {
			cerr := st.Run(t, verb, "cid-h", pod, verbConf(verb, map[string]any{"type": c.ipam})).CNIError(t)
			code := c.code
			if verb == "STATUS" && c.ipam == "no-such-ipam" {
				code = 50
			}
			if cerr.Code != code || !strings.Contains(cerr.Msg, c.ipam) || !strings.Contains(cerr.Msg, c.want) || !strings.Contains(cerr.Msg, verb) {
				t.Errorf("%s %s: code %d %q, want %d naming the plugin, the verb and %q", c.ipam, verb, cerr.Code, cerr.Msg, code, c.want)
			}
		}
	}
	if after := nodeState(t, node, pod); after != before {
		t.Errorf("failed calls changed the node:\nbefore %s\nafter %s", before, after)
	}
}

// TestTeardownIgnoresConfig: DEL and GC succeed and remove the attachment
// when the rest of the config became invalid after ADD (mtu, mac, bridge,
// prevResult, an ipam block that does not decode).
func TestTeardownIgnoresConfig(t *testing.T) {
	lab, node := newNode(t, "va-td")
	st := stage(t, node)
	good := testutil.Conf("1.1.0", testNet, plugin).With("bridge", testBridge).Bytes()
	broken := []map[string]any{
		{"mtu": 5},
		{"runtimeConfig": map[string]any{"mac": "not-a-mac"}},
		{"bridge": "a-bridge-name-longer-than-15"},
		{"prevResult": map[string]any{"cniVersion": "1.1.0", "interfaces": []any{nil}, "ips": []any{nil}}},
		{"ipam": "not an object"},
		{"hairpin": "yes"},
	}
	for i, extra := range broken {
		for _, verb := range []string{"DEL", "GC"} {
			cid := fmt.Sprintf("c%d%s", i, verb)
			pod := addPod(t, lab, cid)
			st.Add(t, cid, pod, good).OK(t)
			extra["name"] = testNet
			if verb == "GC" {
				extra["cni.dev/valid-attachments"] = []any{}
			}
			in := st.Call(verb, cid, pod, testutil.Conf("1.1.0", testNet, plugin).Keys(extra).Bytes())
			if verb == "GC" {
				in.ContainerID, in.NetNS, in.IfName = "", "", ""
			}
			st.Exec(t, in).OK(t)
			if linkExists(node.NS, hostVeth(cid)) || linkExists(pod, "eth0") {
				t.Errorf("%s with %v left the attachment", verb, extra)
			}
			delete(extra, "cni.dev/valid-attachments")
		}
	}
}

// TestIPv6BelowMinMTU: an IPv6 address on an MTU below 1280 (prevResult or
// delegated IPAM; the mtu key or the bridge's MTU) is refused with 7 before
// any link exists, and the IPAM lease is released.
func TestIPv6BelowMinMTU(t *testing.T) {
	lab, node := newNode(t, "va-mtu6")
	pod := addPod(t, lab, "p1")
	st := stage(t, node)
	data := t.TempDir()
	v6prev := map[string]any{
		"cniVersion": "1.0.0",
		"interfaces": []map[string]any{{"name": testBridge}},
		"ips":        []map[string]any{{"address": "fd77::9/64"}},
	}
	v6ipam := map[string]any{"type": "host-local", "dataDir": data, "ranges": [][]map[string]any{{{"subnet": "fd77::/64"}}}}
	before := nodeState(t, node, pod)
	for name, conf := range map[string][]byte{
		"prevResult": testutil.Conf("1.0.0", testNet, plugin).Keys(map[string]any{"mtu": 1200, "prevResult": v6prev}).Bytes(),
		"ipam":       testutil.Conf("1.0.0", testNet, plugin).Keys(map[string]any{"mtu": 1000, "bridge": testBridge, "ipam": v6ipam}).Bytes(),
		"bridge mtu": testutil.Conf("1.0.0", testNet, plugin).Keys(map[string]any{"bridge": "br-small", "ipam": v6ipam}).Bytes(),
	} {
		if name == "bridge mtu" {
			mustIn(t, node.NS, "ip", "link", "add", "br-small", "mtu", "1200", "type", "bridge")
			before = nodeState(t, node, pod)
		}
		cerr := st.Add(t, "c1", pod, conf).CNIError(t)
		if cerr.Code != types.ErrInvalidNetworkConfig || !strings.Contains(cerr.Msg, "1280") {
			t.Errorf("%s: code %d %q, want 7 naming 1280", name, cerr.Code, cerr.Msg)
		}
		if after := nodeState(t, node, pod); after != before {
			t.Errorf("%s: refused ADD changed the node:\nbefore %s\nafter %s", name, before, after)
		}
		if l := leases(t, data); len(l) != 0 {
			t.Errorf("%s: refused ADD kept leases %v", name, l)
		}
	}
}

// TestBadIPAMResult: an IPAM that succeeds with a result veth-attach
// cannot use (null entries, an address without prefix, a result that does
// not decode, at 1.0.0 and 0.4.0) is refused (6/7) before any link exists,
// and the IPAM gets its DEL, so it keeps no address.
func TestBadIPAMResult(t *testing.T) {
	lab, node := newNode(t, "va-badres")
	pod := addPod(t, lab, "p1")
	dels := filepath.Join(t.TempDir(), "dels")
	script := func(result string) string {
		return `if [ "$CNI_COMMAND" = DEL ]; then echo del >> ` + dels + `; exit 0; fi
cat > /dev/null
echo '` + result + `'`
	}
	results := map[string]struct {
		out  string
		code uint
	}{
		"null-ip":      {`{"cniVersion":"1.0.0","ips":[null]}`, types.ErrInvalidNetworkConfig},
		"null-route":   {`{"cniVersion":"1.0.0","ips":[{"address":"10.77.0.5/24"}],"routes":[null]}`, types.ErrInvalidNetworkConfig},
		"no-prefix":    {`{"cniVersion":"1.0.0","ips":[{"address":"10.77.0.5"}]}`, types.ErrDecodingFailure},
		"ips-string":   {`{"cniVersion":"1.0.0","ips":"x"}`, types.ErrDecodingFailure},
		"not-json":     {`garbage`, types.ErrDecodingFailure},
		"null-ip-040":  {`{"cniVersion":"0.4.0","ips":[null]}`, types.ErrDecodingFailure},
		"null-dns-040": {`{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.77.0.5/24"}],"routes":[null]}`, types.ErrInvalidNetworkConfig},
	}
	scripts := map[string]string{}
	for name, r := range results {
		scripts["res-"+name] = script(r.out)
	}
	st := testutil.Stage{Plugin: plugin, In: node.NetNS, Env: fakeIPAMs(t, scripts)}
	before := nodeState(t, node, pod)
	for name, r := range results {
		os.Remove(dels)
		conf := testutil.Conf("1.0.0", testNet, plugin).Keys(map[string]any{"bridge": testBridge, "ipam": map[string]any{"type": "res-" + name}}).Bytes()
		o := st.Add(t, "cid-r", pod, conf)
		var got types.Error
		if o.Err == nil || json.Unmarshal(o.Stdout, &got) != nil {
			t.Errorf("%s: not a CNI error: %v %s %s", name, o.Err, o.Stdout, o.Stderr)
			continue
		}
		if got.Code != r.code {
			t.Errorf("%s: code %d %q, want %d", name, got.Code, got.Msg, r.code)
		}
		if b, _ := os.ReadFile(dels); string(b) != "del\n" {
			t.Errorf("%s: IPAM DEL ran %q times, want once", name, b)
		}
	}
	if after := nodeState(t, node, pod); after != before {
		t.Errorf("refused ADDs changed the node:\nbefore %s\nafter %s", before, after)
	}
}
