//go:build e2e

package e2e

import (
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// cnitoolPath finds cnitool: on PATH (make puts .tools/bin first), else
// the repo's .tools/bin from scripts/install-deps.sh.
func cnitoolPath(t *testing.T) string {
	if p := testutil.FindTool("cnitool"); p != "" {
		return p
	}
	return need(t, "cnitool", "cnitool")[0]
}

// TestCnitool: cnitool (v1.3.x) drives the default conflist at cniVersion
// 1.1.0 in a node namespace: add, check, status, del, then add and gc
// (cnitool's gc DELs every cached attachment of the network, then sends
// GC); nothing is left.
func TestCnitool(t *testing.T) {
	need(t, "cnitool", "ip")
	cnitool := cnitoolPath(t)
	lab, node := testutil.NewNode(t, "e2cnt")
	pod := testutil.AddNS(t, lab, "p1")
	work := workDir(t, "cnt")
	state := filepath.Join(work, "cni-state")
	conf := conflist(t, testutil.DefaultConflist(t), state)
	conf, err := chain.SetVersion(conf, "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "vxvrf.conflist"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := testutil.PluginDir(t, testutil.Plugins...)
	capArgs := ""
	tool := func(args ...string) (string, error) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", node.Name, cnitool}, args...)...)
		cmd.Env = append(os.Environ(), "NETCONFPATH="+work, "CNI_PATH="+bin, "CNI_IFNAME=eth0",
			"CNI_ARGS=K8S_POD_NAME=e2e-cnitool;K8S_POD_NAMESPACE=e2e", "CAP_ARGS="+capArgs)
		out, err := run(cmd)
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := tool(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	add := func() []net.IP {
		t.Helper()
		var r current.Result
		out := must("add", Network, pod.Path)
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("cnitool add printed %q: %v", out, err)
		}
		if r.CNIVersion != "1.1.0" {
			t.Errorf("result version %q, want 1.1.0", r.CNIVersion)
		}
		return checkFinalResult(t, &r, pod.Path)
	}
	ips := add()
	if err := pingFrom(pod, gw4); err != nil {
		t.Errorf("pod cannot reach the gateway: %v", err)
	}
	must("check", Network, pod.Path)
	must("status", Network, pod.Path)
	must("del", Network, pod.Path)
	cid := cnitoolID(pod.Path)
	left := cnitoolLeftovers(t, node, conf, state, cid, pod, ips)
	if len(left) > 0 {
		t.Errorf("left behind after cnitool del:\n%s", strings.Join(left, "\n"))
	}
	// runtimeConfig as a runtime fills it (CAP_ARGS): ips and mac (which
	// containerd 1.6 and podman 4.3 never send this way), dns, and
	// portMappings/bandwidth in containerd's capitalised form.
	const wantIP, wantMAC = "10.244.1.99", "02:42:0a:f4:01:63"
	capArgs = `{"ips":["` + wantIP + `/24"],"mac":"` + wantMAC + `",` +
		`"dns":{"Servers":["10.96.0.10"],"Searches":["e2e.local"],"Options":["ndots:5"]},` +
		`"portMappings":[{"HostPort":18092,"ContainerPort":80,"Protocol":"tcp","HostIP":""}],` +
		`"bandwidth":{"IngressRate":10000000,"IngressBurst":4294967295,"EgressRate":0,"EgressBurst":0}}`
	ips = add()
	if !containsIP(ips, net.ParseIP(wantIP)) {
		t.Errorf("runtimeConfig.ips %s: result has %v", wantIP, ips)
	}
	if out, err := pod.In("ip", "-o", "link", "show", "dev", "eth0"); err != nil || !strings.Contains(string(out), wantMAC) {
		t.Errorf("runtimeConfig.mac %s: eth0 is %s (%v)", wantMAC, out, err)
	}
	must("check", Network, pod.Path)
	must("gc", Network, pod.Path)
	if left := cnitoolLeftovers(t, node, conf, state, cid, pod, ips); len(left) > 0 {
		t.Errorf("left behind after cnitool gc:\n%s", strings.Join(left, "\n"))
	}
}

// cnitoolID is cnitool's container ID for a netns path: "cnitool-" and
// the first 10 bytes of sha512(path) in hex.
func cnitoolID(path string) string {
	s := sha512.Sum512([]byte(path))
	return fmt.Sprintf("cnitool-%x", s[:10])
}

func cnitoolLeftovers(t *testing.T, node *netsim.Node, conf []byte, state, cid string, pod *netsim.NS, ips []net.IP) []string {
	t.Helper()
	return attachmentLeftovers(t, node, conf, state, []chain.Attachment{{
		RT: chain.RuntimeConf{ContainerID: cid, IfName: "eth0"}, IPs: ips, Pod: pod}})
}
