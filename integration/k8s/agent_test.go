//go:build k8s

package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	manifests "github.com/vxvrf/cni/deploy/kubernetes"
	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// vxlanDev is the VXLAN device of the manifest's network (VNI 4244).
const vxlanDev = "vxlan-4244"

// repoFile is a path in the repository.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// agentBinary is $VXVRF_BIN/vxvrf-agent (make builds it), else built here.
func agentBinary(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("VXVRF_BIN"); d != "" {
		if p := filepath.Join(d, "vxvrf-agent"); fileExists(p) {
			return p
		}
	}
	out := filepath.Join(t.TempDir(), "vxvrf-agent")
	cmd := exec.Command("go", "build", "-o", out, "./deploy/agent")
	cmd.Dir = repoFile(t, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vxvrf-agent: %v\n%s", err, b)
	}
	return out
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// eventually retries f every 200 ms until it succeeds or d passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < d {
		if err = f(); err == nil {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, d, err)
	return 0
}

// agentNode is a lab node running vxvrf-agent, with its own root (its
// /opt/cni/bin, /etc/cni/net.d and /run, as a real node has).
type agentNode struct {
	*netsim.Node
	name   string
	root   string
	config string // its cluster.json (the ConfigMap's, state dirs under root)
	agent  *proc
	args   []string
}

func (n *agentNode) binDir() string   { return filepath.Join(n.root, "opt/cni/bin") }
func (n *agentNode) confDir() string  { return filepath.Join(n.root, "etc/cni/net.d") }
func (n *agentNode) conflist() string { return filepath.Join(n.confDir(), "10-vxvrf.conflist") }

// floodList is the flood list of the VXLAN device in namespace in (nil:
// no device).
func floodList(in *netsim.NS) ([]string, error) {
	out, err := in.In("bridge", "fdb", "show", "dev", vxlanDev)
	if err != nil {
		if strings.Contains(string(out), "does not exist") || strings.Contains(err.Error(), "does not exist") {
			return nil, nil
		}
		return nil, err
	}
	list := []string{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "00:00:00:00:00:00" && f[1] == "dst" {
			list = append(list, f[2])
		}
	}
	slices.Sort(list)
	return list, nil
}

// waitFlood waits until the flood list in namespace in is want.
func waitFlood(t *testing.T, name string, in *netsim.NS, d time.Duration, want ...string) time.Duration {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	return eventually(t, d, name+" flood list", func() error {
		got, err := floodList(in)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("flood list %v, want %v", got, want)
		}
		return nil
	})
}

func (n *agentNode) wantFlood(t *testing.T, d time.Duration, want ...string) time.Duration {
	t.Helper()
	return waitFlood(t, n.name, n.NS, d, want...)
}

// rendered reads the node's conflist: see readRendered.
func (n *agentNode) rendered() (local string, remotes []string, start string, err error) {
	return readRendered(n.conflist())
}

// readRendered reads a rendered conflist: vxlan local/remotes (sorted) and
// the first IPAM range's start.
func readRendered(path string) (local string, remotes []string, start string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, "", err
	}
	var l struct {
		Plugins []struct {
			Type  string `json:"type"`
			VXLAN *struct {
				Local   string   `json:"local"`
				Remotes []string `json:"remotes"`
			} `json:"vxlan"`
			IPAM *struct {
				Ranges [][]struct {
					RangeStart string `json:"rangeStart"`
				} `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return "", nil, "", err
	}
	for _, p := range l.Plugins {
		if p.VXLAN != nil {
			local, remotes = p.VXLAN.Local, p.VXLAN.Remotes
		}
		if p.IPAM != nil && len(p.IPAM.Ranges) > 0 {
			start = p.IPAM.Ranges[0][0].RangeStart
		}
	}
	slices.Sort(remotes)
	return local, remotes, start, nil
}

// health GETs path from the agent's health endpoint inside the node.
func (n *agentNode) health(path string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: nsDialer(n.NS)}}
	resp, err := c.Get("http://127.0.0.1:9466" + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (n *agentNode) startAgent(t *testing.T, dir string) {
	t.Helper()
	n.agent = start(t, n.NS, dir, "agent-"+n.name, nil, n.args[0], n.args[1:]...)
}

// setup is the control plane, the manifest's RBAC and a kubeconfig for its
// service account, and the nodes' cluster configs.
type setup struct {
	cp      *ControlPlane
	lab     *netsim.Cluster
	objs    *manifests.Objects
	agentKC string
	agent   string
	plugins string
	dir     string
}

func newSetup(t *testing.T, nodes int) *setup {
	t.Helper()
	need(t, "etcd", k8sBin("kube-apiserver"), "bridge", "ip")
	t0 := time.Now()
	lab, err := netsim.NewCluster("k8a", nodes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	s := &setup{lab: lab, dir: t.TempDir()}
	s.cp = startControlPlane(t, lab.Router, netsim.UnderlayGateway)
	t.Logf("lab and control plane up after %s", time.Since(t0).Round(time.Millisecond))
	s.objs, err = manifests.Load(repoFile(t, "deploy/kubernetes/vxvrf.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := s.cp.Admin
	if _, err := a.CoreV1().ServiceAccounts(s.objs.ServiceAccount.Namespace).Create(ctx, s.objs.ServiceAccount, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RbacV1().ClusterRoles().Create(ctx, s.objs.ClusterRole, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RbacV1().ClusterRoleBindings().Create(ctx, s.objs.ClusterRoleBinding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The agent authenticates as the manifest's service account, so the
	// test fails if the ClusterRole lacks what the agent needs.
	exp := int64(3600)
	tok, err := a.CoreV1().ServiceAccounts(s.objs.ServiceAccount.Namespace).CreateToken(ctx, s.objs.ServiceAccount.Name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.agentKC = s.cp.kubeconfig(t, "vxvrf-agent", &clientcmdapi.AuthInfo{Token: tok.Status.Token})
	s.agent = agentBinary(t)
	s.plugins = testutil.PluginDir(t, testutil.Plugins...)
	t.Logf("agent and plugins built after %s", time.Since(t0).Round(time.Millisecond))
	return s
}

// node prepares lab node i (0-based) as Kubernetes node name.
func (s *setup) node(t *testing.T, i int, name string) *agentNode {
	t.Helper()
	n := &agentNode{Node: s.lab.Nodes[i], name: name, root: filepath.Join(s.dir, name)}
	var c map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s.objs.ConfigMap.Data["cluster.json"]), &c); err != nil {
		t.Fatal(err)
	}
	// The node's own /run: simulated nodes share the host's file system.
	var err error
	if c["conflist"], err = chain.SetStateDirs(c["conflist"], filepath.Join(n.root, "run")); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c)
	n.config = filepath.Join(n.root, "etc/vxvrf/cluster.json")
	if err := os.MkdirAll(filepath.Dir(n.config), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.config, b, 0o644); err != nil {
		t.Fatal(err)
	}
	n.args = []string{s.agent, "--kubeconfig=" + s.agentKC, "--node-name=" + name, "--config=" + n.config,
		"--src=" + s.plugins, "--cni-bin-dir=" + n.binDir(), "--cni-conf-dir=" + n.confDir(),
		"--health-addr=127.0.0.1:9466"}
	return n
}

// createNode registers a Node as a kubelet would (InternalIP), with the
// given pod CIDRs (empty: not allocated yet).
func (s *setup) createNode(t *testing.T, name, addr string, cidrs ...string) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: cidrs}}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	created, err := s.cp.Admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: addr}, {Type: corev1.NodeHostName, Address: name}}
	if _, err := s.cp.Admin.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (s *setup) patchNode(t *testing.T, name, patch string, sub ...string) {
	t.Helper()
	if _, err := s.cp.Admin.CoreV1().Nodes().Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, sub...); err != nil {
		t.Fatalf("patch node %s %s: %v", name, patch, err)
	}
}

// addPod runs the node's rendered conflist from the binaries the agent
// installed, in a new pod namespace, as the node's runtime would.
func (s *setup) addPod(t *testing.T, n *agentNode, i int) net.IP {
	t.Helper()
	list, err := chain.Load(n.conflist())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := chain.New(list, []string{n.binDir()}, filepath.Join(n.root, "var/lib/cni"), n.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	pod, err := s.lab.AddPod(i, "p")
	if err != nil {
		t.Fatal(err)
	}
	rt := chain.RuntimeConf{ContainerID: "pod-" + n.name, NetNS: pod.Path, IfName: "eth0"}
	res, err := ch.AddCurrent(context.Background(), rt)
	if err != nil {
		t.Fatalf("ADD on %s: %v", n.name, err)
	}
	ips := chain.PodIPs(res, pod.Path, "eth0")
	if len(ips) == 0 {
		t.Fatalf("no pod address on %s: %+v", n.name, res)
	}
	return ips[0].Address.IP
}

func ping(from *netsim.NS, to net.IP) error {
	_, err := from.In("ping", "-c", "1", "-W", "2", to.String())
	return err
}

// TestAgentFollowsNodes runs vxvrf-agent on lab nodes against a real
// etcd + kube-apiserver, authenticated as the manifest's service account
// (so its RBAC is what is tested), and changes Nodes through the API.
func TestAgentFollowsNodes(t *testing.T) {
	s := newSetup(t, 3)
	n1, n2, n3 := s.node(t, 0, "node-1"), s.node(t, 1, "node-2"), s.node(t, 2, "node-3")
	addr := func(n *agentNode) string { return n.Addr.String() }

	// node-1 is registered without pod CIDRs (the controller-manager has
	// not allocated yet): the agent must not render, and say why.
	s.createNode(t, "node-1", addr(n1))
	s.createNode(t, "node-2", addr(n2), "10.244.2.0/24")
	n1.startAgent(t, s.dir)
	n2.startAgent(t, s.dir)
	eventually(t, 30*time.Second, "node-1 readiness reports the missing pod CIDR", func() error {
		code, body, err := n1.health("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "no pod CIDR") {
			return fmt.Errorf("readyz %d %s", code, body)
		}
		return nil
	})
	if fileExists(n1.conflist()) {
		t.Fatal("node-1's conflist was written before the node had a pod CIDR")
	}
	if code, body, err := n1.health("/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("healthz while waiting: %d %s %v", code, body, err)
	}

	// The pod CIDR arrives: both nodes render, each with the other as peer;
	// the range starts after the node's own address on the bridge
	// (bridge.nodeAddresses, the pod CIDR's first address).
	s.patchNode(t, "node-1", `{"spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24"]}}`)
	took := eventually(t, 10*time.Second, "node-1 and node-2 render", func() error {
		for _, c := range []struct {
			n           *agentNode
			peer, start string
		}{{n1, addr(n2), "10.244.1.2"}, {n2, addr(n1), "10.244.2.2"}} {
			local, remotes, start, err := c.n.rendered()
			if err != nil {
				return err
			}
			if local != addr(c.n) || !slices.Equal(remotes, []string{c.peer}) || start != c.start {
				return fmt.Errorf("%s: local %s remotes %v rangeStart %s", c.n.name, local, remotes, start)
			}
		}
		return nil
	})
	t.Logf("conflists rendered %s after the pod CIDR was set", took.Round(time.Millisecond))
	for _, n := range []*agentNode{n1, n2} {
		eventually(t, 10*time.Second, n.name+" ready", func() error {
			code, body, err := n.health("/readyz")
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	}

	// A pod on each node, from the rendered conflist and the binaries the
	// agent installed: they reach each other over VXLAN.
	ip1 := s.addPod(t, n1, 0)
	ip2 := s.addPod(t, n2, 1)
	pod1 := &netsim.NS{Name: s.lab.Name + "-n1-p"}
	pod2 := &netsim.NS{Name: s.lab.Name + "-n2-p"}
	if err := ping(pod1, ip2); err != nil {
		t.Fatalf("pod on node-1 → pod on node-2: %v", err)
	}
	if err := ping(pod2, ip1); err != nil {
		t.Fatalf("pod on node-2 → pod on node-1: %v", err)
	}
	n1.wantFlood(t, time.Second, addr(n2))

	// node-3 joins: within seconds both others flood to it, without any ADD;
	// its pod reaches the pods that were there before it.
	s.createNode(t, "node-3", addr(n3), "10.244.3.0/24")
	n3.startAgent(t, s.dir)
	took = n1.wantFlood(t, 10*time.Second, addr(n2), addr(n3))
	n2.wantFlood(t, 10*time.Second, addr(n1), addr(n3))
	t.Logf("node-3 joined: node-1's flood list had it after %s", took.Round(time.Millisecond))
	eventually(t, 10*time.Second, "node-3 renders", func() error {
		_, remotes, _, err := n3.rendered()
		if err != nil {
			return err
		}
		if !slices.Equal(remotes, []string{addr(n1), addr(n2)}) {
			return fmt.Errorf("remotes %v", remotes)
		}
		return nil
	})
	ip3 := s.addPod(t, n3, 2)
	pod3 := &netsim.NS{Name: s.lab.Name + "-n3-p"}
	for _, c := range []struct {
		from *netsim.NS
		to   net.IP
	}{{pod3, ip1}, {pod3, ip2}, {pod1, ip3}, {pod2, ip3}} {
		if err := ping(c.from, c.to); err != nil {
			t.Errorf("%s → %s: %v", c.from.Name, c.to, err)
		}
	}

	// node-3's VTEP moves (annotation): the old entry goes, the new comes.
	s.patchNode(t, "node-3", fmt.Sprintf(`{"metadata":{"annotations":{%q:"198.18.0.33"}}}`, "vxvrf.io/vtep-address"))
	n1.wantFlood(t, 10*time.Second, addr(n2), "198.18.0.33")
	n2.wantFlood(t, 10*time.Second, addr(n1), "198.18.0.33")
	eventually(t, 10*time.Second, "node-1's conflist follows", func() error {
		_, remotes, _, err := n1.rendered()
		if err != nil {
			return err
		}
		if !slices.Equal(remotes, []string{addr(n2), "198.18.0.33"}) {
			return fmt.Errorf("remotes %v", remotes)
		}
		return nil
	})

	// node-3 leaves: its entry is gone everywhere.
	n3.agent.Stop(syscall.SIGTERM)
	if err := s.cp.Admin.CoreV1().Nodes().Delete(context.Background(), "node-3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	n1.wantFlood(t, 10*time.Second, addr(n2))
	n2.wantFlood(t, 10*time.Second, addr(n1))

	// A pod ADD that read an older conflist puts back a stale list: the
	// agent sees the FDB change and restores the cluster's.
	if _, err := n1.In("bridge", "fdb", "append", "00:00:00:00:00:00", "dev", vxlanDev, "dst", "198.18.0.77"); err != nil {
		t.Fatal(err)
	}
	n1.wantFlood(t, 10*time.Second, addr(n2))

	// Restart safety: node-1's agent is killed; while it is down a node
	// joins and a stale entry appears; the new agent reconciles both, and
	// the running pods keep their traffic throughout.
	idx := linkIndex(t, n1, vxlanDev)
	n1.agent.Stop(syscall.SIGKILL)
	if _, err := n1.In("bridge", "fdb", "append", "00:00:00:00:00:00", "dev", vxlanDev, "dst", "198.18.0.99"); err != nil {
		t.Fatal(err)
	}
	s.createNode(t, "node-4", "198.18.0.44", "10.244.4.0/24")
	if err := ping(pod1, ip2); err != nil {
		t.Errorf("pods lost traffic while the agent was down: %v", err)
	}
	n1.startAgent(t, s.dir)
	n1.wantFlood(t, 15*time.Second, addr(n2), "198.18.0.44")
	if got := linkIndex(t, n1, vxlanDev); got != idx {
		t.Errorf("the VXLAN device was recreated (ifindex %d → %d)", idx, got)
	}
	if err := ping(pod1, ip2); err != nil {
		t.Errorf("pods lost traffic across the agent's restart: %v", err)
	}
}

func linkIndex(t *testing.T, n *agentNode, name string) int {
	t.Helper()
	var idx int
	err := n.Do(func(ns.NetNS) error {
		i, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		idx = i.Index
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return idx
}
