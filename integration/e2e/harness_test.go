//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// Network is the name of the conflist the runtimes use (the default one).
const Network = "vxvrf"

// prefix is where scripts/e2e-setup.sh installs (E2E_PREFIX).
func prefix() string {
	if p := os.Getenv("E2E_PREFIX"); p != "" {
		return p
	}
	return "/opt/vxvrf-e2e"
}

// required reports whether missing runtimes fail instead of skipping.
func required() bool { return os.Getenv("VXVRF_E2E_REQUIRE") == "1" }

// need skips (or, with VXVRF_E2E_REQUIRE=1, fails) unless every tool is
// there: an absolute path must be an executable file, a bare name must be
// on PATH. It returns the resolved paths in order.
func need(t *testing.T, runtime string, tools ...string) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		if required() {
			t.Fatalf("%s e2e: needs root (VXVRF_E2E_REQUIRE=1)", runtime)
		}
		t.Skipf("%s e2e: needs root", runtime)
	}
	var out, missing []string
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			missing = append(missing, tool)
			continue
		}
		out = append(out, p)
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s e2e: not installed: %s (run scripts/e2e-setup.sh)", runtime, strings.Join(missing, ", "))
		if required() {
			t.Fatal(msg + " [VXVRF_E2E_REQUIRE=1]")
		}
		t.Skip(msg)
	}
	return out
}

// tool is the path of a binary the setup script installed in the prefix.
func tool(name string) string { return filepath.Join(prefix(), "bin", name) }

// image is the path of an image archive the setup script built.
func image(name string) string { return filepath.Join(prefix(), "images", name) }

// workDir is a temp dir for one runtime instance; it is removed at the end
// (best effort: a daemon may have left a busy mount in its own mount ns).
func workDir(t *testing.T, name string) string {
	t.Helper()
	d, err := os.MkdirTemp("", "vxvrf-e2e-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if k := os.Getenv("VXVRF_E2E_KEEP"); (t.Failed() && k == "1") || k == "all" {
			t.Logf("kept %s (VXVRF_E2E_KEEP=1)", d)
			return
		}
		if err := os.RemoveAll(d); err != nil {
			t.Logf("remove %s: %v", d, err)
		}
	})
	return d
}

// loopback finds the reference loopback plugin (containerd's CRI runs it
// for lo from its single bin_dir).
func loopback(t *testing.T) string {
	t.Helper()
	var cands []string
	if d := os.Getenv("VXVRF_REF_BIN"); d != "" {
		cands = append(cands, filepath.Join(d, "loopback"))
	}
	if root, err := testutil.RepoRoot(); err == nil {
		cands = append(cands, filepath.Join(root, ".tools", "cni", "loopback"))
	}
	cands = append(cands, "/usr/lib/cni/loopback", "/opt/cni/bin/loopback")
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return c
		}
	}
	msg := "no loopback plugin (run scripts/install-deps.sh)"
	if required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// spyScript wraps one plugin: it records what the runtime sent (CNI_* env
// and stdin) and what the plugin answered (exit code, stdout) as one JSON
// line in log, then passes the answer on unchanged. The log path is baked
// in: podman runs DEL from a conmon-spawned process with another env.
const spyScript = `#!/bin/sh
# vxvrf e2e spy: records the call, runs the real plugin, passes its answer on.
in=$(cat)
out=$(printf '%%s' "$in" | %q); rc=$?
%q -cn --arg plugin %q --arg in "$in" --arg out "$out" --argjson rc "$rc" \
  --arg cmd "$CNI_COMMAND" --arg cid "$CNI_CONTAINERID" --arg netns "$CNI_NETNS" \
  --arg ifname "$CNI_IFNAME" --arg args "$CNI_ARGS" --arg path "$CNI_PATH" \
  '{plugin:$plugin, cmd:$cmd, cid:$cid, netns:$netns, ifname:$ifname, args:$args, path:$path,
    stdin:($in|fromjson? // $in), rc:$rc, stdout:$out}' >> %q
printf '%%s\n' "$out"
exit $rc
`

// pluginDir makes the CNI bin dir a runtime gets: a spy wrapper per project
// plugin (calling the real binary in bin/) and the reference loopback.
// It returns the dir and the spy log path.
func pluginDir(t *testing.T, work string) (string, string) {
	t.Helper()
	jq := need(t, "spy", "jq")[0]
	bin := testutil.PluginDir(t, testutil.Plugins...)
	dir := filepath.Join(work, "cni-bin")
	log := filepath.Join(work, "spy.log")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range testutil.Plugins {
		s := fmt.Sprintf(spyScript, filepath.Join(bin, p), jq, p, log)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(loopback(t), filepath.Join(dir, "loopback")); err != nil {
		t.Fatal(err)
	}
	return dir, log
}

// runtimeCaps are the capabilities every stage declares in the e2e
// conflist, so each stage receives whatever the runtimes fill in
// (containerd: portMappings with capitalised keys, bandwidth, dns, pod
// annotations; podman: aliases, portMappings) and must accept it.
var runtimeCaps = map[string]any{
	"portMappings": true, "bandwidth": true, "dns": true, "aliases": true,
	"io.kubernetes.cri.pod-annotations": true,
}

// conflist renders the conflist the runtimes use: src (the default, or the
// one the installer rendered), state dirs under stateRoot, cniVersion
// 1.0.0 (the newest libcni 1.1.2 in containerd 1.6 and podman 4.3 takes),
// and runtimeCaps on every stage (keeping each stage's own).
func conflist(t *testing.T, src []byte, stateRoot string) []byte {
	t.Helper()
	b, err := chain.SetStateDirs(src, stateRoot)
	if err != nil {
		t.Fatal(err)
	}
	b, err = chain.Edit(b, func(conf map[string]any, plugins []map[string]any) error {
		conf["name"] = Network
		conf["cniVersion"] = "1.0.0"
		for _, p := range plugins {
			caps, _ := p["capabilities"].(map[string]any)
			if caps == nil {
				caps = map[string]any{}
			}
			for k, v := range runtimeCaps {
				caps[k] = v
			}
			p["capabilities"] = caps
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// subnets of the default conflist, and its gateways (the first address).
var (
	podNet4 = mustCIDR("10.244.1.0/24")
	podNet6 = mustCIDR("fd00:10:244:1::/64")
	gw4     = "10.244.1.1"
)

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// call is one line of the spy log.
type call struct {
	Plugin string          `json:"plugin"`
	Cmd    string          `json:"cmd"`
	CID    string          `json:"cid"`
	NetNS  string          `json:"netns"`
	IfName string          `json:"ifname"`
	Args   string          `json:"args"`
	Path   string          `json:"path"`
	Stdin  json.RawMessage `json:"stdin"`
	RC     int             `json:"rc"`
	Stdout string          `json:"stdout"`
}

func (c call) String() string {
	return fmt.Sprintf("%s %s cid=%.12s netns=%q args=%q rc=%d stdout=%s", c.Plugin, c.Cmd, c.CID, c.NetNS, c.Args, c.RC, c.Stdout)
}

// runtimeConfig is the runtimeConfig object the runtime put in stdin.
func (c call) runtimeConfig() map[string]json.RawMessage {
	var in struct {
		RuntimeConfig map[string]json.RawMessage `json:"runtimeConfig"`
	}
	_ = json.Unmarshal(c.Stdin, &in)
	return in.RuntimeConfig
}

// calls reads the spy log.
func calls(t *testing.T, log string) []call {
	t.Helper()
	f, err := os.Open(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []call
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var c call
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("spy log line %q: %v", sc.Text(), err)
		}
		out = append(out, c)
	}
	return out
}

// callsFor filters the calls of one container ID (and command, if set).
func callsFor(all []call, cid, cmd string) []call {
	var out []call
	for _, c := range all {
		if c.CID == cid && (cmd == "" || c.Cmd == cmd) {
			out = append(out, c)
		}
	}
	return out
}

// failedCalls lists every call a plugin answered with an error.
func failedCalls(all []call) []string {
	var out []string
	for _, c := range all {
		if c.RC != 0 {
			out = append(out, c.String())
		}
	}
	return out
}

// finalResult is the result of the last stage's ADD for cid: what the
// runtime got back from the chain.
func finalResult(t *testing.T, all []call, cid string) *current.Result {
	t.Helper()
	last := testutil.Plugins[len(testutil.Plugins)-1]
	for _, c := range callsFor(all, cid, "ADD") {
		if c.Plugin != last || c.RC != 0 {
			continue
		}
		var r current.Result
		if err := json.Unmarshal([]byte(c.Stdout), &r); err != nil {
			t.Fatalf("final result of %s: %v: %s", cid, err, c.Stdout)
		}
		return &r
	}
	t.Fatalf("no successful %s ADD for %s in the spy log", last, cid)
	return nil
}

// checkFinalResult asserts what containerd needs from the final result:
// an interface named eth0 in the sandbox carrying the addresses (it takes
// the pod IPs from the IPs of the interface named like CNI_IFNAME that has
// a sandbox).
func checkFinalResult(t *testing.T, r *current.Result, netns string) []net.IP {
	t.Helper()
	var ips []net.IP
	for _, ip := range chain.PodIPs(r, netns, "eth0") {
		ips = append(ips, ip.Address.IP)
	}
	if len(ips) == 0 {
		t.Fatalf("final result has no address on eth0 in sandbox %q: %+v", netns, r)
	}
	return ips
}

// expectArgs asserts that every ADD of cid carried the CNI_ARGS keys.
func expectArgs(t *testing.T, all []call, cid string, keys ...string) {
	t.Helper()
	adds := callsFor(all, cid, "ADD")
	if len(adds) != len(testutil.Plugins) {
		t.Errorf("%s: %d ADD calls, want one per stage (%d)", cid, len(adds), len(testutil.Plugins))
	}
	for _, c := range adds {
		for _, k := range keys {
			if !strings.Contains(";"+c.Args, ";"+k+"=") {
				t.Errorf("%s ADD: CNI_ARGS %q has no %s", c.Plugin, c.Args, k)
			}
		}
	}
}

// in runs a command in the node namespace with the cgroup mounts a runtime
// needs (netns-exec from the setup script).
func nodeCmd(ctx context.Context, node *netsim.Node, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, tool("netns-exec"), append([]string{node.Name, name}, args...)...)
}

// run runs cmd, returning stdout; the error carries stderr.
func run(cmd *exec.Cmd) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w\nstdout: %s\nstderr: %s", strings.Join(cmd.Args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// pingFrom pings addr (twice, 1 s timeout each) from the namespace.
func pingFrom(n *netsim.NS, addr string) error {
	_, err := n.In("ping", "-c", "2", "-W", "1", addr)
	return err
}

// eventually polls f every 100 ms until it returns nil or d passes. It
// waits for daemons to come up; it is not a timing assertion.
func eventually(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// attachmentLeftovers lists what remains on the node of the attachments
// (cid, eth0) of the runtime's state root: links, rules, routes, leases and
// state files, the libcni cache entry (every runtime here keeps libcni's
// default cache dir, /var/lib/cni).
func attachmentLeftovers(t *testing.T, node *netsim.Node, conf []byte, stateRoot string, atts []chain.Attachment) []string {
	t.Helper()
	list, err := chain.Parse(conf)
	if err != nil {
		t.Fatal(err)
	}
	c, err := chain.New(list, []string{testutil.PluginDir(t)}, "/var/lib/cni", node.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leftovers(node.NS, atts, stateRoot)
}

// timed logs how long a step took (the report's runtime timings).
func timed(t *testing.T, what string) func() {
	start := time.Now()
	return func() { t.Logf("TIMING %s: %v", what, time.Since(start).Round(time.Millisecond)) }
}

// httpGet fetches / from addr (host:port) from inside the namespace and
// wants a 200 answer. The socket is made on the namespace's thread.
func httpGet(n *netsim.NS, addr string) error {
	var answer string
	err := n.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		answer = strings.TrimSpace(line)
		return err
	})
	if err != nil {
		return fmt.Errorf("GET http://%s/: %w", addr, err)
	}
	if !strings.Contains(answer, " 200") {
		return fmt.Errorf("GET http://%s/: %q", addr, answer)
	}
	return nil
}
