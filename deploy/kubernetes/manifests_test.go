// Package kubernetes_test decodes the manifests strictly with the Kubernetes
// API types and checks what the install depends on: host networking,
// tolerations, the host mounts the installer writes to, the downward-API
// environment, and a cluster config the installer renders for every node.
package kubernetes_test

import (
	"encoding/json"
	"fmt"
	"net"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/vxvrf/cni/deploy/internal/install"
	"github.com/vxvrf/cni/deploy/kubernetes"
)

const manifest = "vxvrf.yaml"

type objects struct {
	sa *corev1.ServiceAccount
	cm *corev1.ConfigMap
	ds *appsv1.DaemonSet
	*kubernetes.Objects
}

// load decodes the manifest strictly (kubernetes.Load).
func load(t *testing.T) objects {
	t.Helper()
	o, err := kubernetes.Load(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if o.ServiceAccount == nil || o.ClusterRole == nil || o.ClusterRoleBinding == nil || o.ConfigMap == nil || o.DaemonSet == nil {
		t.Fatalf("want a ServiceAccount, ClusterRole, ClusterRoleBinding, ConfigMap and DaemonSet: %+v", o)
	}
	return objects{sa: o.ServiceAccount, cm: o.ConfigMap, ds: o.DaemonSet, Objects: o}
}

// The strict decoder really is strict: a misspelt field is refused.
func TestStrictDecoderRefusesTypos(t *testing.T) {
	var ds appsv1.DaemonSet
	err := yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      hostNetwrk: true\n"), &ds)
	if err == nil || !strings.Contains(err.Error(), "hostNetwrk") {
		t.Fatalf("typo accepted: %v", err)
	}
}

func TestDaemonSet(t *testing.T) {
	o := load(t)
	ds := o.ds
	ns := ds.Namespace
	if ns == "" || o.cm.Namespace != ns || o.sa.Namespace != ns {
		t.Errorf("namespaces: ds %q cm %q sa %q", ns, o.cm.Namespace, o.sa.Namespace)
	}
	sel := ds.Spec.Selector
	if sel == nil || len(sel.MatchLabels) == 0 {
		t.Fatal("no selector")
	}
	for k, v := range sel.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template labels %v", k, v, ds.Spec.Template.Labels)
		}
	}
	ps := ds.Spec.Template.Spec
	if !ps.HostNetwork {
		t.Error("hostNetwork must be true: the node has no pod network before the install")
	}
	if ps.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", ps.PriorityClassName)
	}
	if ps.ServiceAccountName != o.sa.Name {
		t.Errorf("serviceAccountName %q, the manifest's is %q", ps.ServiceAccountName, o.sa.Name)
	}
	if ps.AutomountServiceAccountToken != nil && !*ps.AutomountServiceAccountToken || o.sa.AutomountServiceAccountToken != nil && !*o.sa.AutomountServiceAccountToken {
		t.Error("the agent reads Nodes from the API server: it needs its token")
	}
	// Every taint, like flannel: a node without the network is useless.
	for _, eff := range []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute} {
		ok := slices.ContainsFunc(ps.Tolerations, func(tl corev1.Toleration) bool {
			return tl.Key == "" && tl.Operator == corev1.TolerationOpExists && tl.Effect == eff
		})
		if !ok {
			t.Errorf("no toleration {operator: Exists, effect: %s}", eff)
		}
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers", len(ps.Containers))
	}
	c := ps.Containers[0]
	if !slices.Equal(c.Command, []string{"/usr/local/bin/vxvrf-agent"}) {
		t.Errorf("command %v: the DaemonSet runs the agent", c.Command)
	}
	args := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	// Both probes reach the agent's health endpoint on the node's loopback
	// (hostNetwork) at --health-addr.
	for name, pr := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("no httpGet probe for %s", name)
			continue
		}
		if got := fmt.Sprintf("%s:%d", pr.HTTPGet.Host, pr.HTTPGet.Port.IntValue()); got != args["--health-addr"] || pr.HTTPGet.Path != name {
			t.Errorf("probe %s at %s%s, the agent serves --health-addr=%s", name, got, pr.HTTPGet.Path, args["--health-addr"])
		}
	}

	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["NODE_NAME"] != "spec.nodeName" {
		t.Errorf("downward API env %v: want NODE_NAME=spec.nodeName", env)
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		volumes[v.Name] = v
	}
	mountOf := func(mountPath string) *corev1.Volume {
		for _, m := range c.VolumeMounts {
			if m.MountPath == mountPath {
				if m.SubPath != "" {
					t.Errorf("mount %s uses subPath: it would never see updates", mountPath)
				}
				v := volumes[m.Name]
				return &v
			}
		}
		t.Errorf("nothing mounted at %s", mountPath)
		return &corev1.Volume{}
	}
	for flag, host := range map[string]string{"--cni-bin-dir": "/opt/cni/bin", "--cni-conf-dir": "/etc/cni/net.d"} {
		v := mountOf(args[flag])
		if v.HostPath == nil || v.HostPath.Path != host {
			t.Errorf("%s=%s is not the host's %s: %+v", flag, args[flag], host, v.VolumeSource)
			continue
		}
		if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate {
			t.Errorf("hostPath %s type %v, want DirectoryOrCreate", host, v.HostPath.Type)
		}
	}
	cfg := args["--config"]
	v := mountOf(path.Dir(cfg))
	if v.ConfigMap == nil || v.ConfigMap.Name != o.cm.Name {
		t.Fatalf("--config=%s is not on the ConfigMap %s: %+v", cfg, o.cm.Name, v.VolumeSource)
	}
	if _, ok := o.cm.Data[path.Base(cfg)]; !ok {
		t.Errorf("ConfigMap has no key %s", path.Base(cfg))
	}
	sc := c.SecurityContext
	if sc == nil || sc.Privileged != nil && *sc.Privileged || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") ||
		!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN"}) || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("the agent needs NET_ADMIN (FDB) and nothing else, read-only root: %+v", sc)
	}
}

// RBAC: get/list/watch on nodes, nothing else, bound to the DaemonSet's
// service account.
func TestRBAC(t *testing.T) {
	o := load(t)
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}}
	if fmt.Sprint(o.ClusterRole.Rules) != fmt.Sprint(want) {
		t.Errorf("ClusterRole rules %+v, want exactly %+v", o.ClusterRole.Rules, want)
	}
	b := o.ClusterRoleBinding
	if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != o.ClusterRole.Name {
		t.Errorf("binding refers to %+v", b.RoleRef)
	}
	if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != o.sa.Name || b.Subjects[0].Namespace != o.sa.Namespace {
		t.Errorf("binding subjects %+v, want the ServiceAccount %s/%s", b.Subjects, o.sa.Namespace, o.sa.Name)
	}
}

type plugin struct {
	Type   string `json:"type"`
	Bridge *struct {
		MAC           string   `json:"mac"`
		NodeAddresses []string `json:"nodeAddresses"`
	} `json:"bridge"`
	IPAM *struct {
		Ranges [][]struct {
			RangeStart string `json:"rangeStart"`
		} `json:"ranges"`
	} `json:"ipam"`
	VXLAN *struct {
		Local   string   `json:"local"`
		Remotes []string `json:"remotes"`
	} `json:"vxlan"`
}

// The ConfigMap's cluster config carries no per-node values (the agent
// takes them from the Nodes) and renders, for three nodes filled in as the
// agent does, into a conflist libcni loads, with each node's range and the
// others as remotes.
func TestConfigMapRendersForEveryNode(t *testing.T) {
	o := load(t)
	c, err := install.ParseCluster([]byte(o.cm.Data["cluster.json"]))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Nodes) != 0 {
		t.Fatalf("the ConfigMap lists %d nodes: it must not need per-node values", len(c.Nodes))
	}
	for i := range 3 {
		c.Nodes = append(c.Nodes, install.Node{Name: fmt.Sprintf("node-%d", i), Address: fmt.Sprintf("192.0.2.%d", 11+i), PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", i)}})
	}
	for _, n := range c.Nodes {
		v, err := c.Resolve(install.Local{Name: n.Name}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := install.Render(c, v)
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		list, err := libcni.ConfListFromBytes(out)
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if list.CNIVersion != "1.1.0" {
			t.Errorf("%s: libcni picks %s, want 1.1.0 (cniVersions)", n.Name, list.CNIVersion)
		}
		var r struct {
			Plugins []plugin `json:"plugins"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(r.Plugins, func(p plugin) bool {
			return p.Type == "vrf-vxlan-bridge"
		})
		if i < 0 || r.Plugins[i].VXLAN == nil {
			t.Fatalf("%s: no vrf-vxlan-bridge with vxlan", n.Name)
		}
		vx := r.Plugins[i].VXLAN
		if vx.Local != n.Address || slices.Contains(vx.Remotes, n.Address) || len(vx.Remotes) != len(c.Nodes)-1 {
			t.Errorf("%s: vxlan local %s remotes %v: want its own address as local and every other node as a remote", n.Name, vx.Local, vx.Remotes)
		}
		// Per-node bridge MACs and the node's own address on the bridge
		// (bridge.nodeAddresses), so Services with endpoints on other
		// nodes work; the node's range starts after it.
		node, start := strings.Replace(n.PodCIDRs[0], ".0/24", ".1/16", 1), strings.Replace(n.PodCIDRs[0], ".0/24", ".2", 1)
		if b := r.Plugins[i].Bridge; b == nil || b.MAC != "" || !slices.Equal(b.NodeAddresses, []string{node}) {
			t.Errorf("%s: bridge %+v, want no mac and nodeAddresses [%s]", n.Name, b, node)
		}
		j := slices.IndexFunc(r.Plugins, func(p plugin) bool { return p.IPAM != nil })
		if j < 0 || r.Plugins[j].IPAM.Ranges[0][0].RangeStart != start {
			t.Errorf("%s: IPAM %+v, want rangeStart %s (after the node address)", n.Name, r.Plugins[j].IPAM, start)
		}
	}
}

// The uninstall DaemonSet: privileged in the host's namespaces (the chain's
// GC removes devices and iptables rules there, from inside the host's root),
// on every node, with the agent's uninstall mode.
func TestUninstallManifest(t *testing.T) {
	o, err := kubernetes.Load("vxvrf-uninstall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if o.DaemonSet == nil || o.ConfigMap != nil || o.ClusterRole != nil {
		t.Fatalf("want only a DaemonSet: %+v", o)
	}
	main := load(t)
	ps := o.DaemonSet.Spec.Template.Spec
	if !ps.HostNetwork || ps.PriorityClassName != "system-node-critical" || !slices.Equal(ps.Tolerations, main.ds.Spec.Template.Spec.Tolerations) {
		t.Errorf("hostNetwork %v, priority %q, tolerations %v: want those of the agent", ps.HostNetwork, ps.PriorityClassName, ps.Tolerations)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Error("the uninstall needs no API access: no token")
	}
	c := ps.Containers[0]
	args := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	for _, k := range []string{"--uninstall", "--wait", "--chroot"} {
		if _, ok := args[k]; !ok {
			t.Errorf("args %v lack %s", c.Args, k)
		}
	}
	// Ready only once the node is clean: the probe asks what --uninstall
	// --wait serves after the uninstall, on its own port.
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || net.JoinHostPort(p.HTTPGet.Host, p.HTTPGet.Port.String()) != args["--health-addr"] || p.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %+v does not ask --health-addr=%s /readyz", p, args["--health-addr"])
	} else if args["--health-addr"] == "127.0.0.1:9466" {
		t.Error("the uninstall's --health-addr is the agent's")
	}
	root := ""
	for _, m := range c.VolumeMounts {
		if m.MountPath == args["--chroot"] {
			root = m.Name
		}
	}
	ok := slices.ContainsFunc(ps.Volumes, func(v corev1.Volume) bool { return v.Name == root && v.HostPath != nil && v.HostPath.Path == "/" })
	if !ok {
		t.Errorf("--chroot=%s is not the host's /", args["--chroot"])
	}
	if c.Image != main.ds.Spec.Template.Spec.Containers[0].Image || !slices.Equal(c.Command, main.ds.Spec.Template.Spec.Containers[0].Command) {
		t.Errorf("image %s %v: want the agent's", c.Image, c.Command)
	}
}
