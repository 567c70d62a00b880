//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// kubeletSysctls are the host (not per-netns) sysctls the kubelet sets at
// start (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1
// seen here; the others are on its list too). The test saves and restores
// them.
var kubeletSysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// saveSysctls snapshots keys and restores them when the test ends (it
// must be registered before the kubelet starts, so it runs after it stops),
// then checks the restore took.
func saveSysctls(t *testing.T, keys []string) {
	t.Helper()
	saved := map[string]string{}
	for _, k := range keys {
		if b, err := os.ReadFile(sysctlPath(k)); err == nil {
			saved[k] = strings.TrimSpace(string(b))
		}
	}
	t.Cleanup(func() {
		for k, v := range saved {
			b, err := os.ReadFile(sysctlPath(k))
			if err == nil && strings.TrimSpace(string(b)) == v {
				continue
			}
			t.Logf("restoring host sysctl %s=%s (the kubelet set %s)", k, v, strings.TrimSpace(string(b)))
			if err := os.WriteFile(sysctlPath(k), []byte(v), 0o644); err != nil {
				t.Errorf("restore host sysctl %s=%s: %v", k, v, err)
			}
		}
	})
}

// kubeletVersion is the Kubernetes release scripts/k8s-setup.sh builds
// (K8S_VERSION there, Version in integration/k8s): one version for the
// whole test command. v1.35 is the last release whose kubelet runs on
// containerd 1.x (Debian's 1.6); v1.36 needs containerd 2.
const kubeletVersion = "v1.35.4"

// kubeletBin is the kubelet scripts/k8s-setup.sh built and cached.
func kubeletBin() string { return filepath.Join(prefix(), "k8s", kubeletVersion, "bin", "kubelet") }

// kubeletConfig: standalone (no API server), static pods only, cgroupfs,
// no QoS cgroups or node allocatable (no systemd, hybrid cgroups), no
// iptables util chains, anonymous and AlwaysAllow on the node's 127.0.0.1.
// failCgroupV1: false, since this machine has cgroup v1, which a v1.35
// kubelet refuses by default. The sandbox (pause) image is containerd's
// sandbox_image: a v1.35 kubelet has no --pod-infra-container-image.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: {{dir}}/manifests
fileCheckFrequency: 1s
syncFrequency: 10s
containerRuntimeEndpoint: unix://{{sock}}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
makeIPTablesUtilChains: false
protectKernelDefaults: false
address: 127.0.0.1
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
evictionHard:
  memory.available: "0%"
  nodefs.available: "0%"
  imagefs.available: "0%"
  nodefs.inodesFree: "0%"
`

const staticPod = `apiVersion: v1
kind: Pod
metadata:
  name: e2e-static
  namespace: default
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: ` + busyboxImage + `
    imagePullPolicy: Never
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
`

// kubeletConflist is the conflist the installer in deploy/ renders for the
// node (its example cluster config), when the installer is there; else the
// default conflist.
func kubeletConflist(t *testing.T, node *netsim.Node, work string) []byte {
	t.Helper()
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	example := filepath.Join(root, "deploy", "examples", "single-node.json")
	if _, err := os.Stat(filepath.Join(root, "deploy", "installer", "main.go")); err != nil {
		t.Logf("no installer in deploy/: using conflist/vxvrf.conflist")
		return testutil.DefaultConflist(t)
	}
	if _, err := os.Stat(example); err != nil {
		t.Logf("no %s: using conflist/vxvrf.conflist", example)
		return testutil.DefaultConflist(t)
	}
	bin := filepath.Join(work, "vxvrf-installer")
	build := exec.Command("go", "build", "-o", bin, "./deploy/installer")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if _, err := run(build); err != nil {
		t.Fatalf("build the installer: %v", err)
	}
	out, err := run(exec.Command(bin, "--dry-run", "--config", example, "--node-name", "node1", "--node-ip", node.Addr.String()))
	if err != nil {
		t.Fatalf("installer --dry-run: %v", err)
	}
	t.Logf("conflist rendered by deploy/installer from %s", example)
	return out
}

// ipamRange is the first range of the lockfile-ipam stage: where pod
// addresses must come from, and the gateway.
func ipamRange(t *testing.T, conf []byte) (lo, hi net.IP, subnet *net.IPNet, gw net.IP) {
	t.Helper()
	var l struct {
		Plugins []struct {
			Type string `json:"type"`
			IPAM struct {
				Ranges [][]struct {
					Subnet, RangeStart, RangeEnd, Gateway string
				} `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(conf, &l); err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Plugins {
		if p.Type != "lockfile-ipam" || len(p.IPAM.Ranges) == 0 || len(p.IPAM.Ranges[0]) == 0 {
			continue
		}
		r := p.IPAM.Ranges[0][0]
		_, subnet, err := net.ParseCIDR(r.Subnet)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi, gw = net.ParseIP(r.RangeStart), net.ParseIP(r.RangeEnd), net.ParseIP(r.Gateway)
		if gw == nil {
			gw = make(net.IP, len(subnet.IP.To4()))
			copy(gw, subnet.IP.To4())
			gw[len(gw)-1]++
		}
		return lo, hi, subnet, gw
	}
	t.Fatal("no lockfile-ipam range in the conflist")
	return nil, nil, nil, nil
}

func ipBetween(ip, lo, hi net.IP) bool {
	a, l, h := ip.To16(), lo.To16(), hi.To16()
	return string(a) >= string(l) && string(a) <= string(h)
}

// TestKubeletStaticPod: a standalone kubelet v1.35 (the one
// scripts/k8s-setup.sh builds) on the private containerd 1.6, both in a
// node namespace, starts a static pod; it gets an address from the chain
// (conflist rendered by the installer) and the node reaches it; removing
// the manifest makes the kubelet stop the sandbox, whose DEL releases
// everything. The host sysctls the kubelet changes are restored.
func TestKubeletStaticPod(t *testing.T) {
	paths := need(t, "kubelet", kubeletBin(), "containerd")
	if out, err := run(exec.Command(paths[0], "--version")); err != nil || strings.TrimSpace(string(out)) != "Kubernetes "+kubeletVersion {
		t.Fatalf("%s --version: %q %v, want Kubernetes %s (run scripts/k8s-setup.sh)", paths[0], out, err, kubeletVersion)
	}
	_, node := testutil.NewNode(t, "e2kub")
	work := workDir(t, "kub")
	src := kubeletConflist(t, node, work)
	c := startContainerd(t, node, src)
	lo, hi, subnet, gw := ipamRange(t, c.conf)

	for _, d := range []string{"manifests", "root", "pki"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(work, "kubelet.yaml")
	if err := os.WriteFile(cfg, []byte(strings.NewReplacer("{{dir}}", work, "{{sock}}", c.sock).Replace(kubeletConfig)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The kubelet has fixed host paths: pod logs under /var/log/pods
	// (written by containerd) and their links in /var/log/containers, and
	// /var/lib/kubelet/device-plugins, whatever --root-dir says. Remove
	// what this test created there: a directory it created, else the
	// entries that were not there before.
	for _, d := range []string{"/var/log/pods", "/var/log/containers", "/var/lib/kubelet"} {
		before, err := os.ReadDir(d)
		if os.IsNotExist(err) {
			t.Cleanup(func() { _ = os.RemoveAll(d) })
			continue
		}
		had := map[string]bool{}
		for _, e := range before {
			had[e.Name()] = true
		}
		t.Cleanup(func() {
			after, _ := os.ReadDir(d)
			for _, e := range after {
				if !had[e.Name()] {
					_ = os.RemoveAll(filepath.Join(d, e.Name()))
				}
			}
		})
	}
	saveSysctls(t, kubeletSysctls)

	logf, err := os.Create(filepath.Join(work, "kubelet.log"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	k := nodeCmd(t.Context(), node, paths[0],
		"--config="+cfg, "--root-dir="+filepath.Join(work, "root"), "--cert-dir="+filepath.Join(work, "pki"),
		"--hostname-override=e2e-node", "-v=1")
	k.Stdout, k.Stderr = logf, logf
	k.Cancel = func() error { return k.Process.Signal(syscall.SIGTERM) }
	k.WaitDelay = 20 * time.Second
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = k.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = k.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = k.Process.Kill()
			<-exited
		}
	})
	kubeletLog := func() string {
		b, _ := os.ReadFile(filepath.Join(work, "kubelet.log"))
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		return string(b)
	}

	manifest := filepath.Join(work, "manifests", "e2e-static.yaml")
	if err := os.WriteFile(manifest, []byte(staticPod), 0o644); err != nil {
		t.Fatal(err)
	}
	// Wait for the kubelet to run the pod's container.
	var podID string
	if err := eventually(90*time.Second, func() error {
		select {
		case <-exited:
			return fmt.Errorf("kubelet exited")
		default:
		}
		out, err := c.crictl("ps", "-q", "--name", "web", "--state", "running")
		if err != nil {
			return fmt.Errorf("no running container yet: %w", err)
		}
		if strings.TrimSpace(string(out)) == "" {
			return errors.New("no running container yet")
		}
		p, err := c.crictl("pods", "-q", "--name", "e2e-static", "--state", "ready")
		podID = strings.TrimSpace(string(p))
		if err != nil {
			return fmt.Errorf("no ready sandbox yet: %w", err)
		}
		if podID == "" {
			return errors.New("no ready sandbox yet")
		}
		return nil
	}); err != nil {
		t.Fatalf("static pod did not start: %v\nkubelet log:\n%s\ncontainerd log:\n%s", err, kubeletLog(), c.log())
	}
	t.Logf("TIMING kubelet start to static pod running: %v", time.Since(start).Round(time.Millisecond))

	var insp struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(c.mustCrictl("inspectp", podID)), &insp); err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(insp.Status.Network.IP)
	if ip == nil || !subnet.Contains(ip) || (lo != nil && hi != nil && !ipBetween(ip, lo, hi)) {
		t.Fatalf("static pod IP %v, want one in %v (range %v-%v)", ip, subnet, lo, hi)
	}
	if err := pingFrom(node.NS, ip.String()); err != nil {
		t.Errorf("node cannot reach the static pod: %v", err)
	}
	if err := eventually(10*time.Second, func() error { return httpGet(node.NS, ip.String()+":80") }); err != nil {
		t.Errorf("node cannot fetch from the static pod: %v", err)
	}
	ctr := strings.Fields(c.mustCrictl("ps", "-q", "--pod", podID))
	if len(ctr) == 0 {
		t.Fatal("no container in the static pod")
	}
	if out, err := c.crictl("exec", ctr[0], "ping", "-c", "2", "-W", "1", gw.String()); err != nil {
		t.Errorf("static pod cannot reach its gateway %v: %v %s", gw, err, out)
	}
	all := calls(t, c.spyLog)
	expectArgs(t, all, podID, "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID")
	adds := callsFor(all, podID, "ADD")
	if len(adds) > 0 {
		ips := checkFinalResult(t, finalResult(t, all, podID), adds[0].NetNS)
		if !containsIP(ips, ip) {
			t.Errorf("final result %v does not hold the CRI's %v", ips, ip)
		}
		if a := string(adds[0].runtimeConfig()["io.kubernetes.cri.pod-annotations"]); !strings.Contains(a, "kubernetes.io/config.source") {
			t.Errorf("pod annotations from the kubelet lack kubernetes.io/config.source: %s", a)
		}
	}

	// Remove the manifest: the kubelet stops the sandbox (CNI DEL).
	done := timed(t, "kubelet: manifest removed to sandbox DEL done")
	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	if err := eventually(90*time.Second, func() error {
		all = calls(t, c.spyLog)
		seen := map[string]bool{}
		for _, d := range callsFor(all, podID, "DEL") {
			seen[d.Plugin] = true
		}
		if len(seen) < len(testutil.Plugins) {
			return fmt.Errorf("DEL reached %d of %d stages", len(seen), len(testutil.Plugins))
		}
		out, err := c.crictl("pods", "-q", "--id", podID, "--state", "ready")
		if err != nil {
			return fmt.Errorf("sandbox state: %w", err)
		}
		if strings.TrimSpace(string(out)) != "" {
			return errors.New("sandbox still ready")
		}
		return nil
	}); err != nil {
		t.Fatalf("the kubelet did not stop the static pod: %v\nkubelet log:\n%s", err, kubeletLog())
	}
	done()
	if f := failedCalls(all); len(f) > 0 {
		t.Errorf("plugin calls that failed:\n%s", strings.Join(f, "\n"))
	}
	atts := []chain.Attachment{{RT: chain.RuntimeConf{ContainerID: podID, IfName: "eth0"}, IPs: []net.IP{ip}}}
	if left := attachmentLeftovers(t, node, c.conf, c.state, atts); len(left) > 0 {
		t.Errorf("left behind after the manifest was removed:\n%s", strings.Join(left, "\n"))
	}
}
