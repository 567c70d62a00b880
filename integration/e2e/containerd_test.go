//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// Images the setup script builds (no registry is reachable).
const (
	pauseImage   = "localhost/vxvrf-e2e-pause:1.0"
	busyboxImage = "localhost/vxvrf-e2e-busybox:latest"
)

// containerdConfig is a private containerd 1.6: its own root, state and
// socket under dir, CRI CNI from dir/cni-bin and dir/net.d, runc with its
// own root. restrict_oom_score_adj: this machine has no CAP_SYS_RESOURCE,
// runc cannot set the sandbox's oom_score_adj to -998 otherwise.
// netns_mounts_under_state_dir keeps the pod netns mounts out of /run/netns.
const containerdConfig = `version = 2
root = "{{dir}}/root"
state = "{{dir}}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{{dir}}/containerd.sock"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "` + pauseImage + `"
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_selinux = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{{dir}}/cni-bin"
      conf_dir = "{{dir}}/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "{{dir}}/runc"
  [plugins."io.containerd.internal.v1.opt"]
    path = "{{dir}}/opt"
`

// containerd is a private containerd running in a node namespace.
type containerd struct {
	t       *testing.T
	node    *netsim.Node
	dir     string
	sock    string
	cniBin  string
	spyLog  string
	conf    []byte // the conflist in net.d
	state   string // the chain's state root
	cmd     *exec.Cmd
	crictlP string
	ctrP    string
}

// startContainerd writes the config and the conflist, starts containerd in
// the node namespace, imports the images and waits for the CRI network to
// be ready. Everything is stopped and removed when the test ends.
func startContainerd(t *testing.T, node *netsim.Node, conflistSrc []byte) *containerd {
	t.Helper()
	paths := need(t, "containerd", "containerd", "containerd-shim-runc-v2", "runc", "ctr", tool("crictl"), tool("netns-exec"))
	for _, img := range []string{"pause.oci.tar", "busybox.oci.tar"} {
		if _, err := os.Stat(image(img)); err != nil {
			need(t, "containerd", image(img))
		}
	}
	dir := workDir(t, "ctd")
	c := &containerd{t: t, node: node, dir: dir, sock: filepath.Join(dir, "containerd.sock"),
		ctrP: paths[3], crictlP: paths[4], state: filepath.Join(dir, "cni-state")}
	c.cniBin, c.spyLog = pluginDir(t, dir)
	c.conf = conflist(t, conflistSrc, c.state)
	for _, d := range []string{"net.d", "logs", "runc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "net.d", "10-vxvrf.conflist"), c.conf, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(containerdConfig, "{{dir}}", dir)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	done := timed(t, "containerd start (daemon, image import, CRI network ready)")
	c.cmd = nodeCmd(context.Background(), node, paths[0], "--config", filepath.Join(dir, "config.toml"))
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = c.cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() { c.stop(exited) })

	if err := eventually(30*time.Second, func() error {
		select {
		case <-exited:
			return nil
		default:
		}
		_, err := run(exec.Command(c.ctrP, "-a", c.sock, "version"))
		return err
	}); err != nil {
		t.Fatalf("containerd did not come up: %v\n%s", err, c.log())
	}
	select {
	case <-exited:
		t.Fatalf("containerd exited:\n%s", c.log())
	default:
	}
	for _, img := range []string{"pause.oci.tar", "busybox.oci.tar"} {
		// ctr unpacks (mounts) in its own private mount namespace.
		if _, err := run(nodeCmd(context.Background(), node, c.ctrP, "-a", c.sock, "-n", "k8s.io", "images", "import", image(img))); err != nil {
			t.Fatalf("import %s: %v", img, err)
		}
	}
	if err := eventually(30*time.Second, func() error {
		var info struct {
			Status struct {
				Conditions []struct {
					Type    string `json:"type"`
					Status  bool   `json:"status"`
					Message string `json:"message"`
				} `json:"conditions"`
			} `json:"status"`
		}
		out, err := c.crictl("info")
		if err != nil {
			return err
		}
		if err := json.Unmarshal(out, &info); err != nil {
			return err
		}
		for _, cond := range info.Status.Conditions {
			if cond.Type == "NetworkReady" && !cond.Status {
				return fmt.Errorf("NetworkReady false: %s", cond.Message)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("CRI network not ready: %v\n%s", err, c.log())
	}
	done()
	return c
}

// log is containerd's log (the tail).
func (c *containerd) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "containerd.log"))
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// crictl runs crictl against this containerd, in the node namespace: the
// CRI streaming server (exec, attach) listens on the node's 127.0.0.1.
func (c *containerd) crictl(args ...string) ([]byte, error) {
	ep := "unix://" + c.sock
	full := append([]string{"netns", "exec", c.node.Name, c.crictlP, "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)
	return run(exec.Command("ip", full...))
}

// mustCrictl is crictl that fails the test on error; it returns trimmed stdout.
func (c *containerd) mustCrictl(args ...string) string {
	c.t.Helper()
	out, err := c.crictl(args...)
	if err != nil {
		c.t.Fatalf("%v\ncontainerd log:\n%s", err, c.log())
	}
	return strings.TrimSpace(string(out))
}

// stop removes every pod left, stops containerd and the shims it started.
func (c *containerd) stop(exited chan struct{}) {
	if out, err := c.crictl("pods", "-q"); err == nil {
		for _, p := range strings.Fields(string(out)) {
			_, _ = c.crictl("stopp", p)
			_, _ = c.crictl("rmp", "-f", p)
		}
	}
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = c.cmd.Process.Kill()
			<-exited
		}
	}
	// shims outlive containerd by design; end the ones of this instance
	// (their command line names our socket's directory).
	for _, pid := range pidsWithArg(c.dir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// pidsWithArg lists processes whose command line contains s.
func pidsWithArg(s string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, pid)
		}
	}
	return out
}

// pod is a CRI pod sandbox.
type pod struct {
	name, id string
	pid      int
	ip       net.IP
	ips      []net.IP
}

// runPod starts a sandbox (crictl runp) and inspects it.
func (c *containerd) runPod(name string, hostPort int) *pod {
	c.t.Helper()
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "e2e", "uid": name + "-uid", "attempt": 0},
		"hostname":      name,
		"log_directory": filepath.Join(c.dir, "logs", name),
		"labels":        map[string]string{"vxvrf-e2e": "1"},
		"annotations":   map[string]string{"kubernetes.io/ingress-bandwidth": "10M", "vxvrf.example/note": "hello"},
		"dns_config":    map[string]any{"servers": []string{"10.96.0.10"}, "searches": []string{"e2e.svc.cluster.local"}, "options": []string{"ndots:5"}},
		"port_mappings": []map[string]any{{"protocol": 0, "container_port": 80, "host_port": hostPort}},
		"linux":         map[string]any{},
	}
	path := filepath.Join(c.dir, name+"-pod.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
	done := timed(c.t, "crictl runp "+name)
	id := c.mustCrictl("runp", path)
	done()
	p := &pod{name: name, id: id}
	var insp struct {
		Status struct {
			Network struct {
				IP            string `json:"ip"`
				AdditionalIPs []struct {
					IP string `json:"ip"`
				} `json:"additionalIps"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(c.mustCrictl("inspectp", id)), &insp); err != nil {
		c.t.Fatalf("inspectp %s: %v", name, err)
	}
	p.pid = insp.Info.Pid
	p.ip = net.ParseIP(insp.Status.Network.IP)
	p.ips = append(p.ips, p.ip)
	for _, a := range insp.Status.Network.AdditionalIPs {
		p.ips = append(p.ips, net.ParseIP(a.IP))
	}
	return p
}

// startContainer runs a busybox container that sleeps in the pod.
func (c *containerd) startContainer(p *pod) string {
	c.t.Helper()
	cfg := map[string]any{
		"metadata": map[string]any{"name": "box"},
		"image":    map[string]any{"image": busyboxImage},
		"command":  []string{"sleep", "3600"},
		"log_path": "box.log",
		"linux":    map[string]any{},
	}
	path := filepath.Join(c.dir, p.name+"-ctr.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
	id := c.mustCrictl("create", p.id, path, filepath.Join(c.dir, p.name+"-pod.json"))
	c.mustCrictl("start", id)
	return id
}

// podAddrs lists the global addresses on eth0 inside the pod (through the
// sandbox process's netns: the netns mount lives in containerd's private
// mount namespace).
func podAddrs(t *testing.T, pid int) []net.IP {
	t.Helper()
	out, err := run(exec.Command("nsenter", "-t", strconv.Itoa(pid), "-n", "ip", "-o", "addr", "show", "dev", "eth0", "scope", "global"))
	if err != nil {
		t.Fatalf("pod addresses: %v", err)
	}
	var ips []net.IP
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" || f[i] == "inet6" {
				if ip, _, err := net.ParseCIDR(f[i+1]); err == nil {
					ips = append(ips, ip)
				}
			}
		}
	}
	return ips
}

func containsIP(list []net.IP, ip net.IP) bool {
	for _, x := range list {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}

// TestContainerdCRI: containerd 1.6's CRI runs the default chain for two pod
// sandboxes in a node namespace; a busybox container in one reaches the
// other and the gateway, inspectp reports the address, and stopp + rmp
// (two DELs, the second with an empty netns) leave nothing of them.
func TestContainerdCRI(t *testing.T) {
	need(t, "containerd", "containerd")
	_, node := testutil.NewNode(t, "e2ctd")
	c := startContainerd(t, node, testutil.DefaultConflist(t))

	a := c.runPod("e2e-a", 18090)
	b := c.runPod("e2e-b", 18091)
	for _, p := range []*pod{a, b} {
		if p.ip == nil || !podNet4.Contains(p.ip) {
			t.Fatalf("inspectp %s: ip %v, want one in %v", p.name, p.ip, podNet4)
		}
		have := podAddrs(t, p.pid)
		for _, ip := range p.ips {
			if !containsIP(have, ip) {
				t.Errorf("%s: inspectp reports %v, the pod's eth0 has %v", p.name, ip, have)
			}
		}
		if len(p.ips) < 2 || !podNet6.Contains(p.ips[1]) {
			t.Errorf("%s: inspectp additionalIps %v, want an address in %v (dual stack)", p.name, p.ips[1:], podNet6)
		}
	}
	if a.ip.Equal(b.ip) {
		t.Fatalf("both pods got %v", a.ip)
	}

	ctr := c.startContainer(a)
	for _, dst := range []string{b.ip.String(), gw4} {
		if out, err := c.crictl("exec", ctr, "ping", "-c", "2", "-W", "1", dst); err != nil {
			t.Errorf("container in %s cannot reach %s: %v %s", a.name, dst, err, out)
		}
	}
	if len(b.ips) > 1 {
		if out, err := c.crictl("exec", ctr, "ping", "-c", "2", "-W", "1", b.ips[1].String()); err != nil {
			t.Errorf("container in %s cannot reach %s over IPv6: %v %s", a.name, b.ips[1], err, out)
		}
	}
	for _, p := range []*pod{a, b} {
		if err := pingFrom(node.NS, p.ip.String()); err != nil {
			t.Errorf("node cannot reach %s: %v", p.name, err)
		}
	}

	// What containerd sent and what the chain answered.
	all := calls(t, c.spyLog)
	for _, p := range []*pod{a, b} {
		expectArgs(t, all, p.id, "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID", "IgnoreUnknown")
		adds := callsFor(all, p.id, "ADD")
		if len(adds) == 0 {
			t.Fatalf("no ADD for %s", p.name)
		}
		r := finalResult(t, all, p.id)
		ips := checkFinalResult(t, r, adds[0].NetNS)
		if !containsIP(ips, p.ip) {
			t.Errorf("%s: final result addresses %v do not hold the CRI's %v", p.name, ips, p.ip)
		}
		for _, cl := range adds {
			rc := cl.runtimeConfig()
			for _, k := range []string{"portMappings", "bandwidth", "dns", "io.kubernetes.cri.pod-annotations"} {
				if _, ok := rc[k]; !ok {
					t.Errorf("%s ADD of %s: runtimeConfig has no %s: %s", cl.Plugin, p.name, k, cl.Stdin)
				}
			}
			if pm := string(rc["portMappings"]); !strings.Contains(pm, `"HostPort"`) {
				t.Errorf("%s: portMappings not in containerd's capitalised form: %s", cl.Plugin, pm)
			}
		}
	}
	t.Logf("containerd ADD to the first stage of %s: env args %q, stdin %s", a.name, callsFor(all, a.id, "ADD")[0].Args, callsFor(all, a.id, "ADD")[0].Stdin)

	// stopp + rmp: DEL twice, the second with CNI_NETNS="".
	for _, p := range []*pod{a, b} {
		done := timed(t, "crictl stopp+rmp "+p.name)
		c.mustCrictl("stopp", p.id)
		c.mustCrictl("rmp", p.id)
		done()
	}
	all = calls(t, c.spyLog)
	if f := failedCalls(all); len(f) > 0 {
		t.Errorf("plugin calls that failed:\n%s", strings.Join(f, "\n"))
	}
	var atts []chain.Attachment
	for _, p := range []*pod{a, b} {
		dels := callsFor(all, p.id, "DEL")
		empty := 0
		for _, d := range dels {
			if d.NetNS == "" {
				empty++
			}
		}
		if len(dels) < 2*len(testutil.Plugins) || empty < len(testutil.Plugins) {
			t.Errorf("%s: %d DEL calls (%d with an empty netns), want two rounds, one with an empty netns", p.name, len(dels), empty)
		}
		atts = append(atts, chain.Attachment{RT: chain.RuntimeConf{ContainerID: p.id, IfName: "eth0"}, IPs: p.ips})
	}
	if left := attachmentLeftovers(t, node, c.conf, c.state, atts); len(left) > 0 {
		t.Errorf("left behind after stopp+rmp:\n%s", strings.Join(left, "\n"))
	}
}
