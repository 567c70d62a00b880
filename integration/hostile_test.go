package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// hostilePrevResults are results a runtime or a broken plugin earlier in the
// chain can send: null entries, addresses without a prefix, indexes that
// point nowhere. Every stage must refuse them (6 or 7) before it changes
// anything, and never panic.
var hostilePrevResults = map[string]string{
	"null interface":     `{"interfaces":[null],"ips":[{"address":"10.244.1.5/24"}]}`,
	"null ip":            `{"interfaces":[{"name":"eth0"}],"ips":[null]}`,
	"null route":         `{"ips":[{"address":"10.244.1.5/24"}],"routes":[null]}`,
	"all null":           `{"interfaces":[null],"ips":[null],"routes":[null]}`,
	"address no prefix":  `{"ips":[{"address":"10.244.1.5"}]}`,
	"index out of range": `{"interfaces":[{"name":"eth0"}],"ips":[{"address":"10.244.1.5/24","interface":3}]}`,
	"route without dst":  `{"ips":[{"address":"10.244.1.5/24"}],"routes":[{"gw":"10.244.1.1"}]}`,
	"ips not a list":     `{"ips":{"address":"10.244.1.5/24"}}`,
}

// nodeSnapshot is what a refused command must leave as it was.
type nodeSnapshot struct {
	Links   map[string]string
	Rules   string
	Sysctls map[string]string
	Files   map[string]string
	PodLink map[string]string
}

func snapshot(t *testing.T, node *netsim.Node, pod *netsim.NS, root string) nodeSnapshot {
	t.Helper()
	links, err := chain.Links(node.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := chain.Ruleset(node.NS)
	if err != nil {
		t.Fatal(err)
	}
	podLinks, err := chain.Links(pod.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	out, err := node.In("sh", "-c", "cd /proc/sys/net && grep -r . ipv4/ip_forward ipv4/conf/all ipv4/conf/default ipv6/conf/all ipv6/conf/default 2>/dev/null | grep -v stable_secret")
	if err != nil {
		t.Fatal(err)
	}
	sysctls := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			sysctls[k] = v
		}
	}
	// Directories count too: a refused ADD must not create its state dir.
	files := chain.StateFiles(root)
	_ = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && p != root {
			files[p] = info.Mode().String()
		}
		return nil
	})
	return nodeSnapshot{Links: links, Rules: rules, Sysctls: sysctls, Files: files, PodLink: podLinks}
}

// TestHostilePrevResultChangesNothing feeds every stage, on ADD and CHECK,
// each hostile prevResult, through the real binary inside a node, for an
// old and a new spec version. Each must answer a CNI error 6 or 7 and leave
// the node, the pod and the state directories exactly as they were.
func TestHostilePrevResultChangesNothing(t *testing.T) {
	lab, node := testutil.NewNode(t, "hostile")
	pod := testutil.AddNS(t, lab, "pod")
	root := filepath.Join(t.TempDir(), "state")
	conf, err := chain.SetStateDirs(testutil.DefaultConflist(t), root)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Name    string           `json:"name"`
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(conf, &list); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, node, pod, root)
	for _, plugin := range list.Plugins {
		typ := plugin["type"].(string)
		for _, version := range []string{"0.4.0", "1.0.0"} {
			for name, prev := range hostilePrevResults {
				for _, cmd := range []string{"ADD", "CHECK"} {
					stdin := testutil.Config(plugin).Keys(map[string]any{"name": list.Name, "cniVersion": version}).Prev([]byte(prev)).Bytes()
					what := fmt.Sprintf("%s %s %s (%s)", typ, cmd, name, version)
					o := testutil.Stage{Plugin: typ, In: node.NetNS}.Run(t, cmd, "hostile-1", pod, stdin)
					if o.Err == nil {
						t.Errorf("%s: accepted: %s", what, o.Stdout)
						continue
					}
					var e types.Error
					if err := json.Unmarshal(o.Stdout, &e); err != nil || (e.Code != types.ErrDecodingFailure && e.Code != types.ErrInvalidNetworkConfig) {
						t.Errorf("%s: want CNI error 6 or 7, got stdout %q stderr %q", what, o.Stdout, firstLine(o.Stderr))
					}
					if strings.Contains(string(o.Stderr), "goroutine ") {
						t.Errorf("%s: panicked: %s", what, firstLine(o.Stderr))
					}
					if after := snapshot(t, node, pod, root); !reflect.DeepEqual(before, after) {
						t.Fatalf("%s changed the node:\n%s", what, diffSnapshots(before, after))
					}
				}
			}
		}
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

func diffSnapshots(a, b nodeSnapshot) string {
	var d []string
	diffMap := func(what string, x, y map[string]string) {
		for k, v := range y {
			if xv, ok := x[k]; !ok {
				d = append(d, fmt.Sprintf("+%s %s=%s", what, k, v))
			} else if xv != v {
				d = append(d, fmt.Sprintf("~%s %s: %s -> %s", what, k, xv, v))
			}
		}
		for k := range x {
			if _, ok := y[k]; !ok {
				d = append(d, fmt.Sprintf("-%s %s", what, k))
			}
		}
	}
	diffMap("link", a.Links, b.Links)
	diffMap("pod link", a.PodLink, b.PodLink)
	diffMap("sysctl", a.Sysctls, b.Sysctls)
	diffMap("file", a.Files, b.Files)
	if a.Rules != b.Rules {
		d = append(d, "ruleset changed:\n"+b.Rules)
	}
	return strings.Join(d, "\n")
}
