package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/deploy/internal/install"
	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// Uninstall on a node with a pod: the conflist goes, the binaries and the
// network's devices stay (the pod's DEL needs them). After the DEL a second
// Uninstall runs the chain's GC: devices, firewall rules and state go, and
// the binaries with them. Everything runs inside a lab node.
func TestUninstallWaitsForPods(t *testing.T) {
	if testing.Short() {
		t.Skip("privileged")
	}
	lab, node := testutil.NewNode(t, "k8un")
	root := t.TempDir()
	cl := struct {
		Conflist json.RawMessage `json:"conflist"`
		Nodes    []install.Node  `json:"nodes"`
	}{Nodes: []install.Node{{Name: "n1", Address: node.Addr.String(), PodCIDRs: []string{"10.244.1.0/24"}}, {Name: "n2", Address: "198.18.0.99"}}}
	var err error
	base := []byte(`{"cniVersion":"1.0.0","cniVersions":["1.0.0","1.1.0"],"name":"vxvrf","plugins":[
	 {"type":"infra-ensure"},
	 {"type":"vrf-vxlan-bridge","bridge":{"mac":"02:00:0a:f4:00:01"},"vxlan":{"vni":4244}},
	 {"type":"lockfile-ipam","ipam":{"ranges":[[{"subnet":"10.244.0.0/16","gateway":"10.244.255.254"}]],"routes":[{"dst":"0.0.0.0/0"}]}},
	 {"type":"veth-attach"},
	 {"type":"sysctl-firewall","masquerade":true,"antiSpoofing":true}]}`)
	if cl.Conflist, err = chain.SetStateDirs(base, filepath.Join(root, "run")); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cl)
	cfg := filepath.Join(root, "cluster.json")
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	o := &install.Options{Root: root, SrcDir: testutil.PluginDir(t, testutil.Plugins...), Plugins: testutil.Plugins,
		Config: cfg, Local: install.Local{Name: "n1"}, Logf: t.Logf}
	if err := o.Once(); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(o.ConfDirPath(), install.DefaultConflistName)
	list, err := chain.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := chain.New(list, []string{o.BinDirPath()}, filepath.Join(root, "cache"), node.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	pod := testutil.AddNS(t, lab, "pod")
	rt := chain.RuntimeConf{ContainerID: "c1", NetNS: pod.Path}
	if _, err := ch.AddCurrent(context.Background(), rt); err != nil {
		t.Fatal(err)
	}
	uninstall := func() UninstallReport {
		t.Helper()
		var rep UninstallReport
		err := node.Do(func(ns.NetNS) error {
			var err error
			rep, err = Uninstall(context.Background(), o, ConflistName(cfg))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range rep.Lines() {
			t.Log(l)
		}
		return rep
	}
	links := func() map[string]string {
		l, err := chain.Links(node.NetNS)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	rep := uninstall()
	if fileExists(conf) {
		t.Error("the conflist is still there")
	}
	if len(rep.Attachments) != 1 {
		t.Errorf("attachments %v, want the pod's host veth", rep.Attachments)
	}
	for _, p := range testutil.Plugins {
		if !fileExists(filepath.Join(o.BinDirPath(), p)) {
			t.Errorf("binary %s removed while a pod still needs its DEL", p)
		}
	}
	if _, ok := links()[naming.VXLANName(4244)]; !ok {
		t.Error("the VXLAN device went while a pod uses it")
	}

	if err := ch.Del(context.Background(), rt); err != nil {
		t.Fatalf("the pod's DEL after the first uninstall: %v", err)
	}
	rep = uninstall()
	if len(rep.Attachments) != 0 {
		t.Errorf("attachments %v after the DEL", rep.Attachments)
	}
	for _, p := range testutil.Plugins {
		if fileExists(filepath.Join(o.BinDirPath(), p)) {
			t.Errorf("binary %s left after the final uninstall", p)
		}
	}
	l := links()
	for _, dev := range []string{naming.VXLANName(4244), naming.BridgeName("vxvrf")} {
		if _, ok := l[dev]; ok {
			t.Errorf("%s left after the final uninstall", dev)
		}
	}
	if left := ch.NetworkLeftovers(node.NS); len(left) > 0 {
		t.Errorf("left of the network: %v", left)
	}
	if files := chain.StateFiles(filepath.Join(root, "run")); len(files) > 0 {
		t.Errorf("state left: %v", files)
	}
	entries, _ := os.ReadDir(o.BinDirPath())
	for _, e := range entries {
		t.Errorf("left in the CNI bin dir: %s", e.Name())
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
