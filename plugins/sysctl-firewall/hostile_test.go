package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/testutil"
)

// withPrev is conf (generic JSON at version v) with prevResult replaced by raw.
func withRaw(t testing.TB, conf []byte, key string, raw string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		t.Fatal(err)
	}
	if raw == "" {
		delete(m, key)
	} else {
		var v any
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		m[key] = v
	}
	return mustJSON(t, m)
}

// TestTeardownIgnoresConfig: DEL and GC need only the network name. A
// config changed since ADD (a forbidden sysctl key, values of the wrong
// type, an unsupported cniVersion, a bad uplink or zone) still removes
// everything ADD made, so libcni goes on to the earlier stages' DEL.
func TestTeardownIgnoresConfig(t *testing.T) {
	forBackends(t, testTeardownIgnoresConfig)
}

func testTeardownIgnoresConfig(t *testing.T, be string) {
	testutil.RequireRoot(t)
	n := newNode(t, labFor("sf-td", be))
	p := n.addPod(t, "p", "sfh-td", "10.66.0.70/24")
	good := config(t, "1.1.0", with(be, map[string]any{"masquerade": true, "antiSpoofing": true}), p.prevResult(t))
	bad := map[string][]byte{
		"forbidden sysctl key":  withRaw(t, good, "sysctls", `{"kernel.pid_max":"4096"}`),
		"node-wide hostSysctl":  withRaw(t, good, "hostSysctls", `{"net.ipv4.ip_forward":"0"}`),
		"sysctl not a string":   withRaw(t, good, "sysctls", `{"net.ipv4.ip_forward":1}`),
		"masquerade not bool":   withRaw(t, good, "masquerade", `"yes"`),
		"zone out of range":     withRaw(t, good, "conntrackZone", `70000`),
		"bad uplink":            withRaw(t, good, "uplink", `"a/b/c"`),
		"bad backend":           withRaw(t, good, "backend", `"pf"`),
		"prevResult garbage":    withRaw(t, good, "prevResult", `{"interfaces":[null],"ips":[null,{"interface":7}],"routes":[null]}`),
		"prevResult wrong type": withRaw(t, good, "prevResult", `"x"`),
	}
	for name, conf := range bad {
		t.Run(name, func(t *testing.T) {
			for _, verb := range []string{"DEL", "GC"} {
				cid := "sf-td"
				n.stage().Add(t, cid, p.NS, good).OK(t)
				if n.attState(t, be, testNet, cid) == "" {
					t.Fatal("ADD made nothing")
				}
				c := conf
				if verb == "GC" {
					c = withRaw(t, conf, "cni.dev/valid-attachments", `[]`)
				}
				o := n.stage().Run(t, verb, cid, p.NS, c)
				if o.Err != nil {
					n.stage().Del(t, cid, p.NS, good)
					t.Fatalf("%s with a %s: %v\n%s", verb, name, o.Err, o.Stdout)
				}
				if s := n.attState(t, be, testNet, cid); s != "" {
					t.Fatalf("%s with a %s left:\n%s", verb, name, s)
				}
			}
		})
	}
}

// TestLongContainerID: a container ID whose tag would overflow an
// iptables comment (256 bytes) is refused with code 4 before any change
// (it was silently truncated, so GC could no longer find the rules).
func TestLongContainerID(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sf-long")
	p := n.addPod(t, "p", "sfh-long", "10.66.0.71/24")
	conf := config(t, "1.1.0", map[string]any{"masquerade": true, "hostSysctls": map[string]string{"net.ipv4.conf.IFNAME.rp_filter": "2"}}, p.prevResult(t))
	before := n.save(t)
	rp := strings.TrimSpace(n.sh(t, "cat", "/proc/sys/net/ipv4/conf/"+p.hostVeth+"/rp_filter"))
	cid := strings.Repeat("c", 250)
	o := n.stage().Add(t, cid, p.NS, conf)
	if o.Err == nil {
		n.stage().Del(t, cid, p.NS, conf)
	}
	if e := o.CNIError(t); e.Code != types.ErrInvalidEnvironmentVariables {
		t.Fatalf("code %d (%s), want 4", e.Code, e.Msg)
	}
	if after := n.save(t); stripSaveComments(after) != stripSaveComments(before) {
		t.Fatalf("refused ADD changed iptables:\n%s", after)
	}
	if got := strings.TrimSpace(n.sh(t, "cat", "/proc/sys/net/ipv4/conf/"+p.hostVeth+"/rp_filter")); got != rp {
		t.Fatalf("refused ADD wrote rp_filter %s -> %s", rp, got)
	}
	// DEL and GC of such an attachment succeed (nothing can exist).
	n.stage().Del(t, cid, p.NS, conf).OK(t)
}

// TestHostSysctlsScope: hostSysctls reach only the host veth's own keys;
// node-wide keys need nodeSysctls, by name.
func TestHostSysctlsScope(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sf-scope")
	p := n.addPod(t, "p", "sfh-scope", "10.66.0.72/24")
	prev := p.prevResult(t)
	read := func(key string) string {
		return strings.TrimSpace(n.sh(t, "cat", "/proc/sys/"+strings.ReplaceAll(key, ".", "/")))
	}
	n.sh(t, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
	for _, key := range []string{
		"net.ipv4.conf.all.rp_filter",
		"net.ipv4.conf.default.rp_filter",
		"net.ipv4.ip_forward",
		"net.ipv4.conf." + bridge + ".rp_filter",
		"net.ipv4.neigh.default.gc_thresh1",
		"net.ipv4.conf.IFNAME", // a directory, not a knob
	} {
		t.Run(key, func(t *testing.T) {
			conf := config(t, "1.1.0", map[string]any{"hostSysctls": map[string]string{key: "1"}}, prev)
			before := n.sh(t, "sysctl", "-a")
			o := n.stage().Add(t, "sf-scope", p.NS, conf)
			if o.Err == nil {
				n.stage().Del(t, "sf-scope", p.NS, conf)
			}
			e := o.CNIError(t)
			if e.Code != types.ErrInvalidNetworkConfig || !strings.Contains(e.Msg, "nodeSysctls") {
				t.Fatalf("hostSysctls %s: code %d (%s), want 7 naming nodeSysctls", key, e.Code, e.Msg)
			}
			if after := n.sh(t, "sysctl", "-a"); stableSysctls(after) != stableSysctls(before) {
				t.Fatalf("refused ADD changed node sysctls")
			}
		})
	}
	// The host veth's own keys (conf and neigh, both families) are fine.
	conf := config(t, "1.1.0", map[string]any{
		"hostSysctls": map[string]string{
			"net.ipv4.conf.IFNAME.rp_filter":               "2",
			"net.ipv6.conf.IFNAME.accept_ra":               "0",
			"net.ipv4.neigh.IFNAME.base_reachable_time_ms": "31000",
		},
		"nodeSysctls": map[string]string{"net.ipv4.conf.all.rp_filter": "2"},
	}, prev)
	n.stage().Add(t, "sf-scope", p.NS, conf).OK(t)
	for key, want := range map[string]string{
		"net.ipv4.conf." + p.hostVeth + ".rp_filter":               "2",
		"net.ipv4.neigh." + p.hostVeth + ".base_reachable_time_ms": "31000",
		"net.ipv4.conf.all.rp_filter":                              "2",
	} {
		if got := read(key); got != want {
			t.Fatalf("%s = %s, want %s", key, got, want)
		}
	}
	n.stage().Check(t, "sf-scope", p.NS, conf).OK(t)
	n.sh(t, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
	n.stage().Check(t, "sf-scope", p.NS, conf).CNIError(t)
	n.stage().Del(t, "sf-scope", p.NS, conf).OK(t)
	// nodeSysctls cannot use IFNAME (it is not one interface's key).
	bad := config(t, "1.1.0", map[string]any{"nodeSysctls": map[string]string{"net.ipv4.conf.IFNAME.rp_filter": "1"}}, prev)
	if e := n.stage().Add(t, "sf-scope2", p.NS, bad).CNIError(t); e.Code != types.ErrInvalidNetworkConfig {
		t.Fatalf("nodeSysctls with IFNAME: %+v", e)
	}
}

// stableSysctls drops the counters and random values of `sysctl -a`
// that change on their own.
func stableSysctls(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "net.") && !strings.Contains(l, "stable_secret") && !strings.Contains(l, "nf_conntrack_count") &&
			!strings.Contains(l, "base_reachable_time") && !strings.Contains(l, "gc_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestNoPanicNoInternalError: bad configs and prevResults through the
// binary: every one is a CNI error with a specific code (never 0, never
// 999), and none changes the node (iptables, nftables, sysctls).
func TestNoPanicNoInternalError(t *testing.T) {
	forBackends(t, testNoPanicNoInternalError)
}

func testNoPanicNoInternalError(t *testing.T, be string) {
	testutil.RequireRoot(t)
	n := newNode(t, labFor("sf-codes", be))
	p := n.addPod(t, "p", "sfh-codes", "10.66.0.73/24")
	good := config(t, "1.1.0", map[string]any{"backend": be, "antiSpoofing": true, "nodeSysctls": map[string]string{"net.ipv4.conf.all.arp_ignore": "1"}, "masquerade": true}, p.prevResult(t))
	// The project chains and nodeSysctls exist, as on a node with pods.
	n.stage().Add(t, "sf-codes", p.NS, good).OK(t)
	n.stage().Del(t, "sf-codes", p.NS, good).OK(t)
	sysBefore := stableSysctls(n.sh(t, "sysctl", "-a"))
	before := stripSaveComments(n.save(t))
	nftBefore := dumpNft(t, n)
	cases := map[string]struct {
		conf []byte
		code uint
	}{
		"interfaces null":        {withRaw(t, good, "prevResult", `{"cniVersion":"1.1.0","interfaces":[null],"ips":[]}`), 7},
		"ips null":               {withRaw(t, good, "prevResult", `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"`+p.Path+`"}],"ips":[null]}`), 7},
		"routes null":            {withRaw(t, good, "prevResult", `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"`+p.Path+`"}],"routes":[null]}`), 7},
		"ip without address":     {withRaw(t, good, "prevResult", `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"`+p.Path+`"}],"ips":[{"interface":0}]}`), 7},
		"interface out of range": {withRaw(t, good, "prevResult", `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"`+p.Path+`"}],"ips":[{"interface":5,"address":"10.66.0.73/24"}]}`), 7},
		"prevResult a string":    {withRaw(t, good, "prevResult", `"x"`), 6},
		"no pod link in netns":   {withRaw(t, good, "prevResult", `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"`+n.Path+`x"}]}`), 7},
		"sysctl value refused":   {withRaw(t, good, "sysctls", `{"net.ipv4.conf.IFNAME.rp_filter":"abc"}`), 7},
		"host value refused":     {withRaw(t, good, "hostSysctls", `{"net.ipv4.conf.IFNAME.rp_filter":"x"}`), 7},
		"node value refused":     {withRaw(t, good, "nodeSysctls", `{"net.ipv4.conf.all.arp_ignore":"1","net.ipv4.conf.all.rp_filter":"zz"}`), 7},
		"sysctls a list":         {withRaw(t, good, "sysctls", `["a"]`), 7},
		"zone wrong type":        {withRaw(t, good, "conntrackZone", `true`), 7},
		"zone out of range":      {withRaw(t, good, "conntrackZone", `70000`), 7},
		"backend unknown":        {withRaw(t, good, "backend", `"pf"`), 7},
		"backend not a string":   {withRaw(t, good, "backend", `1`), 7},
		"uplink bad":             {withRaw(t, good, "uplink", `"a b"`), 7},
		"name missing":           {withRaw(t, good, "name", ``), 7},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := n.stage().Add(t, "sf-codes", p.NS, tc.conf)
			if o.Err == nil {
				n.stage().Del(t, "sf-codes", p.NS, good)
			}
			e := o.CNIError(t)
			if e.Code != tc.code {
				t.Fatalf("code %d (%s), want %d\nstderr: %s", e.Code, e.Msg, tc.code, o.Stderr)
			}
			if strings.Contains(string(o.Stderr), "panic") {
				t.Fatalf("panicked: %s", o.Stderr)
			}
			if after := stripSaveComments(n.save(t)); after != before {
				t.Fatalf("failed ADD changed iptables:\n%s", after)
			}
			if after := dumpNft(t, n); after != nftBefore {
				t.Fatalf("failed ADD changed nftables:\n%s", after)
			}
			if after := stableSysctls(n.sh(t, "sysctl", "-a")); after != sysBefore {
				t.Fatalf("failed ADD changed node sysctls")
			}
			// CHECK answers a specific code too, unless ADD failed only
			// on applying a value (CHECK then reports the mismatch).
			if strings.Contains(name, "refused") {
				return
			}
			if e := n.stage().Check(t, "sf-codes", p.NS, tc.conf).CNIError(t); e.Code == 0 || e.Code == types.ErrInternal {
				t.Fatalf("CHECK: code %d (%s)", e.Code, e.Msg)
			}
		})
	}
}
