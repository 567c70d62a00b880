package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/pkg/netsim"
	"github.com/vxvrf/cni/pkg/testutil"
)

const (
	testNet    = "vanet"
	testBridge = "br-test"
	subnet     = "10.77.0.0/24"
	gateway    = "10.77.0.1"
)

// env is the extra environment of every exec: CNI_PATH with host-local.
func env(t *testing.T) []string {
	return []string{"CNI_PATH=" + testutil.PluginDir(t, "veth-attach") + string(os.PathListSeparator) + testutil.ReferencePlugins(t, "host-local")}
}

// newNode makes a lab with one node holding bridge br-test (up).
func newNode(t *testing.T, name string) (*netsim.Lab, *netsim.Node) {
	t.Helper()
	lab, node := testutil.NewNode(t, name)
	mustIn(t, node.NS, "ip", "link", "add", testBridge, "type", "bridge")
	mustIn(t, node.NS, "ip", "link", "set", testBridge, "up")
	return lab, node
}

func addPod(t *testing.T, lab *netsim.Lab, role string) *netsim.NS {
	return testutil.AddNS(t, lab, role)
}

func mustIn(t *testing.T, n *netsim.NS, name string, args ...string) string {
	t.Helper()
	out, err := n.In(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// hostLocal is a host-local ipam block with its own dataDir.
func hostLocal(dataDir string, rangeStart, rangeEnd string) map[string]any {
	r := map[string]any{"subnet": subnet, "gateway": gateway}
	if rangeStart != "" {
		r["rangeStart"], r["rangeEnd"] = rangeStart, rangeEnd
	}
	return map[string]any{
		"type":    "host-local",
		"dataDir": dataDir,
		"ranges":  [][]map[string]any{{r}},
		"routes":  []map[string]any{{"dst": "0.0.0.0/0"}},
	}
}

// dualStack is a host-local ipam block with its own dataDir, the IPv4 test
// subnet and the IPv6 subnet sub6 with gateway gw6, and default routes of
// both families.
func dualStack(dataDir, sub6, gw6 string) map[string]any {
	ipam := hostLocal(dataDir, "", "")
	ipam["ranges"] = []any{
		[]map[string]any{{"subnet": subnet, "gateway": gateway}},
		[]map[string]any{{"subnet": sub6, "gateway": gw6}},
	}
	ipam["routes"] = []map[string]any{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}}
	return ipam
}

// bridgePrev is a prevResult as vrf-vxlan-bridge leaves it: uplink, bridge.
func bridgePrev(ver string) map[string]any {
	return map[string]any{
		"cniVersion": ver,
		"interfaces": []map[string]any{{"name": "eth0"}, {"name": testBridge}},
	}
}

func config(t *testing.T, ver string, extra map[string]any) []byte {
	t.Helper()
	c := map[string]any{"cniVersion": ver, "name": testNet, "type": "veth-attach"}
	for k, v := range extra {
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withPrev returns conf with prevResult replaced by result (raw JSON).
func withPrev(t *testing.T, conf []byte, result []byte) []byte {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(conf, &c); err != nil {
		t.Fatal(err)
	}
	var r any
	if err := json.Unmarshal(result, &r); err != nil {
		t.Fatal(err)
	}
	c["prevResult"] = r
	b, _ := json.Marshal(c)
	return b
}

func inv(cmd, cid string, pod *netsim.NS, conf []byte, e []string) testutil.Invocation {
	netns := ""
	if pod != nil {
		netns = pod.Path
	}
	return testutil.Invocation{Plugin: "veth-attach", Command: cmd, ContainerID: cid, NetNS: netns, IfName: "eth0", Config: conf, Env: e}
}

func parseResult(t *testing.T, out []byte) *current.Result {
	t.Helper()
	var r current.Result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("result %s: %v", out, err)
	}
	return &r
}

func hostVeth(cid string) string { return naming.HostVethName(testNet, cid, "eth0") }

func linkExists(n *netsim.NS, name string) bool {
	_, err := n.In("ip", "link", "show", name)
	return err == nil
}

// leases lists host-local's reservation files in dataDir.
func leases(t *testing.T, dataDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, testNet))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "lock") && !strings.HasPrefix(e.Name(), "last_reserved") {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

func podIP(t *testing.T, r *current.Result) string {
	t.Helper()
	for _, ipc := range r.IPs {
		if ipc.Interface != nil && r.Interfaces[*ipc.Interface].Sandbox != "" {
			return ipc.Address.IP.String()
		}
	}
	t.Fatalf("no pod ip in %+v", r)
	return ""
}
