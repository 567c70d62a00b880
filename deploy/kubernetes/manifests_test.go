// Package kubernetes_test decodes the manifests strictly with the Kubernetes
// API types and checks what the install depends on: host networking,
// tolerations, the host mounts the installer writes to, the downward-API
// environment, and a cluster config the installer renders for every node.
package kubernetes_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/vxvrf/cni/deploy/internal/install"
)

const manifest = "vxvrf.yaml"

type objects struct {
	sa *corev1.ServiceAccount
	cm *corev1.ConfigMap
	ds *appsv1.DaemonSet
}

// load splits the file into documents and decodes each strictly (unknown or
// duplicate fields are errors) into the API type its apiVersion/kind names.
func load(t *testing.T) objects {
	t.Helper()
	f, err := os.Open(manifest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var o objects
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
		var into any
		switch gvk {
		case corev1.SchemeGroupVersion.WithKind("ServiceAccount"):
			o.sa = &corev1.ServiceAccount{}
			into = o.sa
		case corev1.SchemeGroupVersion.WithKind("ConfigMap"):
			o.cm = &corev1.ConfigMap{}
			into = o.cm
		case appsv1.SchemeGroupVersion.WithKind("DaemonSet"):
			o.ds = &appsv1.DaemonSet{}
			into = o.ds
		default:
			t.Fatalf("document %d: unexpected %v", i, gvk)
		}
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("document %d (%s): strict decode: %v", i, tm.Kind, err)
		}
	}
	if o.sa == nil || o.cm == nil || o.ds == nil {
		t.Fatalf("want a ServiceAccount, a ConfigMap and a DaemonSet, got %+v", o)
	}
	return o
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(append(out, l...), '\n')
		}
	}
	return out
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
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Error("the installer does not talk to the API server: no token")
	}
	for _, key := range []string{"node.kubernetes.io/not-ready", "node-role.kubernetes.io/control-plane", "node.kubernetes.io/network-unavailable"} {
		ok := slices.ContainsFunc(ps.Tolerations, func(tl corev1.Toleration) bool {
			return tl.Key == key && tl.Operator == corev1.TolerationOpExists && tl.Effect == ""
		})
		if !ok {
			t.Errorf("no toleration {key: %s, operator: Exists} (all effects)", key)
		}
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers", len(ps.Containers))
	}
	c := ps.Containers[0]
	args := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	if _, ok := args["--watch"]; !ok {
		t.Errorf("args %v: the DaemonSet's installer must --watch", c.Args)
	}

	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["NODE_NAME"] != "spec.nodeName" || env["NODE_IP"] != "status.hostIP" {
		t.Errorf("downward API env %v: want NODE_NAME=spec.nodeName, NODE_IP=status.hostIP", env)
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
	if sc == nil || sc.Privileged != nil && *sc.Privileged || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("the installer needs no privilege and no capability: %+v", sc)
	}
}

type plugin struct {
	Type  string `json:"type"`
	VXLAN *struct {
		Local   string   `json:"local"`
		Remotes []string `json:"remotes"`
	} `json:"vxlan"`
}

// The ConfigMap's cluster config renders for each of its nodes into a
// conflist libcni loads, with this node's range and the others as remotes.
func TestConfigMapRendersForEveryNode(t *testing.T) {
	o := load(t)
	data := o.cm.Data["cluster.json"]
	c, err := install.ParseCluster([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Nodes) < 3 {
		t.Fatalf("the example lists %d nodes, want 3", len(c.Nodes))
	}
	for _, n := range c.Nodes {
		v, err := c.Resolve(install.Local{Name: n.Name, Address: n.Address}, nil)
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
	}
}
