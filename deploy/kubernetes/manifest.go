// Package kubernetes holds the manifests (vxvrf.yaml) and decodes them
// strictly into the Kubernetes API types, for the manifest tests and the
// real-cluster suite, which applies exactly these objects.
package kubernetes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Objects are the manifest's objects, one of each kind.
type Objects struct {
	ServiceAccount     *corev1.ServiceAccount
	ClusterRole        *rbacv1.ClusterRole
	ClusterRoleBinding *rbacv1.ClusterRoleBinding
	ConfigMap          *corev1.ConfigMap
	DaemonSet          *appsv1.DaemonSet
}

// Load reads a manifest file: see Decode.
func Load(path string) (*Objects, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Decode(f)
}

// Decode splits a multi-document YAML stream and decodes each document
// strictly (unknown or duplicate fields are errors) into the API type its
// apiVersion/kind names; another kind, or a kind twice, is an error. Kinds
// the stream lacks stay nil.
func Decode(r io.Reader) (*Objects, error) {
	var o Objects
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for i := 0; ; i++ {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var into any
		switch gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind); gvk {
		case corev1.SchemeGroupVersion.WithKind("ServiceAccount"):
			into = set(&o.ServiceAccount)
		case rbacv1.SchemeGroupVersion.WithKind("ClusterRole"):
			into = set(&o.ClusterRole)
		case rbacv1.SchemeGroupVersion.WithKind("ClusterRoleBinding"):
			into = set(&o.ClusterRoleBinding)
		case corev1.SchemeGroupVersion.WithKind("ConfigMap"):
			into = set(&o.ConfigMap)
		case appsv1.SchemeGroupVersion.WithKind("DaemonSet"):
			into = set(&o.DaemonSet)
		default:
			return nil, fmt.Errorf("document %d: unexpected %v", i, gvk)
		}
		if into == nil {
			return nil, fmt.Errorf("document %d: a second %s", i, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			return nil, fmt.Errorf("document %d (%s): strict decode: %w", i, tm.Kind, err)
		}
	}
	return &o, nil
}

// set allocates *p and returns it, or nil when *p was already set.
func set[T any](p **T) any {
	if *p != nil {
		return nil
	}
	*p = new(T)
	return *p
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
