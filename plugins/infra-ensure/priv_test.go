package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

const plugin = "infra-ensure"

type result struct {
	CNIVersion string `json:"cniVersion"`
	Interfaces []struct {
		Name    string `json:"name"`
		Mac     string `json:"mac"`
		Mtu     int    `json:"mtu"`
		Sandbox string `json:"sandbox"`
	} `json:"interfaces"`
	IPs []any `json:"ips"`
}

func netConf(ver string, extra map[string]any) []byte {
	m := map[string]any{"cniVersion": ver, "name": "ie", "type": plugin}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

func inv(cmd string, pod *netsim.NS, config []byte) testutil.Invocation {
	p := ""
	if pod != nil {
		p = pod.Path
	}
	return testutil.Invocation{Plugin: plugin, Command: cmd, ContainerID: "c1", NetNS: p, IfName: "eth0", Config: config}
}

// nodeSysctl reads a sysctl inside the node namespace.
func nodeSysctl(t *testing.T, node *netsim.Node, key string) string {
	t.Helper()
	out, err := node.In("cat", filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func hostSysctl(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

var keys = []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.tcp_l3mdev_accept", "net.ipv4.udp_l3mdev_accept"}

// TestLifecycle: ADD sets the node sysctls (not the host's), creates the
// state dir and reports the uplink, for every version; CHECK; DEL twice.
func TestLifecycle(t *testing.T) {
	node, pod := labNode(t, "ie-life")
	host := map[string]string{}
	for _, k := range keys {
		host[k] = hostSysctl(t, k)
	}
	for _, k := range keys {
		if _, err := node.In("sysctl", "-qw", k+"=0"); err != nil {
			t.Fatal(err)
		}
	}
	mac, err := node.In("cat", "/sys/class/net/eth0/address")
	if err != nil {
		t.Fatal(err)
	}
	for _, ver := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(ver, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "vxvrf")
			conf := netConf(ver, map[string]any{"stateDir": state})
			var res result
			if err := json.Unmarshal(testutil.MustRun(t, node.NetNS, inv("ADD", pod, conf)), &res); err != nil {
				t.Fatal(err)
			}
			if res.CNIVersion != ver {
				t.Errorf("cniVersion %q, want %q", res.CNIVersion, ver)
			}
			if len(res.Interfaces) != 1 || res.Interfaces[0].Name != "eth0" || res.Interfaces[0].Sandbox != "" ||
				res.Interfaces[0].Mac != strings.TrimSpace(string(mac)) || len(res.IPs) != 0 {
				t.Errorf("result %+v, want only the uplink eth0 (mac %s)", res, mac)
			}
			if ver >= "1.0.0" && res.Interfaces[0].Mtu != 1500 {
				t.Errorf("uplink mtu %d, want 1500", res.Interfaces[0].Mtu)
			}
			for _, k := range keys {
				if got := nodeSysctl(t, node, k); got != "1" {
					t.Errorf("node %s = %s, want 1", k, got)
				}
			}
			if st, err := os.Stat(state); err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
				t.Errorf("stateDir %s: %v %v", state, st, err)
			}
			if ver != "0.3.1" {
				testutil.MustRun(t, node.NetNS, inv("CHECK", pod, conf))
			}
			testutil.MustRun(t, node.NetNS, inv("DEL", pod, conf))
			testutil.MustRun(t, node.NetNS, inv("DEL", nil, conf))
			if nodeSysctl(t, node, "net.ipv4.ip_forward") != "1" {
				t.Error("DEL reset a node sysctl")
			}
		})
	}
	for _, k := range keys {
		if got := hostSysctl(t, k); got != host[k] {
			t.Errorf("host %s changed from %s to %s", k, host[k], got)
		}
	}

	// CHECK catches a sysctl flipped behind its back.
	conf := netConf("1.1.0", map[string]any{"stateDir": t.TempDir()})
	if _, err := node.In("sysctl", "-qw", "net.ipv4.ip_forward=0"); err != nil {
		t.Fatal(err)
	}
	if e := testutil.Run(t, node.NetNS, inv("CHECK", pod, conf)).CNIError(t); !strings.Contains(e.Msg, "ip_forward") {
		t.Errorf("CHECK error %q does not name ip_forward", e.Msg)
	}
}

// TestPrevResult: a prevResult is passed through with the uplink appended.
func TestPrevResult(t *testing.T) {
	node, pod := labNode(t, "ie-prev")
	conf := netConf("1.0.0", map[string]any{"stateDir": t.TempDir(), "uplink": "eth0",
		"prevResult": map[string]any{"cniVersion": "1.0.0", "interfaces": []any{map[string]any{"name": "other"}},
			"ips": []any{map[string]any{"address": "10.0.0.2/24"}}}})
	var res result
	if err := json.Unmarshal(testutil.MustRun(t, node.NetNS, inv("ADD", pod, conf)), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Interfaces) != 2 || res.Interfaces[0].Name != "other" || res.Interfaces[1].Name != "eth0" || len(res.IPs) != 1 {
		t.Errorf("result %+v, want prevResult with eth0 appended", res)
	}
}

// TestUplinkErrors: a configured uplink that does not exist, a local
// address not on the uplink, the node's own netns.
func TestUplinkErrors(t *testing.T) {
	node, pod := labNode(t, "ie-err")
	if _, err := node.In("sysctl", "-qw", "net.ipv4.ip_forward=0"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		extra map[string]any
		code  uint
		msg   string
	}{
		{map[string]any{"uplink": "eth7"}, 7, `uplink "eth7" does not exist`},
		{map[string]any{"localAddress": "198.18.0.99"}, 7, "198.18.0.99 is not on uplink eth0"},
	} {
		c.extra["stateDir"] = t.TempDir()
		e := testutil.Run(t, node.NetNS, inv("ADD", pod, netConf("1.1.0", c.extra))).CNIError(t)
		if e.Code != c.code || !strings.Contains(e.Msg, c.msg) {
			t.Errorf("%v: error %d %q, want %d containing %q", c.extra, e.Code, e.Msg, c.code, c.msg)
		}
	}
	o := testutil.Run(t, node.NetNS, testutil.Invocation{Plugin: plugin, Command: "ADD", ContainerID: "c1", NetNS: node.Path, IfName: "eth0",
		Config: netConf("1.1.0", map[string]any{"stateDir": t.TempDir()})})
	if e := o.CNIError(t); e.Code != 8 {
		t.Errorf("own netns: code %d (%s), want 8", e.Code, e.Msg)
	}
	if nodeSysctl(t, node, "net.ipv4.ip_forward") != "0" {
		t.Error("a failed ADD changed ip_forward")
	}
}

// TestStatus: ok with a healthy uplink, 50 when it is missing, down or
// lacks the address.
func TestStatus(t *testing.T) {
	node, _ := labNode(t, "ie-st")
	st := func(extra map[string]any) testutil.Outcome {
		return testutil.Run(t, node.NetNS, testutil.Invocation{Plugin: plugin, Command: "STATUS", Config: netConf("1.1.0", extra)})
	}
	for _, extra := range []map[string]any{nil, {"uplink": "eth0", "localAddress": node.Addr.String()}} {
		if o := st(extra); o.Err != nil {
			t.Errorf("STATUS %v: %v %s", extra, o.Err, o.Stdout)
		}
	}
	for _, extra := range []map[string]any{{"uplink": "eth7"}, {"localAddress": "198.18.0.99"}} {
		if e := st(extra).CNIError(t); e.Code != 50 {
			t.Errorf("STATUS %v: code %d (%s), want 50", extra, e.Code, e.Msg)
		}
	}
	if _, err := node.In("ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	for _, extra := range []map[string]any{nil, {"uplink": "eth0"}} {
		if e := st(extra).CNIError(t); e.Code != 50 {
			t.Errorf("STATUS %v with eth0 down: code %d (%s), want 50", extra, e.Code, e.Msg)
		}
	}
}

// TestGC: nothing to release, GC succeeds with or without the list.
func TestGC(t *testing.T) {
	node, _ := labNode(t, "ie-gc")
	for _, extra := range []map[string]any{nil, {"cni.dev/valid-attachments": []any{}}} {
		testutil.MustRun(t, node.NetNS, testutil.Invocation{Plugin: plugin, Command: "GC", Config: netConf("1.1.0", extra)})
	}
}

// labNode makes a lab with one node and one pod namespace.
func labNode(t *testing.T, name string) (*netsim.Node, *netsim.NS) {
	t.Helper()
	lab, node := testutil.NewNode(t, name)
	return node, testutil.AddNS(t, lab, "p1")
}
