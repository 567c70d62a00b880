//go:build k8s

package k8s

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

const (
	conflist = "/etc/cni/net.d/10-vxvrf.conflist"
	// upgradeVersion is the VERSION of the second image, the rolling
	// upgrade's target; the binaries carry it.
	upgradeVersion = "vxvrf-upgrade-test"
	upgradeImage   = "localhost/vxvrf-cni:upgrade-test"
	manifest       = "deploy/kubernetes/vxvrf.yaml"
	uninstallFile  = "deploy/kubernetes/vxvrf-uninstall.yaml"
)

// dsCluster is a real cluster on a netsim lab: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler in the router namespace, and
// kubelet nodes (own netns and mount namespace each) with containerd and
// kube-proxy, into which the project's image archives are imported.
type dsCluster struct {
	cp        *ControlPlane
	lab       *netsim.Cluster
	dir       string
	image     string   // the image of `make image`, as its archive names it
	imageTars []string // the archives every node imports
	nodes     []*kubeletNode
}

// imageArchive is the `make image` output ($VXVRF_IMAGE_ARCHIVE, else
// deploy/out/vxvrf-cni.oci.tar).
func imageArchive(t *testing.T) string {
	if p := os.Getenv("VXVRF_IMAGE_ARCHIVE"); p != "" {
		return p
	}
	return repoFile(t, "deploy/out/vxvrf-cni.oci.tar")
}

// archiveImage is the image name an OCI archive gives containerd.
func archiveImage(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no index.json: %v", path, err)
		}
		if h.Name != "index.json" {
			continue
		}
		var idx struct {
			Manifests []struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"manifests"`
		}
		if err := json.NewDecoder(tr).Decode(&idx); err != nil || len(idx.Manifests) != 1 {
			t.Fatalf("%s: index.json: %v %+v", path, err, idx)
		}
		return idx.Manifests[0].Annotations["io.containerd.image.name"]
	}
}

// newDSCluster starts the control plane and nodes kubelet nodes (of a lab
// with room for labNodes), without vxvrf: every node is NotReady.
func newDSCluster(t *testing.T, nodes, labNodes int) *dsCluster {
	t.Helper()
	need(t, "etcd", "ip", "bridge", "nsenter", "unshare", "findmnt", "containerd", "ctr", "iptables-save",
		k8sBin("kube-apiserver"), k8sBin("kube-controller-manager"), k8sBin("kube-scheduler"), k8sBin("kube-proxy"),
		k8sBin("kubelet"), k8sBin("kubectl"), e2eTool("crictl"), e2eImage("pause.oci.tar"), e2eImage("busybox.oci.tar"))
	archive := imageArchive(t)
	if _, err := os.Stat(archive); err != nil {
		msg := fmt.Sprintf("the project's image: %v (run make image)", err)
		if os.Getenv("VXVRF_K8S_REQUIRE") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t0 := time.Now()
	c := &dsCluster{dir: t.TempDir(), image: archiveImage(t, archive), imageTars: []string{archive}}
	sweepShims(t)
	saveHostState(t)
	mountPoints(t)
	lab, err := netsim.NewCluster("k8d", labNodes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	c.lab = lab
	c.cp = startControlPlane(t, lab.Router, netsim.UnderlayGateway)
	cm := start(t, lab.Router, c.cp.Dir, "kube-controller-manager", nil, k8sBin("kube-controller-manager"),
		"--kubeconfig="+c.cp.AdminFile, "--leader-elect=false",
		"--controllers=nodeipam,nodelifecycle,endpointslice,deployment,replicaset,daemonset-controller,"+
			"garbage-collector-controller,serviceaccount-controller,root-ca-certificate-publisher-controller",
		"--root-ca-file="+c.cp.PKI.CAFile,
		"--allocate-node-cidrs=true", "--cluster-cidr="+clusterCIDRs, "--node-cidr-mask-size-ipv4=24", "--node-cidr-mask-size-ipv6=64",
		"--service-cluster-ip-range="+serviceCIDRs, "--bind-address=127.0.0.1", "--secure-port=10257")
	sched := start(t, lab.Router, c.cp.Dir, "kube-scheduler", nil, k8sBin("kube-scheduler"),
		"--kubeconfig="+c.cp.AdminFile, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-controller-manager log:\n%s\nkube-scheduler log:\n%s", cm.tail(), sched.tail())
		}
	})
	for i := range nodes {
		c.nodes = append(c.nodes, c.startKubeletNode(t, i, fmt.Sprintf("node-%d", i+1)))
	}
	// Without vxvrf there is no conflist: the kubelets say so.
	for _, k := range c.nodes {
		c.waitReady(t, k, false)
		if fileExists(k.host(conflist)) {
			t.Fatalf("%s has a conflist before vxvrf was installed", k.name)
		}
	}
	eventually(t, time.Minute, "ServiceAccount default/default", func() error {
		_, err := c.cp.Admin.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{})
		return err
	})
	t.Logf("control plane and %d NotReady kubelet nodes up after %s", nodes, time.Since(t0).Round(time.Second))
	return c
}

// kubectl runs the real kubectl (as admin, inside the router namespace,
// where the API is) with stdin.
func (c *dsCluster) kubectl(stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", c.lab.Router.Name, k8sBin("kubectl"), "--kubeconfig=" + c.cp.AdminFile}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

var imageField = regexp.MustCompile(`(?m)^(\s+image:[ \t]*)\S+[ \t]*$`)

// manifestWithImage is the manifest file as it is in the repository, with
// only its one image field set to image.
func manifestWithImage(t *testing.T, file, image string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoFile(t, file))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(imageField.FindAll(b, -1)); n != 1 {
		t.Fatalf("%s: %d image fields, want 1", file, n)
	}
	return imageField.ReplaceAll(b, []byte("${1}"+image))
}

// apply is `kubectl apply -f FILE` with the image overridden.
func (c *dsCluster) apply(t *testing.T, file, image string) {
	t.Helper()
	out, err := c.kubectl(manifestWithImage(t, file, image), "apply", "-f", "-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl apply -f %s (image %s):\n%s", file, image, strings.TrimSpace(string(out)))
}

func (c *dsCluster) others(k *kubeletNode) []string {
	var out []string
	for _, o := range c.nodes {
		if o != k {
			out = append(out, o.Addr.String())
		}
	}
	return out
}

// podCIDR is the node's first spec.podCIDRs entry.
func (c *dsCluster) podCIDR(t *testing.T, name string) *net.IPNet {
	t.Helper()
	n, err := c.cp.Admin.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Spec.PodCIDRs) == 0 {
		t.Fatalf("%s has no pod CIDR", name)
	}
	_, cidr, err := net.ParseCIDR(n.Spec.PodCIDRs[0])
	if err != nil {
		t.Fatal(err)
	}
	return cidr
}

// waitDaemonSet waits until the DaemonSet has one updated, ready pod on
// every node and none elsewhere.
func (c *dsCluster) waitDaemonSet(t *testing.T, name string, d time.Duration) {
	t.Helper()
	eventually(t, d, "DaemonSet "+name+" rolled out", func() error {
		ds, err := c.cp.Admin.AppsV1().DaemonSets("kube-system").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st, want := ds.Status, int32(len(c.nodes))
		if ds.Generation != st.ObservedGeneration || st.DesiredNumberScheduled != want || st.CurrentNumberScheduled != want ||
			st.UpdatedNumberScheduled != want || st.NumberReady != want || st.NumberAvailable != want {
			return fmt.Errorf("status %+v, want %d everywhere", st, want)
		}
		return nil
	})
}

// agentPods are the DaemonSet's pods by node name.
func (c *dsCluster) agentPods(t *testing.T) map[string]corev1.Pod {
	t.Helper()
	pods, err := c.cp.Admin.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Pod{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out[p.Spec.NodeName] = p
		}
	}
	return out
}

// container is the id of the running container of a pod on the node.
func (k *kubeletNode) container(ns, pod string) (string, error) {
	out, err := k.crictl("ps", "-q", "--label", "io.kubernetes.pod.namespace="+ns, "--label", "io.kubernetes.pod.name="+pod, "--state", "running")
	if err != nil {
		return "", err
	}
	id, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if id == "" {
		return "", fmt.Errorf("%s: no running container of %s/%s", k.name, ns, pod)
	}
	return id, nil
}

// exec runs argv in the container of default/pod on this node.
func (k *kubeletNode) exec(pod string, argv ...string) ([]byte, error) {
	id, err := k.container("default", pod)
	if err != nil {
		return nil, err
	}
	return k.crictl(append([]string{"exec", id}, argv...)...)
}

// containerPID is the host PID of a container's first process.
func (k *kubeletNode) containerPID(id string) (int, error) {
	out, err := k.crictl("inspect", id)
	if err != nil {
		return 0, err
	}
	var st struct {
		Info struct {
			PID int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return 0, fmt.Errorf("crictl inspect %s: %w", id, err)
	}
	if st.Info.PID == 0 {
		return 0, fmt.Errorf("crictl inspect %s: no pid", id)
	}
	return st.Info.PID, nil
}

func (k *kubeletNode) wantFlood(t *testing.T, d time.Duration, want ...string) {
	t.Helper()
	waitFlood(t, k.name, k.NS, d, want...)
}

// webPod is a busybox httpd with a readiness probe (the kubelet, in the
// node's namespaces, must reach the pod), labelled app=web, node=<node>.
func webPod(name, node string) *corev1.Pod {
	no, grace := false, int64(1)
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web", "node": node}},
		Spec: corev1.PodSpec{
			NodeName: node, AutomountServiceAccountToken: &no, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "web", Image: busyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"httpd", "-f", "-p", "80", "-h", "/www"}, Ports: []corev1.ContainerPort{{ContainerPort: 80}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}},
					PeriodSeconds: 1, FailureThreshold: 1},
			}},
		}}
}

// runPod creates the pod and waits until it is Ready with an address
// inside its node's pod CIDR, which it returns.
func (c *dsCluster) runPod(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	ctx := context.Background()
	if _, err := c.cp.Admin.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return c.podReady(t, pod.Name)
}

// podReady waits until default/name is Running and Ready, and checks its
// address against its node's spec.podCIDRs.
func (c *dsCluster) podReady(t *testing.T, name string) string {
	t.Helper()
	var p *corev1.Pod
	eventually(t, 90*time.Second, name+" ready", func() error {
		var err error
		if p, err = c.cp.Admin.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || !podIsReady(p) {
			return fmt.Errorf("phase %s ip %q %v", p.Status.Phase, p.Status.PodIP, p.Status.Conditions)
		}
		return nil
	})
	if cidr := c.podCIDR(t, p.Spec.NodeName); !cidr.Contains(net.ParseIP(p.Status.PodIP)) {
		t.Errorf("%s on %s has %s, outside the node's pod CIDR %s", name, p.Spec.NodeName, p.Status.PodIP, cidr)
	}
	return p.Status.PodIP
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// noRestarts fails the test for every container of the selected pods that
// restarted.
func (c *dsCluster) noRestarts(t *testing.T, selector metav1.ListOptions) {
	t.Helper()
	pods, err := c.cp.Admin.CoreV1().Pods("default").List(context.Background(), selector)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount != 0 {
				t.Errorf("%s restarted %d times", p.Name, cs.RestartCount)
			}
		}
	}
}

func (c *dsCluster) deletePods(t *testing.T, selector metav1.ListOptions) {
	t.Helper()
	ctx := context.Background()
	if err := c.cp.Admin.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, selector); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "pods "+selector.LabelSelector+selector.FieldSelector+" gone", func() error {
		pods, err := c.cp.Admin.CoreV1().Pods("default").List(ctx, selector)
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d left", len(pods.Items))
		}
		return nil
	})
}

// ping pings ip once from pod on node k.
func (k *kubeletNode) ping(pod, ip string) error {
	if out, err := k.exec(pod, "ping", "-c", "1", "-W", "2", ip); err != nil {
		return fmt.Errorf("%w %s", err, out)
	}
	return nil
}

// fetch GETs / from ip:port in the pod.
func (k *kubeletNode) fetch(pod, ip string, port int) error {
	return served(k.exec(pod, "sh", "-c", httpGet(ip, port)))
}

// served checks the output of httpGet for the web pods' page.
func served(out []byte, err error) error {
	if err != nil {
		return fmt.Errorf("%w %s", err, out)
	}
	if !strings.Contains(string(out), "vxvrf e2e") {
		return fmt.Errorf("not the web page: %s", out)
	}
	return nil
}

// webService creates a NodePort Service for the web pod on node.
func (c *dsCluster) webService(t *testing.T, node string) *corev1.Service {
	t.Helper()
	svc, err := c.cp.Admin.CoreV1().Services("default").Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-" + node, Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web", "node": node},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestDaemonSetCluster is the real-cluster suite on one shared cluster:
// the project's manifests from deploy/ applied with kubectl (only the
// image overridden), run by real kubelets whose nodes each have their own
// network and mount namespace; see README.md for what each step proves.
func TestDaemonSetCluster(t *testing.T) {
	c := newDSCluster(t, 3, 4)
	steps := []struct {
		name string
		f    func(*testing.T, *dsCluster)
	}{
		{"Rollout", testRollout},
		{"Pods", testPods},
		{"Services", testServices},
		{"NodeJoinsAndLeaves", testJoinLeave},
		{"AgentKilledDuringChurn", testAgentKilled},
		{"RollingUpgrade", testUpgrade},
		{"DualStack", testDualStack},
		{"Uninstall", testUninstall},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.f(t, c) }) {
			t.Fatalf("%s failed: the later steps need it", s.name)
		}
	}
}

// testRollout: kubectl apply of vxvrf.yaml; the DaemonSet rolls out on
// every node, no node turns Ready before its conflist is there, and the
// agent pods got there through in-cluster config (the kubernetes Service's
// ClusterIP, which only kube-proxy on the node makes reachable).
func testRollout(t *testing.T, c *dsCluster) {
	ctx := context.Background()
	t0 := time.Now()
	c.apply(t, manifest, c.image)
	readyAfter := map[string]time.Duration{}
	eventually(t, 3*time.Minute, "every node Ready", func() error {
		var notYet []string
		for _, k := range c.nodes {
			n, err := c.cp.Admin.CoreV1().Nodes().Get(ctx, k.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			// The conflist is never removed here, so its absence now means
			// it was absent when the node was seen Ready.
			if ready, _ := nodeReady(n); !ready {
				notYet = append(notYet, k.name)
			} else if !fileExists(k.host(conflist)) {
				t.Fatalf("%s is Ready without a conflist in its /etc/cni/net.d", k.name)
			} else if _, ok := readyAfter[k.name]; !ok {
				readyAfter[k.name] = time.Since(t0).Round(100 * time.Millisecond)
			}
		}
		if len(notYet) > 0 {
			return fmt.Errorf("not Ready: %v", notYet)
		}
		return nil
	})
	c.waitDaemonSet(t, "vxvrf-agent", time.Minute)
	t.Logf("nodes Ready after kubectl apply: %v; DaemonSet rolled out after %s", readyAfter, time.Since(t0).Round(100*time.Millisecond))

	kube, err := c.cp.Admin.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods := c.agentPods(t)
	for _, k := range c.nodes {
		p, ok := pods[k.name]
		if !ok || p.Spec.Containers[0].Image != c.image {
			t.Fatalf("%s: agent pod %v with image %q", k.name, ok, p.Spec.Containers[0].Image)
		}
		// The conflist: this node's VTEP, every other node as remote, the
		// IPAM range inside this node's pod CIDR.
		local, remotes, start, err := readRendered(k.host(conflist))
		if err != nil {
			t.Fatal(err)
		}
		want := c.others(k)
		slices.Sort(want)
		if cidr := c.podCIDR(t, k.name); local != k.Addr.String() || !slices.Equal(remotes, want) || !cidr.Contains(net.ParseIP(start)) {
			t.Errorf("%s conflist: local %s remotes %v rangeStart %s (pod CIDR %s)", k.name, local, remotes, start, cidr)
		}
		// The plugins are the image's, in the node's own /opt/cni/bin.
		for _, pl := range testutil.Plugins {
			if !fileExists(filepath.Join(k.host("/opt/cni/bin"), pl)) {
				t.Errorf("%s: %s not installed", k.name, pl)
			}
		}
		id, err := k.container("kube-system", p.Name)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := k.containerPID(id)
		if err != nil {
			t.Fatal(err)
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		vars := strings.Split(string(env), "\x00")
		if !slices.Contains(vars, "KUBERNETES_SERVICE_HOST="+kube.Spec.ClusterIP) || slices.ContainsFunc(vars, func(v string) bool { return strings.HasPrefix(v, "KUBECONFIG=") }) {
			t.Errorf("%s: the agent does not run with in-cluster config: %q", k.name, vars)
		}
	}
}

// testPods: a web pod (readiness probe) on every node, and a Deployment
// the scheduler spreads over the nodes; every address is inside its node's
// pod CIDR; every pair of nodes' pods ping each other, and each reaches
// the external host behind the router (masquerade).
func testPods(t *testing.T, c *dsCluster) {
	ctx := context.Background()
	ips := map[string]string{}
	for _, k := range c.nodes {
		if _, err := c.cp.Admin.CoreV1().Pods("default").Create(ctx, webPod("web-"+k.name, k.name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range c.nodes {
		ips[k.name] = c.podReady(t, "web-"+k.name)
	}
	t.Logf("web pods (Ready: the kubelet's probe reached them): %v", ips)

	replicas := int32(len(c.nodes))
	labels := map[string]string{"app": "spread"}
	no, grace := false, int64(1)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "spread", Namespace: "default"}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &no, TerminationGracePeriodSeconds: &grace,
			TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
				WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}},
			Containers: []corev1.Container{{Name: "c", Image: busyboxImage, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}}},
		}},
	}}
	if _, err := c.cp.Admin.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "Deployment spread over every node", func() error {
		pods, err := c.cp.Admin.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=spread"})
		if err != nil {
			return err
		}
		on := map[string]bool{}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return fmt.Errorf("%s on %q: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
			}
			on[p.Spec.NodeName] = true
		}
		if len(pods.Items) != len(c.nodes) || len(on) != len(c.nodes) {
			return fmt.Errorf("%d pods on %v", len(pods.Items), on)
		}
		for _, p := range pods.Items {
			if cidr := c.podCIDR(t, p.Spec.NodeName); !cidr.Contains(net.ParseIP(p.Status.PodIP)) {
				t.Errorf("%s on %s has %s, outside %s", p.Name, p.Spec.NodeName, p.Status.PodIP, cidr)
			}
			// ...and the web pod on another node reaches it.
			other := c.nodes[(slices.IndexFunc(c.nodes, func(k *kubeletNode) bool { return k.name == p.Spec.NodeName })+1)%len(c.nodes)]
			if err := other.ping("web-"+other.name, p.Status.PodIP); err != nil {
				t.Errorf("web pod on %s → replica %s on %s: %v", other.name, p.Name, p.Spec.NodeName, err)
			}
		}
		return nil
	})

	for _, from := range c.nodes {
		for _, to := range c.nodes {
			if from != to {
				if err := from.ping("web-"+from.name, ips[to.name]); err != nil {
					t.Errorf("pod on %s → pod on %s (%s): %v", from.name, to.name, ips[to.name], err)
				}
			}
		}
		// The router has no route to pod ranges: only masquerade gets replies.
		if err := from.ping("web-"+from.name, netsim.ExternalHost); err != nil {
			t.Errorf("pod on %s → external host %s: %v", from.name, netsim.ExternalHost, err)
		}
	}
}

// podOn is the name of a pod with the label selector on the node.
func (c *dsCluster) podOn(t *testing.T, selector, node string) string {
	t.Helper()
	pods, err := c.cp.Admin.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: selector, FieldSelector: "spec.nodeName=" + node})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("no pod %s on %s: %v", selector, node, err)
	}
	return pods.Items[0].Name
}

// testServices: kube-proxy (iptables) on every node; a NodePort Service per
// web pod. A pod (the Deployment's replica on node-1) reaches the ClusterIP
// of the Service whose endpoint is on its own node and of those whose
// endpoints are on the other nodes; the endpoint reaches its own Service
// (hairpin); the external host reaches every web pod through node-1's
// NodePorts.
func testServices(t *testing.T, c *dsCluster) {
	k := c.nodes[0]
	client := c.podOn(t, "app=spread", k.name)
	svc := c.webService(t, k.name)
	took := eventually(t, time.Minute, "pod on node-1 → ClusterIP "+svc.Spec.ClusterIP+" (endpoint on node-1)", func() error {
		return k.fetch(client, svc.Spec.ClusterIP, 80)
	})
	t.Logf("ClusterIP %s (endpoint on %s) reached from %s %s after the Service was created", svc.Spec.ClusterIP, k.name, client, took.Round(time.Millisecond))
	// Hairpin: the endpoint itself reaches its Service (kube-proxy DNATs
	// the packet back to it; the bridge port must send it back out).
	took = eventually(t, 10*time.Second, "web-node-1 → its own Service's ClusterIP (hairpin)", func() error {
		return k.fetch("web-"+k.name, svc.Spec.ClusterIP, 80)
	})
	t.Logf("the endpoint web-%s reaches its own Service (hairpin) after %s", k.name, took.Round(time.Millisecond))
	port := int(svc.Spec.Ports[0].NodePort)
	eventually(t, 30*time.Second, fmt.Sprintf("external host → NodePort %s:%d", k.Addr, port), func() error {
		return served(c.lab.External.In("busybox", "sh", "-c", httpGet(k.Addr.String(), port)))
	})

	// Endpoints on other nodes: node-1 routes the DNATed packet to a pod
	// behind another node's bridge (bridge.nodeAddresses gives node-1 an
	// address of its own there), and for the NodePort masquerades it.
	for _, o := range c.nodes[1:] {
		svc := c.webService(t, o.name)
		took := eventually(t, time.Minute, fmt.Sprintf("pod on %s → ClusterIP %s (endpoint on %s)", k.name, svc.Spec.ClusterIP, o.name), func() error {
			return k.fetch(client, svc.Spec.ClusterIP, 80)
		})
		t.Logf("ClusterIP %s (endpoint on %s) reached from %s on %s after %s", svc.Spec.ClusterIP, o.name, client, k.name, took.Round(time.Millisecond))
		port := int(svc.Spec.Ports[0].NodePort)
		eventually(t, 30*time.Second, fmt.Sprintf("external host → NodePort %s:%d (endpoint on %s)", k.Addr, port, o.name), func() error {
			return served(c.lab.External.In("busybox", "sh", "-c", httpGet(k.Addr.String(), port)))
		})
	}
	t.Logf("the external host reaches the web pods on %s and %s through %s's NodePorts", c.nodes[1].name, c.nodes[2].name, k.name)
}

// testJoinLeave: a 4th kubelet node joins the running cluster; the
// DaemonSet puts its own agent pod there, the node turns Ready, its pod
// and the others' reach each other, no pod restarts. It leaves (drained,
// kubelet stopped, Node deleted): every other node's flood entry for it
// goes.
func testJoinLeave(t *testing.T, c *dsCluster) {
	ctx := context.Background()
	t0 := time.Now()
	k4 := c.startKubeletNode(t, 3, "node-4")
	c.nodes = append(c.nodes, k4)
	defer func() { c.nodes = slices.DeleteFunc(c.nodes, func(k *kubeletNode) bool { return k == k4 }) }()
	c.waitReady(t, k4, true)
	c.waitDaemonSet(t, "vxvrf-agent", 2*time.Minute)
	t.Logf("node-4 Ready with its agent pod %s after its kubelet started", time.Since(t0).Round(100*time.Millisecond))
	ip4 := c.runPod(t, webPod("web-node-4", "node-4"))
	for _, k := range c.nodes[:3] {
		k.wantFlood(t, 10*time.Second, c.others(k)...)
		ip := c.podReady(t, "web-"+k.name)
		eventually(t, 20*time.Second, fmt.Sprintf("pods on %s ↔ node-4", k.name), func() error {
			if err := k.ping("web-"+k.name, ip4); err != nil {
				return err
			}
			return k4.ping("web-node-4", ip)
		})
	}
	t.Logf("node-4 joined: its pod reaches every other node's pod and back %s after its kubelet started", time.Since(t0).Round(100*time.Millisecond))
	c.noRestarts(t, metav1.ListOptions{})

	// Leaves: drained, its kubelet and runtime gone, its Node deleted (and
	// its pods with it, as the pod GC would).
	c.deletePods(t, metav1.ListOptions{FieldSelector: "spec.nodeName=node-4"})
	for _, e := range k4.stop() {
		t.Errorf("node-4: %s", e)
	}
	if err := c.cp.Admin.CoreV1().Nodes().Delete(ctx, "node-4", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	if err := c.cp.Admin.CoreV1().Pods("kube-system").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero},
		metav1.ListOptions{FieldSelector: "spec.nodeName=node-4"}); err != nil {
		t.Fatal(err)
	}
	c.nodes = c.nodes[:3]
	t1 := time.Now()
	for _, k := range c.nodes {
		k.wantFlood(t, 10*time.Second, c.others(k)...)
	}
	t.Logf("node-4 deleted: gone from every flood list after %s", time.Since(t1).Round(100*time.Millisecond))
	c.waitDaemonSet(t, "vxvrf-agent", time.Minute)
}

// testAgentKilled: node-1's agent container is killed over and over
// (alternately SIGKILL of its process and crictl stop) while pods are
// created there, each pinging another node's pod, and deleted. Every pod
// gets its network, and afterwards the node holds exactly one lease and one
// host veth per pod the API has on it.
func testAgentKilled(t *testing.T, c *dsCluster) {
	ctx := context.Background()
	k, peer := c.nodes[0], c.nodes[1]
	peerIP := c.podReady(t, "web-"+peer.name)
	stop, killed := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { killed <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(1500 * time.Millisecond):
			}
			p, ok := c.agentPods(t)[k.name]
			if !ok {
				continue
			}
			id, err := k.container("kube-system", p.Name)
			if err != nil {
				continue // restarting
			}
			if n%2 == 0 {
				pid, err := k.containerPID(id)
				if err != nil || syscall.Kill(pid, syscall.SIGKILL) != nil {
					continue
				}
			} else if _, err := k.crictl("stop", "-t", "0", id); err != nil {
				continue
			}
			n++
		}
	}()
	cidr := c.podCIDR(t, k.name)
	for i := range 6 {
		name := fmt.Sprintf("churn-%d", i)
		p := webPod(name, k.name)
		p.Labels = map[string]string{"app": "churn"}
		ip := c.runPod(t, p)
		if !cidr.Contains(net.ParseIP(ip)) {
			t.Errorf("%s: %s outside %s", name, ip, cidr)
		}
		if err := k.ping(name, peerIP); err != nil {
			t.Errorf("%s → pod on %s: %v", name, peer.name, err)
		}
		c.deletePods(t, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	}
	close(stop)
	n := <-killed
	t.Logf("6 pods created, pinging across nodes, and deleted on %s while its agent was killed %d times", k.name, n)
	if n < 6 {
		t.Errorf("the agent was killed only %d times", n)
	}
	c.waitDaemonSet(t, "vxvrf-agent", time.Minute)
	c.waitReady(t, k, true)
	eventually(t, 30*time.Second, "no leaked lease or veth on "+k.name, func() error {
		pods, err := c.cp.Admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + k.name})
		if err != nil {
			return err
		}
		want := 0
		for _, p := range pods.Items {
			if !p.Spec.HostNetwork {
				want++
			}
		}
		leases, veths, err := k.attachments()
		if err != nil {
			return err
		}
		if len(leases) != want || len(veths) != want {
			return fmt.Errorf("%d leases %v, host veths %v: want %d, the pods on the node", len(leases), leases, veths, want)
		}
		return nil
	})
	if err := k.ping("web-"+k.name, peerIP); err != nil {
		t.Errorf("after the churn, node-1's pod → node-2's pod: %v", err)
	}
}

// attachments are the node's IPAM leases of the network and its host
// veths (by alias).
func (k *kubeletNode) attachments() (leases []json.RawMessage, veths []string, err error) {
	b, err := os.ReadFile(k.host("/run/vxvrf/ipam/vxvrf.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	if err == nil {
		var st struct {
			Leases []json.RawMessage `json:"leases"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, nil, err
		}
		leases = st.Leases
	}
	links, err := chain.Links(k.NetNS)
	if err != nil {
		return nil, nil, err
	}
	for name, alias := range links {
		if strings.HasPrefix(alias, "vxvrf:vxvrf:") {
			veths = append(veths, name)
		}
	}
	return leases, veths, nil
}

// testUpgrade: the DaemonSet's image is set to the upgrade image (another
// VERSION), as `kubectl set image` does, while node-1's pod pings node-2's
// ten times a second: the DaemonSet replaces the agents one node at a time,
// not one ping is lost, every node's binaries are the new ones, and a pod
// started afterwards runs.
func testUpgrade(t *testing.T, c *dsCluster) {
	// The upgrade's image: the same sources built with another VERSION
	// and tag, by the same script as `make image`, imported on every node.
	t0 := time.Now()
	up := filepath.Join(c.dir, "upgrade-image")
	cmd := exec.Command(repoFile(t, "deploy/build-image.sh"), "-o", up, "-i", upgradeImage)
	cmd.Env = append(os.Environ(), "VERSION="+upgradeVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the upgrade image: %v\n%s", err, out)
	}
	for _, k := range c.nodes {
		if out, err := k.run("ctr", "-a", k.sock, "-n", "k8s.io", "images", "import", filepath.Join(up, "vxvrf-cni.oci.tar")); err != nil {
			t.Fatalf("import: %v %s", err, out)
		}
	}
	t.Logf("upgrade image %s built and imported in %s", upgradeImage, time.Since(t0).Round(100*time.Millisecond))
	from, to := c.nodes[0], c.nodes[1]
	ip := c.podReady(t, "web-"+to.name)
	id, err := from.container("default", "web-"+from.name)
	if err != nil {
		t.Fatal(err)
	}
	argv := from.enter(e2eTool("crictl"), "-r", "unix://"+from.sock, "exec", id, "ping", "-i", "0.1", "-W", "1", ip)
	pinger := exec.Command(argv[0], argv[1:]...)
	var pingOut bytes.Buffer
	pinger.Stdout, pinger.Stderr = &pingOut, &pingOut
	if err := pinger.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	t0 = time.Now()
	if _, err := c.kubectl(nil, "-n", "kube-system", "set", "image", "ds/vxvrf-agent", "agent="+upgradeImage); err != nil {
		t.Fatal(err)
	}
	c.waitDaemonSet(t, "vxvrf-agent", 3*time.Minute)
	for _, k := range c.nodes {
		eventually(t, 20*time.Second, k.name+" has the new binaries", func() error {
			for _, p := range testutil.Plugins {
				b, err := os.ReadFile(filepath.Join(k.host("/opt/cni/bin"), p))
				if err != nil {
					return err
				}
				if !bytes.Contains(b, []byte(upgradeVersion)) {
					return fmt.Errorf("%s not replaced yet", p)
				}
			}
			return nil
		})
	}
	took := time.Since(t0)
	time.Sleep(time.Second)
	if out, err := from.exec("web-"+from.name, "killall", "-INT", "ping"); err != nil {
		t.Errorf("stop ping: %v %s", err, out)
	}
	_ = pinger.Wait()
	stats := lastLine(pingOut.String(), "packet loss")
	if !strings.Contains(stats, " 0% packet loss") {
		t.Errorf("ping across the upgrade: %s\n%s", stats, pingOut.String())
	}
	t.Logf("rolling upgrade to %s done in %s; ping across it: %s", upgradeImage, took.Round(100*time.Millisecond), stats)
	for name, p := range c.agentPods(t) {
		if p.Spec.Containers[0].Image != upgradeImage {
			t.Errorf("%s: agent pod %s runs %s", name, p.Name, p.Spec.Containers[0].Image)
		}
	}
	c.noRestarts(t, metav1.ListOptions{LabelSelector: "app=web"})
	c.runPod(t, webPod("after-upgrade", to.name))
}

// testDualStack: the cluster allocates pod CIDRs of both families, and the
// manifest's ConfigMap has an IPv4 range only. An operator adds an IPv6
// range (and default route) to it: every agent sees the ConfigMap change
// and re-renders its node's conflist with a second range set from the
// node's IPv6 pod CIDR. New pods then get an address of each family, each
// inside its node's spec.podCIDRs, and reach each other across nodes over
// IPv6 as over IPv4; the older pods keep their IPv4 traffic.
func testDualStack(t *testing.T, c *dsCluster) {
	ctx := context.Background()
	cms := c.cp.Admin.CoreV1().ConfigMaps("kube-system")
	cm, err := cms.Get(ctx, "vxvrf-cluster", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(cm.Data["cluster.json"]), &cfg); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range cfg["conflist"].(map[string]any)["plugins"].([]any) {
		ipam, ok := p.(map[string]any)["ipam"].(map[string]any)
		if !ok {
			continue
		}
		ipam["ranges"] = append(ipam["ranges"].([]any), []any{map[string]any{"subnet": clusterCIDRv6, "gateway": clusterGatewayv6}})
		ipam["routes"] = append(ipam["routes"].([]any), map[string]any{"dst": "::/0"})
		found = true
	}
	if !found {
		t.Fatal("no ipam in the ConfigMap's conflist")
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cm.Data["cluster.json"] = string(b)
	t0 := time.Now()
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range c.nodes {
		eventually(t, 3*time.Minute, k.name+" renders both families", func() error {
			b, err := os.ReadFile(k.host(conflist))
			if err != nil {
				return err
			}
			if !strings.Contains(string(b), clusterCIDRv6) {
				return fmt.Errorf("no IPv6 range yet")
			}
			return nil
		})
	}
	t.Logf("ConfigMap edited: every node's conflist has the IPv6 range after %s (the kubelet's ConfigMap volume sync, then the agent's inotify)", time.Since(t0).Round(100*time.Millisecond))
	v6 := map[string]string{}
	for _, k := range c.nodes[:2] {
		name := "dual-" + k.name
		c.runPod(t, webPod(name, k.name))
		p, err := c.cp.Admin.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n, err := c.cp.Admin.CoreV1().Nodes().Get(ctx, k.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Status.PodIPs) != 2 || len(n.Spec.PodCIDRs) != 2 {
			t.Fatalf("%s: pod IPs %v, node pod CIDRs %v: want one of each family", name, p.Status.PodIPs, n.Spec.PodCIDRs)
		}
		for _, ip := range p.Status.PodIPs {
			in := false
			for _, c := range n.Spec.PodCIDRs {
				_, cidr, _ := net.ParseCIDR(c)
				in = in || cidr.Contains(net.ParseIP(ip.IP))
			}
			if !in {
				t.Errorf("%s: %s outside %s's pod CIDRs %v", name, ip.IP, k.name, n.Spec.PodCIDRs)
			}
			if net.ParseIP(ip.IP).To4() == nil {
				v6[k.name] = ip.IP
			}
		}
	}
	a, b2 := c.nodes[0], c.nodes[1]
	for _, pr := range [][2]*kubeletNode{{a, b2}, {b2, a}} {
		if err := pr[0].ping("dual-"+pr[0].name, v6[pr[1].name]); err != nil {
			t.Errorf("pod on %s → pod on %s over IPv6 (%s): %v", pr[0].name, pr[1].name, v6[pr[1].name], err)
		}
	}
	t.Logf("dual-stack pods %v reach each other over IPv6 across nodes", v6)
	if err := a.ping("web-"+a.name, c.podReady(t, "web-"+b2.name)); err != nil {
		t.Errorf("an IPv4-only pod after the ConfigMap change: %v", err)
	}
}

// testUninstall: the documented path (deploy/README.md, "Uninstall"):
// kubectl delete -f vxvrf.yaml, the workloads deleted, then the uninstall
// DaemonSet applied; once it is rolled out every node is as the README
// says: no conflist, no binaries, no shared device, no iptables object, no
// lease or state file; net.ipv4.ip_forward stays; libcni's cache is empty.
func testUninstall(t *testing.T, c *dsCluster) {
	ctx := context.Background()
	if _, err := c.kubectl(manifestWithImage(t, manifest, c.image), "delete", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "agent pods gone", func() error {
		if p := c.agentPods(t); len(p) > 0 {
			return fmt.Errorf("%d left", len(p))
		}
		return nil
	})
	// The nodes keep working without the agents.
	if err := c.nodes[0].ping("web-"+c.nodes[0].name, c.podReady(t, "web-"+c.nodes[1].name)); err != nil {
		t.Errorf("pods lost traffic with the agents deleted: %v", err)
	}
	// The workloads.
	if _, err := c.kubectl(nil, "delete", "deployment/spread"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.kubectl(nil, "delete", "service", "-l", "app=web"); err != nil {
		t.Fatal(err)
	}
	c.deletePods(t, metav1.ListOptions{})
	// Drained means the sandboxes are gone too: the kubelet's container GC
	// removes those of deleted pods (once a minute). containerd 1.x runs the
	// network teardown again when it removes a sandbox, which fails without
	// a conflist ("cni plugin not initialized"), so a sandbox left now
	// would stay on the node after the uninstall (README.md).
	t0 := time.Now()
	for _, k := range c.nodes {
		eventually(t, 2*time.Minute, k.name+": the kubelet removes the deleted pods' sandboxes", func() error {
			out, err := k.crictl("pods", "-q", "--namespace", "default")
			if err != nil {
				return err
			}
			if s := strings.TrimSpace(string(out)); s != "" {
				return fmt.Errorf("left: %s", s)
			}
			return nil
		})
	}
	t.Logf("nodes drained (sandboxes removed by the kubelets) %s after the pods were deleted", time.Since(t0).Round(100*time.Millisecond))
	t0 = time.Now()
	c.apply(t, uninstallFile, upgradeImage)
	c.waitDaemonSet(t, "vxvrf-uninstall", 2*time.Minute)
	t.Logf("uninstall DaemonSet Ready on every node after %s", time.Since(t0).Round(100*time.Millisecond))
	for _, k := range c.nodes {
		if fileExists(k.host(conflist)) {
			t.Errorf("%s: conflist left", k.name)
		}
		ents, _ := os.ReadDir(k.host("/opt/cni/bin"))
		for _, e := range ents {
			if e.Name() != "loopback" { // the node's, not ours
				t.Errorf("%s: /opt/cni/bin/%s left", k.name, e.Name())
			}
		}
		_ = filepath.WalkDir(k.host("/run/vxvrf"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				t.Errorf("%s: state file %s left", k.name, p)
			}
			return nil
		})
		if m, _ := filepath.Glob(filepath.Join(k.host("/var/lib/cni"), "results", "vxvrf-*")); len(m) > 0 {
			t.Errorf("%s: libcni cache entries left: %v", k.name, m)
		}
		links, err := chain.Links(k.NetNS)
		if err != nil {
			t.Fatal(err)
		}
		for name := range links {
			if name != "lo" && name != k.Uplink {
				t.Errorf("%s: device %s left", k.name, name)
			}
		}
		// What stays of the firewall (plugins/sysctl-firewall/README.md):
		// the three empty project chains and their jumps (iptables), the
		// empty vxvrf tables (nftables); nothing of the network.
		for _, save := range []string{"iptables-save", "ip6tables-save"} {
			out, err := k.run(save)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(grepLines(string(out), "vxvrf"), "\n") {
				if l != "" && !projectHook.MatchString(l) {
					t.Errorf("%s: %s: object of vxvrf left: %s", k.name, save, l)
				}
			}
		}
		if out, err := k.run("nft", "list", "ruleset"); err == nil && strings.Contains(string(out), "masq-") {
			t.Errorf("%s: nftables chains of the network left:\n%s", k.name, grepLines(string(out), "masq-"))
		}
		if out, err := k.run("sysctl", "-n", "net.ipv4.ip_forward"); err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Errorf("%s: net.ipv4.ip_forward %q %v: the README says it stays", k.name, out, err)
		}
	}
	if _, err := c.kubectl(manifestWithImage(t, uninstallFile, upgradeImage), "delete", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "uninstall pods gone", func() error {
		pods, err := c.cp.Admin.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d left", len(pods.Items))
		}
		return nil
	})
}

// projectHook is an iptables-save line of the project's (empty) hook
// chains or their jumps.
var projectHook = regexp.MustCompile(`^(:VXVRF-(PREROUTING|FORWARD|POSTROUTING) - \[\d+:\d+\]|-A (PREROUTING|FORWARD|POSTROUTING) -j VXVRF-(PREROUTING|FORWARD|POSTROUTING))$`)

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(strings.ToLower(l), sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
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
