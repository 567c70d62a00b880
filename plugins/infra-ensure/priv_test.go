package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

const plugin = "infra-ensure"

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
	node, pod := testutil.NodeWithPod(t, "ie-life")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
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
			conf := st.Conf(ver, "ie").With("stateDir", state).Bytes()
			res := st.Add(t, "c1", pod, conf).Result(t)
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
				st.Check(t, "c1", pod, conf).OK(t)
			}
			st.Del(t, "c1", pod, conf).OK(t)
			st.Del(t, "c1", nil, conf).OK(t)
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
	conf := st.Conf("1.1.0", "ie").With("stateDir", t.TempDir()).Bytes()
	if _, err := node.In("sysctl", "-qw", "net.ipv4.ip_forward=0"); err != nil {
		t.Fatal(err)
	}
	if e := st.Check(t, "c1", pod, conf).CNIError(t); !strings.Contains(e.Msg, "ip_forward") {
		t.Errorf("CHECK error %q does not name ip_forward", e.Msg)
	}
}

// TestAcceptRA: turning IPv6 forwarding on switches an uplink that accepts
// router advertisements (accept_ra=1) to accept_ra=2, so the node keeps its
// SLAAC address and default route; with forwarding already on, accept_ra
// is left as it is. The verb line names what was set.
func TestAcceptRA(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "ie-ra")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	logFile := filepath.Join(t.TempDir(), "cni.log")
	conf := st.Conf("1.1.0", "ie").With("stateDir", t.TempDir()).
		With("log", map[string]any{"file": logFile, "level": "info"}).Bytes()
	set := func(kv ...string) {
		t.Helper()
		for _, s := range kv {
			if _, err := node.In("sysctl", "-qw", s); err != nil {
				t.Fatal(err)
			}
		}
	}
	set("net.ipv6.conf.all.forwarding=0", "net.ipv6.conf.eth0.accept_ra=1")
	st.Add(t, "c1", pod, conf).OK(t)
	if got := nodeSysctl(t, node, "net.ipv6.conf.eth0.accept_ra"); got != "2" {
		t.Errorf("accept_ra = %s after ADD turned IPv6 forwarding on, want 2", got)
	}
	if got := nodeSysctl(t, node, "net.ipv6.conf.all.forwarding"); got != "1" {
		t.Errorf("IPv6 forwarding = %s, want 1", got)
	}
	if b, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(b), "net.ipv6.conf.eth0.accept_ra") {
		t.Errorf("the verb line does not name accept_ra (%v):\n%s", err, b)
	}
	set("net.ipv6.conf.eth0.accept_ra=1")
	st.Add(t, "c2", pod, conf).OK(t)
	if got := nodeSysctl(t, node, "net.ipv6.conf.eth0.accept_ra"); got != "1" {
		t.Errorf("accept_ra = %s after an ADD with forwarding already on, want 1 (left alone)", got)
	}
}

// TestPrevResult: a prevResult is passed through with the uplink appended.
func TestPrevResult(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "ie-prev")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	conf := st.Conf("1.0.0", "ie").Keys(map[string]any{"stateDir": t.TempDir(), "uplink": "eth0",
		"prevResult": map[string]any{"cniVersion": "1.0.0", "interfaces": []any{map[string]any{"name": "other"}},
			"ips": []any{map[string]any{"address": "10.0.0.2/24"}}}}).Bytes()
	res := st.Add(t, "c1", pod, conf).Result(t)
	if len(res.Interfaces) != 2 || res.Interfaces[0].Name != "other" || res.Interfaces[1].Name != "eth0" || len(res.IPs) != 1 {
		t.Errorf("result %+v, want prevResult with eth0 appended", res)
	}
}

// TestUplinkErrors: a configured uplink that does not exist, a local
// address not on the uplink, the node's own netns.
func TestUplinkErrors(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "ie-err")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
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
		e := st.Add(t, "c1", pod, st.Conf("1.1.0", "ie").Keys(c.extra).Bytes()).CNIError(t)
		if e.Code != c.code || !strings.Contains(e.Msg, c.msg) {
			t.Errorf("%v: error %d %q, want %d containing %q", c.extra, e.Code, e.Msg, c.code, c.msg)
		}
	}
	o := st.Add(t, "c1", node.NS, st.Conf("1.1.0", "ie").With("stateDir", t.TempDir()).Bytes())
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
	node, _ := testutil.NodeWithPod(t, "ie-st")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	status := func(extra map[string]any) testutil.Outcome {
		return st.Status(t, st.Conf("1.1.0", "ie").Keys(extra).Bytes())
	}
	for _, extra := range []map[string]any{nil, {"uplink": "eth0", "localAddress": node.Addr.String()}} {
		if o := status(extra); o.Err != nil {
			t.Errorf("STATUS %v: %v %s", extra, o.Err, o.Stdout)
		}
	}
	for _, extra := range []map[string]any{{"uplink": "eth7"}, {"localAddress": "198.18.0.99"}} {
		if e := status(extra).CNIError(t); e.Code != 50 {
			t.Errorf("STATUS %v: code %d (%s), want 50", extra, e.Code, e.Msg)
		}
	}
	if _, err := node.In("ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	for _, extra := range []map[string]any{nil, {"uplink": "eth0"}} {
		if e := status(extra).CNIError(t); e.Code != 50 {
			t.Errorf("STATUS %v with eth0 down: code %d (%s), want 50", extra, e.Code, e.Msg)
		}
	}
}

// TestGC: nothing to release, GC succeeds with or without the list.
func TestGC(t *testing.T) {
	node, _ := testutil.NodeWithPod(t, "ie-gc")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	for _, extra := range []map[string]any{nil, {"cni.dev/valid-attachments": []any{}}} {
		st.GC(t, st.Conf("1.1.0", "ie").Keys(extra).Bytes()).OK(t)
	}
}
