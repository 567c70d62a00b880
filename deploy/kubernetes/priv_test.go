package kubernetes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxvrf/cni/deploy/internal/install"
	"github.com/vxvrf/cni/pkg/chain"
	"github.com/vxvrf/cni/pkg/netsim"
	"github.com/vxvrf/cni/pkg/testutil"
)

// TestInstalledChainAcrossNodes runs the ConfigMap's cluster config as the
// DaemonSet would on two simulated nodes (its node list swapped for the
// lab's): the installer copies the built plugins into each node's own
// DESTDIR root and renders that node's conflist, the chain runs from exactly
// those files through libcni, each pod gets an address from its node's
// range, the pods reach each other across the VXLAN peers the installer
// filled in, and each node reaches the other node's pod from its own
// address on the bridge.
func TestInstalledChainAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("privileged multi-node test")
	}
	lab := testutil.NewLab(t, "dp-inst")
	src := testutil.PluginDir(t, testutil.Plugins...)
	o := load(t)
	c, err := install.ParseCluster([]byte(o.cm.Data["cluster.json"]))
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*netsim.Node
	c.Nodes = nil
	for i := range 2 {
		n, err := lab.AddNode(fmt.Sprintf("n%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		c.Nodes = append(c.Nodes, install.Node{Name: n.Name, Address: n.Addr.String(), PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", i)}})
	}
	cfgJSON, _ := json.Marshal(c)
	cfg := filepath.Join(t.TempDir(), "cluster.json")
	if err := os.WriteFile(cfg, cfgJSON, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type attached struct {
		ch   *chain.Chain
		rt   chain.RuntimeConf
		pod  *netsim.NS
		addr net.IP
	}
	var pods []attached
	for i, n := range nodes {
		root := t.TempDir()
		opts := &install.Options{Root: root, SrcDir: src, Plugins: testutil.Plugins, Config: cfg,
			Local: install.Local{Name: n.Name, Address: n.Addr.String()}, Logf: t.Logf}
		if err := opts.Once(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(opts.ConfDirPath(), c.ConflistName))
		if err != nil {
			t.Fatal(err)
		}
		// The node's /run: each simulated node has its own.
		b, err = chain.SetStateDirs(b, filepath.Join(root, "run"))
		if err != nil {
			t.Fatal(err)
		}
		list, err := chain.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := chain.New(list, []string{opts.BinDirPath()}, filepath.Join(root, "var/lib/cni"), n.NetNS)
		if err != nil {
			t.Fatal(err)
		}
		pod, err := lab.AddNS(fmt.Sprintf("p%d", i+1))
		if err != nil {
			t.Fatal(err)
		}
		rt := chain.RuntimeConf{ContainerID: fmt.Sprintf("dp-inst-%d", i), NetNS: pod.Path, IfName: "eth0"}
		res, err := ch.AddCurrent(ctx, rt)
		if err != nil {
			t.Fatalf("%s: ADD with the installed conflist: %v\n%s", n.Name, err, b)
		}
		a := attached{ch: ch, rt: rt, pod: pod}
		pods = append(pods, a)
		t.Cleanup(func() {
			if err := ch.Del(context.Background(), rt); err != nil {
				t.Errorf("%s: DEL: %v", n.Name, err)
			}
		})
		for _, ip := range res.IPs {
			if ip.Address.IP.To4() != nil {
				pods[i].addr = ip.Address.IP
			}
		}
		_, mine, _ := net.ParseCIDR(c.Nodes[i].PodCIDRs[0])
		if got := pods[i].addr; got == nil || !mine.Contains(got) {
			t.Fatalf("%s: pod address %v is not from the node's range %s", n.Name, got, mine)
		}
	}
	// Across nodes, both ways; a few tries for ARP over the overlay.
	for i, p := range pods {
		peer := pods[1-i].addr.String()
		var out []byte
		var err error
		for try := 0; try < 5; try++ {
			if out, err = p.pod.In("ping", "-c", "1", "-W", "1", peer); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("pod on n%d cannot reach %s on the other node: %v\n%s", i+1, peer, err, out)
		}
	}
	// Node -> pod on the other node (what a Service DNAT, a NodePort or a
	// probe from the node needs), from the node's own address on the
	// bridge (bridge.nodeAddresses, rendered by the installer).
	for i, n := range nodes {
		peer := pods[1-i].addr.String()
		var out []byte
		var err error
		for try := 0; try < 5; try++ {
			if out, err = n.In("ping", "-c", "1", "-W", "1", peer); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("node n%d cannot reach the pod %s on the other node: %v\n%s", i+1, peer, err, out)
		}
		want := fmt.Sprintf("src 10.244.%d.1", i)
		if out, _ := n.In("ip", "-4", "route", "get", peer); !strings.Contains(string(out), want) {
			t.Errorf("node n%d: route to %s %q, want %s (its node address)", i+1, peer, out, want)
		}
	}
	if t.Failed() {
		for _, n := range nodes {
			out, _ := n.In("bridge", "fdb", "show")
			t.Logf("%s fdb:\n%s", n.Name, strings.TrimSpace(string(out)))
		}
	}
}
