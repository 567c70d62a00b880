//go:build k8s

package k8s

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Images scripts/e2e-setup.sh builds (nothing is pulled).
const pauseImage = "localhost/vxvrf-e2e-pause:1.0"

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
	// Fixed host paths of the kubelet and containerd, whatever --root-dir says.
	var created []string
	for _, d := range []string{"/var/log/pods", "/var/lib/kubelet"} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			created = append(created, d)
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
		for _, d := range created {
			os.RemoveAll(d)
		}
	})
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
      bin_dir = "%[2]s"
      conf_dir = "%[3]s"
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
// kubelet refuses by default.
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
containerRuntimeEndpoint: unix://%s/containerd.sock
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

// TestKubeletNodeBecomesReady: a real kubelet v1.35 on Debian's containerd
// 1.6 registers its Node, the real kube-controller-manager allocates the
// node's pod CIDR, the agent renders the conflist into the directory
// containerd watches, and the node turns Ready: NotReady until then.
func TestKubeletNodeBecomesReady(t *testing.T) {
	need(t, k8sBin("kubelet"), k8sBin("kube-controller-manager"), "containerd", "ctr", e2eTool("netns-exec"), e2eImage("pause.oci.tar"))
	s := newSetup(t, 1)
	saveHostState(t)
	ctx := context.Background()
	startArgv(t, s.cp.Dir, "kube-controller-manager", nil, []string{"ip", "netns", "exec", s.lab.Router.Name, k8sBin("kube-controller-manager"),
		"--kubeconfig=" + s.cp.AdminFile, "--leader-elect=false", "--controllers=nodeipam",
		"--allocate-node-cidrs=true", "--cluster-cidr=10.244.0.0/16", "--node-cidr-mask-size=24",
		"--service-cluster-ip-range=10.96.0.0/16", "--bind-address=127.0.0.1", "--secure-port=10257"})
	n := s.node(t, 0, "node-1")
	dir := filepath.Join(n.root, "node")
	for _, d := range []string{dir, n.binDir(), n.confDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "containerd.toml"), []byte(fmt.Sprintf(containerdConfig, dir, n.binDir(), n.confDir())), 0o644)
	ctrd := startArgv(t, dir, "containerd", nil, []string{e2eTool("netns-exec"), n.NS.Name, "containerd", "--config", filepath.Join(dir, "containerd.toml")})
	sock := filepath.Join(dir, "containerd.sock")
	eventually(t, 30*time.Second, "containerd socket", func() error { _, err := os.Stat(sock); return err })
	if out, err := n.In("ctr", "-a", sock, "-n", "k8s.io", "images", "import", e2eImage("pause.oci.tar")); err != nil {
		t.Fatalf("import pause: %v %s", err, out)
	}
	t.Cleanup(func() { ctrd.Stop(9) })

	// The kubelet authenticates as system:node:node-1.
	cert, key := s.cp.PKI.issue(t, "kubelet-node-1", "system:node:node-1", []string{"system:nodes"}, nil, nil)
	kc := s.cp.kubeconfig(t, "kubelet-node-1", &clientcmdapi.AuthInfo{ClientCertificate: cert, ClientKey: key})
	os.WriteFile(filepath.Join(dir, "kubelet.yaml"), []byte(fmt.Sprintf(kubeletConfig, dir)), 0o644)
	n.startAgent(t, s.dir)
	kubelet := startArgv(t, dir, "kubelet", nil, []string{e2eTool("netns-exec"), n.NS.Name, k8sBin("kubelet"),
		"--config=" + filepath.Join(dir, "kubelet.yaml"), "--kubeconfig=" + kc,
		"--root-dir=" + filepath.Join(dir, "kubelet"), "--cert-dir=" + filepath.Join(dir, "pki"),
		"--hostname-override=node-1", "--node-ip=" + n.Addr.String(), "-v=1"})
	t.Cleanup(func() { kubelet.Stop(15) })

	var notReadySeen bool
	took := eventually(t, 2*time.Minute, "node-1 Ready", func() error {
		if kubelet.Exited() {
			t.Fatalf("kubelet exited:\n%s", kubelet.tail())
		}
		node, err := s.cp.Admin.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type != corev1.NodeReady {
				continue
			}
			if c.Status == corev1.ConditionTrue {
				return nil
			}
			notReadySeen = true
			return fmt.Errorf("Ready=%s: %s (podCIDRs %v)", c.Status, c.Message, node.Spec.PodCIDRs)
		}
		return fmt.Errorf("no Ready condition yet")
	})
	t.Logf("kubelet v1.35 on containerd 1.6: node-1 Ready %s after the kubelet started", took.Round(time.Millisecond))
	node, err := s.cp.Admin.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !notReadySeen {
		t.Error("the node was never seen NotReady before the conflist existed")
	}
	local, _, rangeStart, err := n.rendered()
	if err != nil {
		t.Fatal(err)
	}
	_, cidr, _ := net.ParseCIDR(node.Spec.PodCIDRs[0])
	if local != n.Addr.String() || !cidr.Contains(net.ParseIP(rangeStart)) {
		t.Errorf("conflist local %s rangeStart %s; node InternalIP %s, podCIDRs %v", local, rangeStart, n.Addr, node.Spec.PodCIDRs)
	}
	if v := node.Status.NodeInfo.ContainerRuntimeVersion; !strings.HasPrefix(v, "containerd://1.6") || node.Status.NodeInfo.KubeletVersion != Version {
		t.Errorf("runtime %s kubelet %s", v, node.Status.NodeInfo.KubeletVersion)
	}
}
