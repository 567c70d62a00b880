//go:build k8s

package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
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
	// containerd's libcni keeps its result cache in /var/lib/cni (it cannot
	// be moved): every entry this test's pods made must be gone by DEL.
	before, _ := filepath.Glob("/var/lib/cni/results/vxvrf-*")
	t.Cleanup(func() {
		after, _ := filepath.Glob("/var/lib/cni/results/vxvrf-*")
		for _, f := range after {
			if !slices.Contains(before, f) {
				t.Errorf("libcni cache entry left: %s", f)
				os.Remove(f)
			}
		}
	})
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

// kubeletNode is a lab node with its own containerd and kubelet (and the
// agent), both writing and reading the node's own CNI directories.
type kubeletNode struct {
	*agentNode
	dir     string
	sock    string
	kubelet *proc
}

func (k *kubeletNode) crictl(args ...string) ([]byte, error) {
	return k.In(e2eTool("crictl"), append([]string{"-r", "unix://" + k.sock}, args...)...)
}

// startControllerManager runs kube-controller-manager in the control
// plane's namespace, allocating node pod CIDRs from 10.244.0.0/16.
func (s *setup) startControllerManager(t *testing.T) {
	t.Helper()
	start(t, s.lab.Router, s.cp.Dir, "kube-controller-manager", nil, k8sBin("kube-controller-manager"),
		"--kubeconfig="+s.cp.AdminFile, "--leader-elect=false", "--controllers=nodeipam,nodelifecycle,endpointslice,deployment,replicaset",
		"--allocate-node-cidrs=true", "--cluster-cidr=10.244.0.0/16", "--node-cidr-mask-size=24",
		"--service-cluster-ip-range=10.96.0.0/16", "--bind-address=127.0.0.1", "--secure-port=10257")
}

// startKubeletNode starts containerd (images imported) and the kubelet
// (as system:node:<name>) on lab node i; not yet the agent.
func (s *setup) startKubeletNode(t *testing.T, i int, name string) *kubeletNode {
	t.Helper()
	n := s.node(t, i, name)
	k := &kubeletNode{agentNode: n, dir: filepath.Join(n.root, "node")}
	k.sock = filepath.Join(k.dir, "containerd.sock")
	for _, d := range []string{k.dir, n.binDir(), n.confDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// containerd 1.x's CRI runs the reference "loopback" plugin from its
	// bin dir for every pod: a real node has it from its CNI plugins package.
	lo, err := os.ReadFile(filepath.Join(testutil.ReferencePlugins(t, "loopback"), "loopback"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.binDir(), "loopback"), lo, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(k.dir, "containerd.toml"), []byte(fmt.Sprintf(containerdConfig, k.dir, n.binDir(), n.confDir())), 0o644)
	ctrd := startArgv(t, k.dir, "containerd", nil, []string{e2eTool("netns-exec"), n.NS.Name, "containerd", "--config", filepath.Join(k.dir, "containerd.toml")})
	eventually(t, 30*time.Second, "containerd socket", func() error { _, err := os.Stat(k.sock); return err })
	for _, img := range []string{"pause.oci.tar", "busybox.oci.tar"} {
		if out, err := n.In("ctr", "-a", k.sock, "-n", "k8s.io", "images", "import", e2eImage(img)); err != nil {
			t.Fatalf("import %s: %v %s", img, err, out)
		}
	}
	cert, key := s.cp.PKI.issue(t, "kubelet-"+name, "system:node:"+name, []string{"system:nodes"}, nil, nil)
	kc := s.cp.kubeconfig(t, "kubelet-"+name, &clientcmdapi.AuthInfo{ClientCertificate: cert, ClientKey: key})
	os.WriteFile(filepath.Join(k.dir, "kubelet.yaml"), []byte(fmt.Sprintf(kubeletConfig, k.dir)), 0o644)
	k.kubelet = startArgv(t, k.dir, "kubelet", nil, []string{e2eTool("netns-exec"), n.NS.Name, k8sBin("kubelet"),
		"--config=" + filepath.Join(k.dir, "kubelet.yaml"), "--kubeconfig=" + kc,
		"--root-dir=" + filepath.Join(k.dir, "kubelet"), "--cert-dir=" + filepath.Join(k.dir, "pki"),
		"--hostname-override=" + name, "--node-ip=" + n.Addr.String(), "-v=1"})
	// Registered in this order, cleanups run in reverse: the kubelet
	// stops (and tears its pods down through the chain) before containerd.
	t.Cleanup(func() { ctrd.Stop(9) })
	// Pods outlive the kubelet and containerd (their shims): remove them
	// through the CRI, which runs the chain's DEL, while containerd is up.
	t.Cleanup(func() {
		if out, err := k.crictl("rmp", "-a", "-f"); err != nil {
			t.Errorf("%s: crictl rmp -af: %v %s", name, err, out)
		}
	})
	t.Cleanup(func() { k.kubelet.Stop(15) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s kubelet log:\n%s\n%s containerd log:\n%s", name, k.kubelet.tail(), name, ctrd.tail())
			if n.agent != nil {
				t.Logf("%s agent log:\n%s", name, n.agent.tail())
			}
		}
	})
	return k
}

// waitReady waits until the node's Ready condition is want; with want
// false, also that the kubelet blames the missing CNI config.
func (s *setup) waitReady(t *testing.T, k *kubeletNode, want bool) time.Duration {
	t.Helper()
	return eventually(t, 2*time.Minute, fmt.Sprintf("%s Ready=%v", k.name, want), func() error {
		if k.kubelet.Exited() {
			t.Fatalf("kubelet exited:\n%s", k.kubelet.tail())
		}
		node, err := s.cp.Admin.CoreV1().Nodes().Get(context.Background(), k.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type != corev1.NodeReady {
				continue
			}
			if (c.Status == corev1.ConditionTrue) == want && (want || strings.Contains(strings.ToLower(c.Message), "cni")) {
				return nil
			}
			return fmt.Errorf("Ready=%s: %s (podCIDRs %v)", c.Status, c.Message, node.Spec.PodCIDRs)
		}
		return fmt.Errorf("no Ready condition yet")
	})
}

// TestKubeletPodsAcrossNodes: real kubelets v1.35 on Debian's containerd
// 1.6 on two lab nodes register their Nodes, the real
// kube-controller-manager allocates their pod CIDRs, the agents render the
// conflists into the directories containerd watches, and the nodes turn
// Ready (NotReady until then). Pods bound to each node through the API get
// addresses from their node's pod CIDR and reach each other across VXLAN.
func TestKubeletPodsAcrossNodes(t *testing.T) {
	need(t, k8sBin("kubelet"), k8sBin("kube-controller-manager"), "containerd", "ctr", e2eTool("netns-exec"), e2eTool("crictl"),
		e2eImage("pause.oci.tar"), e2eImage("busybox.oci.tar"))
	s := newSetup(t, 3)
	saveHostState(t)
	ctx := context.Background()
	s.startControllerManager(t)
	nodes := []*kubeletNode{s.startKubeletNode(t, 0, "node-1"), s.startKubeletNode(t, 1, "node-2")}
	// Without the agent there is no conflist: the kubelet says so.
	for _, k := range nodes {
		s.waitReady(t, k, false)
		if fileExists(k.conflist()) {
			t.Fatalf("%s has a conflist before its agent ran", k.name)
		}
	}
	for _, k := range nodes {
		k.startAgent(t, s.dir)
	}
	for _, k := range nodes {
		took := s.waitReady(t, k, true)
		t.Logf("%s Ready %s after its agent started", k.name, took.Round(time.Millisecond))
		node, err := s.cp.Admin.CoreV1().Nodes().Get(ctx, k.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v := node.Status.NodeInfo.ContainerRuntimeVersion; !strings.HasPrefix(v, "containerd://1.6") || node.Status.NodeInfo.KubeletVersion != Version {
			t.Errorf("%s: runtime %s kubelet %s", k.name, v, node.Status.NodeInfo.KubeletVersion)
		}
	}

	// One pod per node, bound by nodeName (no scheduler needed here).
	if _, err := s.cp.Admin.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	no := false
	grace := int64(1)
	for _, k := range nodes {
		s.createPod(t, "pod-"+k.name, k.name)
	}
	ips := map[string]string{}
	for _, k := range nodes {
		node, _ := s.cp.Admin.CoreV1().Nodes().Get(ctx, k.name, metav1.GetOptions{})
		eventually(t, 40*time.Second, "pod on "+k.name+" running", func() error {
			p, err := s.cp.Admin.CoreV1().Pods("default").Get(ctx, "pod-"+k.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return fmt.Errorf("phase %s ip %q %v", p.Status.Phase, p.Status.PodIP, p.Status.Conditions)
			}
			_, cidr, _ := net.ParseCIDR(node.Spec.PodCIDRs[0])
			if !cidr.Contains(net.ParseIP(p.Status.PodIP)) {
				t.Errorf("pod on %s has %s, outside the node's pod CIDR %s", k.name, p.Status.PodIP, cidr)
			}
			ips[k.name] = p.Status.PodIP
			return nil
		})
	}
	t.Logf("pods: %v", ips)
	for i, k := range nodes {
		other := nodes[1-i]
		ctr, err := k.crictl("ps", "-q", "--name", "c", "--state", "running")
		if err != nil || len(strings.TrimSpace(string(ctr))) == 0 {
			t.Fatalf("%s: container: %v %s", k.name, err, ctr)
		}
		if out, err := k.crictl("exec", strings.TrimSpace(string(ctr)), "ping", "-c", "1", "-W", "2", ips[other.name]); err != nil {
			t.Errorf("pod on %s → pod on %s (%s): %v %s", k.name, other.name, ips[other.name], err, out)
		}
	}

	// kube-scheduler places a Deployment spread over both nodes (one pod
	// each); every replica gets an address from its node's pod CIDR.
	sched := start(t, s.lab.Router, s.cp.Dir, "kube-scheduler", nil, k8sBin("kube-scheduler"),
		"--kubeconfig="+s.cp.AdminFile, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-scheduler log:\n%s", sched.tail())
		}
	})
	replicas := int32(2)
	labels := map[string]string{"app": "spread"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "spread", Namespace: "default"}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &no, TerminationGracePeriodSeconds: &grace,
			TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
				WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}},
			Containers: []corev1.Container{{Name: "c", Image: "localhost/vxvrf-e2e-busybox:latest", ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}}},
		}},
	}}
	if _, err := s.cp.Admin.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "Deployment spread over node-1 and node-2", func() error {
		pods, err := s.cp.Admin.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=spread"})
		if err != nil {
			return err
		}
		on := map[string]bool{}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("%s on %q: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
			}
			node, err := s.cp.Admin.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if _, cidr, _ := net.ParseCIDR(node.Spec.PodCIDRs[0]); !cidr.Contains(net.ParseIP(p.Status.PodIP)) {
				t.Errorf("%s on %s has %s, outside %s", p.Name, p.Spec.NodeName, p.Status.PodIP, cidr)
			}
			on[p.Spec.NodeName] = true
		}
		if len(pods.Items) != 2 || !on["node-1"] || !on["node-2"] {
			return fmt.Errorf("%d pods on %v", len(pods.Items), on)
		}
		return nil
	})
	// Scaled to zero, then removed (no garbage collector runs here).
	if _, err := s.cp.Admin.AppsV1().Deployments("default").Patch(ctx, "spread", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "Deployment pods gone", func() error {
		pods, err := s.cp.Admin.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=spread"})
		if err != nil || len(pods.Items) > 0 {
			return fmt.Errorf("%v %d pods left", err, len(pods.Items))
		}
		return nil
	})
	if err := s.cp.Admin.AppsV1().Deployments("default").Delete(ctx, "spread", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.cp.Admin.AppsV1().ReplicaSets("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=spread"}); err != nil {
		t.Fatal(err)
	}

	// Pod → external host through the router: only masquerade to the node's
	// uplink address gets replies (the router has no route to pod ranges).
	for _, k := range nodes {
		if err := k.podPing(netsim.ExternalHost); err != nil {
			t.Errorf("pod on %s → external host %s: %v", k.name, netsim.ExternalHost, err)
		}
	}

	// Services: kube-proxy (iptables mode, the default) on both nodes. A pod
	// on node-1 reaches a ClusterIP whose endpoint is a pod on the same node,
	// and the external host reaches it through a NodePort of node-1. An
	// endpoint on another node does not work yet: see README.md.
	for _, k := range nodes {
		kp := start(t, k.NS, k.dir, "kube-proxy", nil, k8sBin("kube-proxy"),
			"--kubeconfig="+s.cp.AdminFile, "--hostname-override="+k.name, "--proxy-mode=iptables",
			"--cluster-cidr=10.244.0.0/16", "--conntrack-max-per-core=0",
			"--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
			"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256")
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s kube-proxy log:\n%s", k.name, kp.tail())
			}
		})
	}
	web := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{
		NodeName: nodes[0].name, AutomountServiceAccountToken: &no, TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{Name: "web", Image: "localhost/vxvrf-e2e-busybox:latest", ImagePullPolicy: corev1.PullNever,
			Command: []string{"httpd", "-f", "-p", "80", "-h", "/www"}, Ports: []corev1.ContainerPort{{ContainerPort: 80}}}},
	}}
	if _, err := s.cp.Admin.CoreV1().Pods("default").Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.podIP(t, "web")
	svc, err := s.cp.Admin.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodePort := svc.Spec.Ports[0].NodePort
	took := eventually(t, time.Minute, "pod on node-1 → ClusterIP "+svc.Spec.ClusterIP, func() error {
		ctr := strings.TrimSpace(string(mustOut(nodes[0].crictl("ps", "-q", "--name", "c", "--label", "io.kubernetes.pod.name=pod-node-1", "--state", "running"))))
		out, err := nodes[0].crictl("exec", ctr, "sh", "-c", httpGet(svc.Spec.ClusterIP, 80))
		if err != nil || !strings.Contains(string(out), "vxvrf e2e") {
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	})
	t.Logf("ClusterIP %s (endpoint on node-1) reached from node-1's pod %s after the Service was created", svc.Spec.ClusterIP, took.Round(time.Millisecond))
	eventually(t, 30*time.Second, fmt.Sprintf("external host → NodePort %s:%d", nodes[0].Addr, nodePort), func() error {
		out, err := s.lab.External.In("busybox", "sh", "-c", httpGet(nodes[0].Addr.String(), int(nodePort)))
		if err != nil || !strings.Contains(string(out), "vxvrf e2e") {
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	})

	if err := s.cp.Admin.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.cp.Admin.CoreV1().Pods("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "pod web gone", func() error {
		if _, err := s.cp.Admin.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{}); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})

	// A 3rd node joins the running cluster: its pod reaches the others and
	// is reached by them, with no pod restarted anywhere. Then it is
	// deleted: the other nodes' flood entries for it go.
	k3 := s.startKubeletNode(t, 2, "node-3")
	k3.startAgent(t, s.dir)
	joined := time.Now()
	s.waitReady(t, k3, true)
	s.createPod(t, "pod-node-3", "node-3")
	ip3 := s.podIP(t, "pod-node-3")
	all := append(nodes, k3)
	ips["node-3"] = ip3
	for _, from := range all {
		for _, to := range all {
			if from == to {
				continue
			}
			eventually(t, 20*time.Second, fmt.Sprintf("pod on %s → pod on %s", from.name, to.name), func() error {
				return from.podPing(ips[to.name])
			})
		}
	}
	t.Logf("node-3 joined: Ready and its pod reaching every other pod and back %s after its agent started", time.Since(joined).Round(time.Millisecond))
	for _, name := range []string{"pod-node-1", "pod-node-2"} {
		p, err := s.cp.Admin.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount != 0 {
				t.Errorf("%s restarted %d times", name, cs.RestartCount)
			}
		}
	}
	nodes[0].wantFlood(t, time.Second, nodes[1].Addr.String(), k3.Addr.String())
	if err := s.cp.Admin.CoreV1().Pods("default").Delete(ctx, "pod-node-3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "pod-node-3 gone", func() error {
		if _, err := s.cp.Admin.CoreV1().Pods("default").Get(ctx, "pod-node-3", metav1.GetOptions{}); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
	k3.kubelet.Stop(syscall.SIGTERM)
	if err := s.cp.Admin.CoreV1().Nodes().Delete(ctx, "node-3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	nodes[0].wantFlood(t, 10*time.Second, nodes[1].Addr.String())
	nodes[1].wantFlood(t, 10*time.Second, nodes[0].Addr.String())

	// Faults: node-1's agent is SIGKILLed and restarted over and over while
	// pods are created and deleted there. Every pod gets its network, the
	// node stays Ready, and nothing leaks: afterwards the node holds the
	// lease and host veth of the long-running pod only.
	k := nodes[0]
	stop, killed := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { killed <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(700 * time.Millisecond):
			}
			k.agent.Stop(syscall.SIGKILL)
			k.agent = startArgv(t, s.dir, "agent-"+k.name, nil, append([]string{"ip", "netns", "exec", k.NS.Name}, k.args...))
			n++
		}
	}()
	node, _ := s.cp.Admin.CoreV1().Nodes().Get(ctx, k.name, metav1.GetOptions{})
	_, cidr, _ := net.ParseCIDR(node.Spec.PodCIDRs[0])
	for i := range 6 {
		name := fmt.Sprintf("churn-%d", i)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{
			NodeName: k.name, AutomountServiceAccountToken: &no, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "c", Image: "localhost/vxvrf-e2e-busybox:latest", ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}}},
		}}
		if _, err := s.cp.Admin.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, name+" running", func() error {
			p, err := s.cp.Admin.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning || !cidr.Contains(net.ParseIP(p.Status.PodIP)) {
				return fmt.Errorf("phase %s ip %q", p.Status.Phase, p.Status.PodIP)
			}
			return nil
		})
		if err := s.cp.Admin.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, name+" gone", func() error {
			if _, err := s.cp.Admin.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{}); err == nil {
				return fmt.Errorf("still there")
			}
			return nil
		})
	}
	close(stop)
	t.Logf("6 pods created and deleted on %s while its agent was killed %d times", k.name, <-killed)
	s.waitReady(t, k, true)
	eventually(t, 30*time.Second, "no leaked lease or veth on "+k.name, func() error {
		b, err := os.ReadFile(filepath.Join(k.root, "run", "ipam", "vxvrf.json"))
		if err != nil {
			return err
		}
		var st struct {
			Leases []json.RawMessage `json:"leases"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return err
		}
		links, err := chain.Links(k.NetNS)
		if err != nil {
			return err
		}
		var veths []string
		for name, alias := range links {
			if strings.HasPrefix(alias, "vxvrf:vxvrf:") {
				veths = append(veths, name)
			}
		}
		if len(st.Leases) != 1 || len(veths) != 1 {
			return fmt.Errorf("%d leases %s, host veths %v: want the long-running pod's only", len(st.Leases), b, veths)
		}
		return nil
	})
	if out, err := k.crictl("exec", strings.TrimSpace(string(mustOut(k.crictl("ps", "-q", "--name", "c", "--state", "running")))), "ping", "-c", "1", "-W", "2", ips[nodes[1].name]); err != nil {
		t.Errorf("after the churn, node-1's pod → node-2's pod: %v %s", err, out)
	}

	// Upgrade: every node's agent is replaced, one node at a time, by one
	// installing new plugin binaries, while a pod on node-1 pings the pod on
	// node-2 ten times a second: not one packet is lost, and the new
	// binaries are in place (replaced by rename) on both nodes.
	newSrc := t.TempDir()
	for _, p := range testutil.Plugins {
		b, err := os.ReadFile(filepath.Join(s.plugins, p))
		if err != nil {
			t.Fatal(err)
		}
		// Trailing bytes after an ELF image change the file, not the program.
		if err := os.WriteFile(filepath.Join(newSrc, p), append(b, []byte("\nvxvrf upgrade\n")...), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctr := strings.TrimSpace(string(mustOut(nodes[0].crictl("ps", "-q", "--name", "c", "--label", "io.kubernetes.pod.name=pod-node-1", "--state", "running"))))
	pinger := exec.Command("ip", "netns", "exec", nodes[0].NS.Name, e2eTool("crictl"), "-r", "unix://"+nodes[0].sock,
		"exec", ctr, "ping", "-c", "80", "-i", "0.1", "-W", "1", ips[nodes[1].name])
	var pingOut bytes.Buffer
	pinger.Stdout, pinger.Stderr = &pingOut, &pingOut
	if err := pinger.Start(); err != nil {
		t.Fatal(err)
	}
	for _, k := range nodes {
		time.Sleep(time.Second)
		k.agent.Stop(syscall.SIGTERM)
		for i, a := range k.args {
			if strings.HasPrefix(a, "--src=") {
				k.args[i] = "--src=" + newSrc
			}
		}
		k.startAgent(t, s.dir)
		eventually(t, 20*time.Second, k.name+" runs the new binaries", func() error {
			for _, p := range testutil.Plugins {
				b, err := os.ReadFile(filepath.Join(k.binDir(), p))
				if err != nil {
					return err
				}
				if !bytes.HasSuffix(b, []byte("vxvrf upgrade\n")) {
					return fmt.Errorf("%s not replaced yet", p)
				}
			}
			return nil
		})
	}
	err = pinger.Wait()
	if err != nil || !strings.Contains(pingOut.String(), " 0% packet loss") {
		t.Errorf("ping across the upgrade: %v\n%s", err, pingOut.String())
	} else {
		t.Logf("upgrade of both agents during 80 pings at 10/s: %s", lastLine(pingOut.String(), "packet loss"))
	}
	for _, k := range nodes {
		s.waitReady(t, k, true)
	}
	// A pod started after the upgrade runs the new binaries.
	s.createPod(t, "after-upgrade", nodes[1].name)
	s.podIP(t, "after-upgrade")
}

func mustOut(b []byte, err error) []byte {
	if err != nil {
		return nil
	}
	return b
}

func (s *setup) createPod(t *testing.T, name, node string) {
	t.Helper()
	no, grace := false, int64(1)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{
		NodeName: node, AutomountServiceAccountToken: &no, TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{Name: "c", Image: "localhost/vxvrf-e2e-busybox:latest", ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}}},
	}}
	if _, err := s.cp.Admin.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// podIP waits for the pod to run and returns its address.
func (s *setup) podIP(t *testing.T, name string) string {
	t.Helper()
	var ip string
	eventually(t, time.Minute, name+" running", func() error {
		p, err := s.cp.Admin.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("phase %s ip %q", p.Status.Phase, p.Status.PodIP)
		}
		ip = p.Status.PodIP
		return nil
	})
	return ip
}

// podPing pings ip from the node's long-running pod (its container "c" named
// for the pod "pod-<node>").
func (k *kubeletNode) podPing(ip string) error {
	out, err := k.crictl("ps", "-q", "--name", "c", "--label", "io.kubernetes.pod.name=pod-"+k.name, "--state", "running")
	if err != nil || len(strings.TrimSpace(string(out))) == 0 {
		return fmt.Errorf("container of pod-%s: %v %s", k.name, err, out)
	}
	if out, err := k.crictl("exec", strings.TrimSpace(string(out)), "ping", "-c", "1", "-W", "2", ip); err != nil {
		return fmt.Errorf("%v %s", err, out)
	}
	return nil
}

func lastLine(out, with string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, with) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// httpGet is a shell command fetching / from ip:port with busybox nc (this
// busybox's wget crashes in a static build without a resolver config).
func httpGet(ip string, port int) string {
	return fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 %s %d`, ip, port)
}
