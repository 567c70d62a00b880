//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// podmanConf is the whole containers.conf of the test (CONTAINERS_CONF
// replaces the system's; conmon passes it on to the cleanup process that
// runs DEL). No CAP_SYS_RESOURCE here: podman's default ulimits (1048576)
// cannot be set, lower ones can; crun 1.8 refuses the hybrid cgroup layout,
// runc works; there is no systemd.
const podmanConf = `[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
runtime = "runc"
tmp_dir = "{{dir}}/tmp"
volume_path = "{{dir}}/volumes"
static_dir = "{{dir}}/static"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{{dir}}/cni-bin"]
network_config_dir = "{{dir}}/net.d"
`

const podmanStorage = `[storage]
driver = "overlay"
graphroot = "{{dir}}/root"
runroot = "{{dir}}/runroot"
`

// podmanEnv is a podman with all its state under dir, run in a node netns.
type podmanEnv struct {
	t      *testing.T
	node   *netsim.Node
	dir    string
	bin    string
	spyLog string
	conf   []byte
	state  string
	holder *exec.Cmd // keeps the shared mount namespace of every podman call
}

func newPodman(t *testing.T, node *netsim.Node) *podmanEnv {
	t.Helper()
	paths := need(t, "podman", "podman", "conmon", "runc", tool("netns-exec"))
	if _, err := os.Stat(image("busybox-rootfs.tar")); err != nil {
		need(t, "podman", image("busybox-rootfs.tar"))
	}
	dir := workDir(t, "pdm")
	p := &podmanEnv{t: t, node: node, dir: dir, bin: paths[0], state: filepath.Join(dir, "cni-state")}
	_, p.spyLog = pluginDir(t, dir)
	p.conf = conflist(t, testutil.DefaultConflist(t), p.state)
	for _, d := range []string{"net.d", "tmp", "volumes", "static", "root", "runroot"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		"containers.conf":                podmanConf,
		"storage.conf":                   podmanStorage,
		"net.d/" + Network + ".conflist": "",
	} {
		b := []byte(strings.ReplaceAll(content, "{{dir}}", dir))
		if content == "" {
			b = p.conf
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Every podman call must share one mount namespace: podman bind-mounts
	// the pod netns at /run/netns/netns-<uuid> in the namespace of the
	// `podman run` and finds it there again on inspect, exec and teardown.
	// A holder process keeps that namespace (from netns-exec: private
	// mounts, the node's /sys, the cgroup mounts) and podman joins it.
	ready := filepath.Join(dir, "holder.ready")
	p.holder = nodeCmd(context.Background(), node, "sh", "-c", `touch "$0"; exec sleep 1000000`, ready)
	if err := p.holder.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.holder.Wait() }()
	t.Cleanup(func() {
		// remove whatever a failed test left, then the storage mounts
		_, _ = p.podman("rm", "-a", "-f", "-t", "0")
		_, _ = p.podman("system", "reset", "-f")
		_ = p.holder.Process.Kill()
		for _, pid := range pidsWithArg(dir) {
			_ = killPid(pid)
		}
	})
	if err := eventually(10*time.Second, func() error { _, err := os.Stat(ready); return err }); err != nil {
		t.Fatalf("namespace holder: %v", err)
	}
	done := timed(t, "podman import of the busybox image")
	p.must("import", "-q", "--change", `CMD ["/bin/sh"]`, image("busybox-rootfs.tar"), busyboxImage)
	done()
	return p
}

// podman runs podman in the node namespace with this env's config.
func (p *podmanEnv) podman(args ...string) ([]byte, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(p.holder.Process.Pid), "-m", "-n", "--", p.bin,
		"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "runroot")}, args...)...)
	cmd.Env = append(os.Environ(),
		"CONTAINERS_CONF="+filepath.Join(p.dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(p.dir, "storage.conf"))
	return run(cmd)
}

func (p *podmanEnv) must(args ...string) string {
	p.t.Helper()
	out, err := p.podman(args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// cidOf finds the container ID podman used for the container named name
// (CNI_ARGS K8S_POD_NAME=name).
func cidOf(all []call, name string) string {
	for _, c := range all {
		if c.Cmd == "ADD" && strings.Contains(";"+c.Args+";", ";K8S_POD_NAME="+name+";") {
			return c.CID
		}
	}
	return ""
}

// waitDel waits until every stage saw a DEL for cid (podman's cleanup
// process runs it after the container exits).
func waitDel(t *testing.T, log, cid string) []call {
	t.Helper()
	var all []call
	err := eventually(30*time.Second, func() error {
		all = calls(t, log)
		seen := map[string]bool{}
		for _, c := range callsFor(all, cid, "DEL") {
			seen[c.Plugin] = true
		}
		if len(seen) < len(testutil.Plugins) {
			return fmt.Errorf("DEL reached %d of %d stages", len(seen), len(testutil.Plugins))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", cid, err)
	}
	return all
}

// TestPodman: podman 4.3 with its CNI backend runs containers on our
// network (the default conflist in its network_config_dir), in a node
// namespace: an address from the chain, the gateway reachable, --ip and
// --mac-address (sent as CNI_ARGS IP= and MAC=) honoured, the node reaches
// a detached container, and the DELs of podman's cleanup leave nothing.
func TestPodman(t *testing.T) {
	need(t, "podman", "podman")
	_, node := testutil.NewNode(t, "e2pdm")
	p := newPodman(t, node)
	if nets := p.must("network", "ls", "--format", "{{.Name}}"); !strings.Contains("\n"+nets+"\n", "\n"+Network+"\n") {
		t.Fatalf("podman does not list network %s: %q", Network, nets)
	}

	// 1. plain run: an address of the chain, the gateway answers.
	done := timed(t, "podman run --rm (address, gateway ping)")
	out := p.must("run", "--rm", "--name", "e2e-p1", "--network", Network, busyboxImage,
		"sh", "-c", "ip -o addr show dev eth0 scope global && ping -c 2 -W 1 "+gw4)
	done()
	if !addrIn(out, podNet4) {
		t.Errorf("podman run: eth0 has no address in %v:\n%s", podNet4, out)
	}

	// 2. --ip and --mac-address: CNI_ARGS IP=, MAC=.
	const wantIP, wantMAC = "10.244.1.77", "02:42:0a:f4:01:4d"
	out = p.must("run", "--rm", "--name", "e2e-p2", "--network", Network, "--ip", wantIP, "--mac-address", wantMAC,
		busyboxImage, "ip", "-o", "link", "show", "dev", "eth0")
	if !strings.Contains(out, wantMAC) {
		t.Errorf("--mac-address %s: eth0 is %s", wantMAC, out)
	}
	out = p.must("run", "--rm", "--name", "e2e-p3", "--network", Network, "--ip", wantIP,
		busyboxImage, "ip", "-o", "-4", "addr", "show", "dev", "eth0")
	if !strings.Contains(out, " "+wantIP+"/") {
		t.Errorf("--ip %s: eth0 has %s", wantIP, out)
	}

	// 3. detached, with a port mapping and an alias: the node reaches it;
	// rm -f runs the DEL.
	cid := p.must("run", "-d", "--name", "e2e-web", "--network", Network, "--network-alias", "web",
		"-p", "18081:80", busyboxImage, "httpd", "-f", "-p", "80", "-h", "/www")
	ip := net.ParseIP(p.must("inspect", "-f", "{{(index .NetworkSettings.Networks \""+Network+"\").IPAddress}}", cid))
	if ip == nil || !podNet4.Contains(ip) {
		t.Fatalf("podman inspect: IP %v, want one in %v; state %s; logs %s", ip, podNet4, p.must("inspect", "-f", "{{json .State}}", cid), p.must("logs", cid))
	}
	if err := pingFrom(node.NS, ip.String()); err != nil {
		t.Errorf("node cannot reach the container: %v", err)
	}
	if err := eventually(10*time.Second, func() error { return httpGet(node.NS, ip.String()+":80") }); err != nil {
		t.Errorf("node cannot fetch from the container's httpd: %v", err)
	}
	done = timed(t, "podman rm -f (DEL)")
	p.must("rm", "-f", "-t", "0", cid)
	done()

	// What podman sent and what the chain answered.
	var atts []chain.Attachment
	names := map[string]net.IP{"e2e-p1": nil, "e2e-p2": net.ParseIP(wantIP), "e2e-p3": net.ParseIP(wantIP), "e2e-web": ip}
	var all []call
	for name, ip := range names {
		id := cidOf(calls(t, p.spyLog), name)
		if id == "" {
			t.Fatalf("no ADD for container %s in the spy log", name)
		}
		all = waitDel(t, p.spyLog, id)
		expectArgs(t, all, id, "K8S_POD_NAME", "IgnoreUnknown")
		r := finalResult(t, all, id)
		ips := checkFinalResult(t, r, callsFor(all, id, "ADD")[0].NetNS)
		if ip != nil && !containsIP(ips, ip) {
			t.Errorf("%s: final result %v does not hold %v", name, ips, ip)
		}
		for _, c := range callsFor(all, id, "DEL") {
			if !strings.Contains(string(c.Stdin), `"prevResult"`) {
				t.Errorf("%s: podman's DEL to %s carried no prevResult", name, c.Plugin)
			}
		}
		atts = append(atts, chain.Attachment{RT: chain.RuntimeConf{ContainerID: id, IfName: "eth0"}, IPs: ips})
		if nsPath := callsFor(all, id, "ADD")[0].NetNS; nsPath != "" {
			if _, err := os.Stat(nsPath); err == nil {
				t.Errorf("%s: podman's netns %s is still there", name, nsPath)
			}
		}
		if name == "e2e-p2" {
			for _, c := range callsFor(all, id, "ADD") {
				if !strings.Contains(c.Args, "IP="+wantIP) || !strings.Contains(c.Args, "MAC="+wantMAC) {
					t.Errorf("%s: CNI_ARGS %q lack IP=%s;MAC=%s", c.Plugin, c.Args, wantIP, wantMAC)
				}
			}
		}
		if name == "e2e-web" {
			for _, c := range callsFor(all, id, "ADD") {
				rc := c.runtimeConfig()
				if pm := string(rc["portMappings"]); !strings.Contains(pm, `"hostPort":18081`) {
					t.Errorf("%s: podman's portMappings %s", c.Plugin, pm)
				}
				if al := string(rc["aliases"]); !strings.Contains(al, `"web"`) {
					t.Errorf("%s: podman's aliases %s", c.Plugin, al)
				}
			}
			t.Logf("podman ADD to the first stage of %s: env args %q, stdin %s", name, callsFor(all, id, "ADD")[0].Args, callsFor(all, id, "ADD")[0].Stdin)
		}
	}
	if f := failedCalls(all); len(f) > 0 {
		t.Errorf("plugin calls that failed:\n%s", strings.Join(f, "\n"))
	}
	if left := attachmentLeftovers(t, node, p.conf, p.state, atts); len(left) > 0 {
		t.Errorf("left behind after podman's DELs:\n%s", strings.Join(left, "\n"))
	}
}

// addrIn reports whether `ip -o addr` output holds an address in n.
func addrIn(out string, n *net.IPNet) bool {
	for _, f := range strings.Fields(out) {
		if ip, _, err := net.ParseCIDR(f); err == nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

// killPid ends one process this test started (a leftover conmon).
func killPid(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
