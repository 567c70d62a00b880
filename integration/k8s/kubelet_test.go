//go:build k8s

package k8s

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// Images scripts/e2e-setup.sh builds (nothing is pulled).
const (
	pauseImage   = "localhost/vxvrf-e2e-pause:1.0"
	busyboxImage = "localhost/vxvrf-e2e-busybox:latest"
)

func e2eTool(name string) string  { return filepath.Join(prefix(), "bin", name) }
func e2eImage(name string) string { return filepath.Join(prefix(), "images", name) }

// hostSysctls are the host-wide (not per-netns) sysctls a kubelet sets at
// start; they are saved before and restored after.
var hostSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops"}

func saveHostState(t *testing.T) {
	t.Helper()
	saved := map[string][]byte{}
	for _, k := range hostSysctls {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			saved[k] = b
		}
	}
	t.Cleanup(func() {
		for k, v := range saved {
			if b, _ := os.ReadFile("/proc/sys/" + k); string(b) != string(v) {
				t.Logf("restoring host sysctl %s=%s", k, strings.TrimSpace(string(v)))
				if err := os.WriteFile("/proc/sys/"+k, v, 0o644); err != nil {
					t.Errorf("restore %s: %v", k, err)
				}
			}
		}
	})
}

// nodePaths are the fixed paths a node's containerd, kubelet and the CNI
// plugins (and so the DaemonSet's hostPath volumes) use. In each kubelet
// node's own mount namespace they are bind mounts of that node's
// directories, so the nodes share nothing but the host's binaries.
var nodePaths = []string{
	"/opt/cni/bin", "/etc/cni/net.d", // the runtime's CNI dirs, the agent's hostPaths
	"/run/vxvrf",   // the plugins' stateDir and IPAM dataDir
	"/var/lib/cni", // libcni's result cache
	"/var/lib/kubelet", "/var/log/pods", "/var/log/containers",
	"/run/containerd", // containerd 1.6 puts its shim sockets under it, whatever the config says
}

// mountPoints makes sure every node path exists on the host as an (empty)
// directory to bind over, inside the nodes' namespaces only; what it had
// to create is removed again when the test ends.
func mountPoints(t *testing.T) {
	t.Helper()
	var created []string
	for _, p := range nodePaths {
		// The topmost missing ancestor is what gets removed afterwards.
		missing := ""
		for d := p; d != "/"; d = filepath.Dir(d) {
			if _, err := os.Lstat(d); errors.Is(err, os.ErrNotExist) {
				missing = d
			}
		}
		if missing == "" {
			continue
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		for d := p; ; d = filepath.Dir(d) {
			created = append(created, d)
			if d == missing {
				break
			}
		}
	}
	t.Cleanup(func() {
		// Deepest first. One that is not empty now is someone else's too
		// (another test on this machine): it stays.
		for _, d := range created {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Logf("mount point %s stays: %v", d, err)
			}
		}
	})
}

// sweepShims kills what an earlier run killed hard (a go test timeout, so
// no cleanup ran) left behind: containerd shims of this package's kubelet
// nodes, found by their -address under a test temp dir, whose containerd
// is gone (its socket refuses connections), and their containers. Shims of
// a run in progress are left alone. That run's temp dir goes too; the
// namespaces go with netsim.Sweep.
func sweepShims(t *testing.T) {
	t.Helper()
	stale := map[string]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.HasSuffix(args[0], "containerd-shim-runc-v2") {
			continue
		}
		i := slices.Index(args, "-address")
		if i < 0 || i+1 >= len(args) {
			continue
		}
		sock := args[i+1]
		if !strings.HasPrefix(sock, filepath.Join(os.TempDir(), "Test")) || !strings.HasSuffix(sock, "/containerd/containerd.sock") {
			continue
		}
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			continue
		}
		children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		for _, f := range strings.Fields(string(children)) {
			if c, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(c, syscall.SIGKILL)
			}
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Logf("killed shim %d of an earlier run (%s)", pid, sock)
		// That run's temp dir: /tmp/TestX123/001/node-1/containerd/containerd.sock.
		stale[filepath.Join(os.TempDir(), strings.Split(strings.TrimPrefix(sock, os.TempDir()+"/"), "/")[0])] = true
	}
	for d := range stale {
		time.Sleep(200 * time.Millisecond) // the killed shims release their files
		if err := os.RemoveAll(d); err != nil {
			t.Logf("remove %s of an earlier run: %v", d, err)
		}
	}
}

const containerdConfig = `version = 2
root = "%[1]s/root"
state = "%[1]s/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "%[1]s/containerd.sock"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "` + pauseImage + `"
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "/etc/cni/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "%[1]s/runc"
  [plugins."io.containerd.internal.v1.opt"]
    path = "%[1]s/opt"
`

// kubeletConfig: cgroupfs without QoS cgroups (no systemd here), and
// failCgroupV1: false, since this machine has cgroup v1, which a v1.35
// kubelet refuses by default. The crash-loop back-off is capped at 1 s so
// that the agent, killed over and over by the fault test, comes back at
// once (a node setting, beta and on by default in v1.35); syncFrequency
// 10 s (default 1 min) lets a ConfigMap edit reach the pods' volumes sooner.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
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
containerRuntimeEndpoint: unix://%s
crashLoopBackOff:
  maxContainerRestartPeriod: 1s
syncFrequency: 10s
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
evictionHard:
  memory.available: "0%%"
  nodefs.available: "0%%"
  imagefs.available: "0%%"
  nodefs.inodesFree: "0%%"
`

// kubeletNode is a lab node with its own network namespace and its own
// mount namespace (held by a sleeping process), in which the fixed paths
// (nodePaths) are bind mounts of the node's directories under root. Its
// containerd, kubelet and kube-proxy run inside both namespaces, and so do
// the pods the kubelet starts: a hostPath is the node's own.
type kubeletNode struct {
	*netsim.Node
	name   string
	root   string
	sock   string // containerd's socket (outside the fixed paths)
	holder *proc
	mnt    string // /proc/<holder>/ns/mnt
	procs  []*proc
	kubelet,
	containerd *proc
	stopOnce sync.Once
	stopErrs []string
}

// host is where path p of the node is on the host (its bind source).
func (k *kubeletNode) host(p string) string { return filepath.Join(k.root, "fs", p) }

// enter prefixes argv with an nsenter into the node's namespaces.
func (k *kubeletNode) enter(argv ...string) []string {
	return append([]string{"nsenter", "--mount=" + k.mnt, "--net=" + k.Path, "--"}, argv...)
}

// run runs argv inside the node, returning its combined output.
func (k *kubeletNode) run(argv ...string) ([]byte, error) {
	full := k.enter(argv...)
	out, err := exec.Command(full[0], full[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %s: %w: %s", k.name, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func (k *kubeletNode) crictl(args ...string) ([]byte, error) {
	return k.run(append([]string{e2eTool("crictl"), "-r", "unix://" + k.sock}, args...)...)
}

// startMountNS starts the process holding the node's mount namespace: in
// the node's netns, it unshares a private mount namespace, mounts the
// netns's own sysfs (with the host's cgroup mounts put back on it, as
// ip netns exec would), binds every node path to the node's directory, and
// sleeps. Nothing is mounted in the host's mount namespace.
func (k *kubeletNode) startMountNS(t *testing.T) {
	t.Helper()
	cgroups, err := exec.Command("findmnt", "-rn", "-R", "/sys/fs/cgroup", "-o", "TARGET,FSTYPE,OPTIONS").Output()
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(k.root, "mountns.ready")
	script := `set -eu
mount -t sysfs sysfs /sys
printf '%s\n' "$CGROUPS" | while read -r target fstype opts; do
  [ -n "$target" ] || continue
  mkdir -p "$target" 2>/dev/null || true
  mount -t "$fstype" -o "$opts" "$fstype" "$target"
done
while [ $# -ge 2 ]; do mount --bind "$1" "$2"; shift 2; done
touch "$READY"
exec sleep infinity`
	argv := []string{"nsenter", "--net=" + k.Path, "--", "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"}
	for _, p := range nodePaths {
		if err := os.MkdirAll(k.host(p), 0o755); err != nil {
			t.Fatal(err)
		}
		argv = append(argv, k.host(p), p)
	}
	k.holder = spawn(t, k.root, "mountns", []string{"CGROUPS=" + string(cgroups), "READY=" + ready}, argv)
	eventually(t, 10*time.Second, k.name+" mount namespace", func() error {
		if k.holder.Exited() {
			t.Fatalf("%s mount namespace holder exited:\n%s", k.name, k.holder.tail())
		}
		_, err := os.Stat(ready)
		return err
	})
	k.mnt = fmt.Sprintf("/proc/%d/ns/mnt", k.holder.cmd.Process.Pid)
	own, _ := os.Readlink("/proc/self/ns/mnt")
	if l, err := os.Readlink(k.mnt); err != nil || l == own {
		t.Fatalf("%s: mount namespace %q (%v) is the host's", k.name, l, err)
	}
}

// start runs argv inside the node's namespaces, logging to root/name.log;
// stop ends it.
func (k *kubeletNode) start(t *testing.T, name string, argv ...string) *proc {
	t.Helper()
	p := spawn(t, k.root, name, nil, k.enter(argv...))
	k.procs = append(k.procs, p)
	return p
}

// stop tears the node down: kube-proxy and the kubelet stop, every pod is
// removed through the CRI (the chain's DEL, while containerd is up), then
// containerd stops, any process still in the node's mount namespace (a
// shim, a container) is killed, and the holder goes, which drops the
// namespace and every mount in it. Idempotent; problems are returned.
func (k *kubeletNode) stop() []string {
	k.stopOnce.Do(func() {
		for i := len(k.procs) - 1; i >= 0; i-- {
			if p := k.procs[i]; p != k.containerd {
				p.Stop(syscall.SIGTERM)
			}
		}
		if k.containerd != nil && !k.containerd.Exited() {
			if out, err := k.crictl("rmp", "-a", "-f"); err != nil {
				k.stopErrs = append(k.stopErrs, fmt.Sprintf("crictl rmp -af: %v %s", err, out))
			}
			k.containerd.Stop(syscall.SIGTERM)
		}
		if k.holder == nil {
			return
		}
		// The shims of removed pods exit on their own, shortly.
		for deadline := time.Now().Add(5 * time.Second); len(k.inMountNS()) > 0 && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
		}
		if left := k.killMountNS(); len(left) > 0 {
			k.stopErrs = append(k.stopErrs, fmt.Sprintf("processes left in the mount namespace, killed: %v", left))
		}
		k.holder.Stop(syscall.SIGKILL)
	})
	return k.stopErrs
}

// inMountNS are the processes in the node's mount namespace but the
// holder, and the containers those processes (shims) are parents of.
func (k *kubeletNode) inMountNS() []int {
	mnt, err := os.Readlink(k.mnt)
	if err != nil {
		return nil
	}
	holder := k.holder.cmd.Process.Pid
	ents, _ := os.ReadDir("/proc")
	in := map[int]bool{}
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); l == mnt && pid != holder {
			in[pid] = true
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			// pid (comm) state ppid ...
			if i := strings.LastIndexByte(string(b), ')'); i > 0 {
				if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
					parent[pid], _ = strconv.Atoi(f[1])
				}
			}
		}
	}
	var out []int
	for pid, pp := range parent {
		if in[pid] || in[pp] {
			out = append(out, pid)
		}
	}
	return out
}

// killMountNS SIGKILLs inMountNS and returns their command names.
func (k *kubeletNode) killMountNS() []string {
	var names []string
	for _, pid := range k.inMountNS() {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		names = append(names, fmt.Sprintf("%d:%s", pid, strings.TrimSpace(string(comm))))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return names
}

// startKubeletNode brings lab node i up as Kubernetes node name: its mount
// namespace, containerd with the images imported (the vxvrf image archives
// too), the kubelet (as system:node:<name>) and kube-proxy. The reference
// loopback plugin, which containerd 1.x runs for every pod, goes into its
// /opt/cni/bin, as a CNI plugins package would put it there.
func (c *dsCluster) startKubeletNode(t *testing.T, i int, name string) *kubeletNode {
	t.Helper()
	k := &kubeletNode{Node: c.lab.Nodes[i], name: name, root: filepath.Join(c.dir, name)}
	k.sock = filepath.Join(k.root, "containerd", "containerd.sock")
	if err := os.MkdirAll(filepath.Dir(k.sock), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, e := range k.stop() {
			t.Errorf("%s: %s", name, e)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append([]*proc{k.holder}, k.procs...) {
				if p != nil {
					t.Logf("%s %s log:\n%s", name, p.name, p.tail())
				}
			}
		}
	})
	k.startMountNS(t)
	lo, err := os.ReadFile(filepath.Join(testutil.ReferencePlugins(t, "loopback"), "loopback"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.host("/opt/cni/bin"), "loopback"), lo, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(k.root, "containerd.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(containerdConfig, filepath.Dir(k.sock))), 0o644); err != nil {
		t.Fatal(err)
	}
	k.containerd = k.start(t, "containerd", "containerd", "--config", cfg)
	eventually(t, 30*time.Second, name+" containerd socket", func() error {
		if k.containerd.Exited() {
			t.Fatalf("containerd exited:\n%s", k.containerd.tail())
		}
		_, err := os.Stat(k.sock)
		return err
	})
	for _, img := range append([]string{e2eImage("pause.oci.tar"), e2eImage("busybox.oci.tar")}, c.imageTars...) {
		if out, err := k.run("ctr", "-a", k.sock, "-n", "k8s.io", "images", "import", img); err != nil {
			t.Fatalf("import %s: %v %s", img, err, out)
		}
	}
	cert, key := c.cp.PKI.issue(t, "kubelet-"+name, "system:node:"+name, []string{"system:nodes"}, nil, nil)
	kc := c.cp.kubeconfig(t, "kubelet-"+name, &clientcmdapi.AuthInfo{ClientCertificate: cert, ClientKey: key})
	kcfg := filepath.Join(k.root, "kubelet.yaml")
	if err := os.WriteFile(kcfg, []byte(fmt.Sprintf(kubeletConfig, k.sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	k.kubelet = k.start(t, "kubelet", k8sBin("kubelet"), "--config="+kcfg, "--kubeconfig="+kc,
		"--hostname-override="+name, "--node-ip="+k.Addr.String(), "-v=1")
	// kube-proxy in iptables mode, the default.
	k.start(t, "kube-proxy", k8sBin("kube-proxy"),
		"--kubeconfig="+c.cp.AdminFile, "--hostname-override="+name, "--proxy-mode=iptables",
		"--cluster-cidr="+clusterCIDRs, "--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256")
	return k
}

// waitReady waits until the node's Ready condition is want; with want
// false, also that the kubelet blames the missing CNI config.
func (c *dsCluster) waitReady(t *testing.T, k *kubeletNode, want bool) {
	t.Helper()
	eventually(t, 2*time.Minute, fmt.Sprintf("%s Ready=%v", k.name, want), func() error {
		if k.kubelet.Exited() {
			t.Fatalf("kubelet exited:\n%s", k.kubelet.tail())
		}
		node, err := c.cp.Admin.CoreV1().Nodes().Get(context.Background(), k.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready, msg := nodeReady(node)
		if ready == want && (want || strings.Contains(strings.ToLower(msg), "cni")) {
			return nil
		}
		return fmt.Errorf("Ready=%v: %s (podCIDRs %v)", ready, msg, node.Spec.PodCIDRs)
	})
}

func nodeReady(n *corev1.Node) (bool, string) {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, c.Message
		}
	}
	return false, "no Ready condition yet"
}
