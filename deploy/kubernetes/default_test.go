package kubernetes_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/vxvrf/cni/conflist"
	"github.com/vxvrf/cni/deploy/internal/install"
)

// clusterKeys are the keys in which a cluster's conflist may differ from the
// shipped default chain (conflist.Default): the overlay (VXLAN, bridge) and
// the cluster's address plan. Everything else in the ConfigMap's chain is
// the default's, so a change to the default reaches the DaemonSet (or this
// test says where they part).
var clusterKeys = map[string][]string{
	"vrf-vxlan-bridge": {"vxlan", "bridge"},
	"lockfile-ipam":    {"ipam.ranges", "ipam.routes"},
}

// The DaemonSet's ConfigMap carries the default chain: the same stages in
// the same order, the same versions, and the same values for every key but
// the cluster's own (clusterKeys).
func TestConfigMapIsTheDefaultChain(t *testing.T) {
	o := load(t)
	c, err := install.ParseCluster([]byte(o.cm.Data["cluster.json"]))
	if err != nil {
		t.Fatal(err)
	}
	var cm, def map[string]any
	if err := json.Unmarshal(c.Conflist, &cm); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(conflist.Default, &def); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cniVersion", "cniVersions", "name"} {
		if !reflect.DeepEqual(cm[k], def[k]) {
			t.Errorf("%s: ConfigMap %v, default %v", k, cm[k], def[k])
		}
	}
	cmPlugins, defPlugins := stages(cm), stages(def)
	if len(cmPlugins) != len(defPlugins) {
		t.Fatalf("ConfigMap has %d stages, the default %d", len(cmPlugins), len(defPlugins))
	}
	for i, d := range defPlugins {
		p := cmPlugins[i]
		typ, _ := d["type"].(string)
		if p["type"] != typ {
			t.Errorf("plugins[%d]: ConfigMap %v, default %s", i, p["type"], typ)
			continue
		}
		compare(t, typ, "", p, d, clusterKeys[typ])
	}
}

func stages(conf map[string]any) []map[string]any {
	var out []map[string]any
	ps, _ := conf["plugins"].([]any)
	for _, p := range ps {
		m, _ := p.(map[string]any)
		out = append(out, m)
	}
	return out
}

// compare reports every key under prefix whose value differs between the
// ConfigMap's stage and the default's, but for the allowed paths.
func compare(t *testing.T, typ, prefix string, cm, def map[string]any, allowed []string) {
	t.Helper()
	keys := map[string]bool{}
	for k := range cm {
		keys[k] = true
	}
	for k := range def {
		keys[k] = true
	}
	for k := range keys {
		path := prefix + k
		if slices.Contains(allowed, path) {
			continue
		}
		a, aok := cm[k].(map[string]any)
		b, bok := def[k].(map[string]any)
		if aok && bok {
			compare(t, typ, path+".", a, b, allowed)
			continue
		}
		if !reflect.DeepEqual(cm[k], def[k]) {
			t.Errorf("%s: %s is %v in the ConfigMap, %v in conflist/vxvrf.conflist", typ, path, cm[k], def[k])
		}
	}
}
