package vrf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// The VRF-specific refusals (issue 9: a clash between the config and
// existing devices, an overlap in one routing table): each is refused by
// STATUS (50, where the stage can see it) and by ADD (7) through libcni
// with a message naming the devices and the other network, and after the
// runtime's DEL of the refused ADD the node is as it was.

// nodeState is what a refused ADD must not change: the links (type,
// master, alias, mtu, up) and every route and rule of the node, but for
// the IPv6 link-local routes, which the kernel adds by itself as the
// links' DAD completes.
func nodeState(t *testing.T, n *netsim.NS) string {
	t.Helper()
	var links []string
	err := n.Do(func(ns.NetNS) error {
		ls, err := netlinksafe.LinkList()
		if err != nil {
			return err
		}
		names := map[int]string{}
		for _, l := range ls {
			names[l.Attrs().Index] = l.Attrs().Name
		}
		for _, l := range ls {
			a := l.Attrs()
			links = append(links, fmt.Sprintf("%s %s master=%s alias=%q mtu=%d flags=%s", a.Name, l.Type(), names[a.MasterIndex], a.Alias, a.MTU, a.Flags))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(links)
	var routes []string
	for _, l := range strings.Split(in(t, n, "ip", "-4", "route", "show", "table", "all")+in(t, n, "ip", "-6", "route", "show", "table", "all"), "\n") {
		if !strings.Contains(l, "fe80:") {
			routes = append(routes, l)
		}
	}
	return strings.Join(links, "\n") + "\n" + strings.Join(routes, "\n") + "\n" +
		in(t, n, "ip", "-4", "rule") + in(t, n, "ip", "-6", "rule")
}

// tryAdd runs ADD through libcni and returns its CNI error (nil: success;
// then a DEL is registered at cleanup).
func (r *runtime) tryAdd(conf []byte, pod *netsim.NS) *types.Error {
	r.t.Helper()
	l := r.list(conf)
	err := r.do(func() error {
		_, err := r.cni.AddNetworkList(context.Background(), l, r.rt(pod))
		return err
	})
	if err == nil {
		r.t.Cleanup(func() { _ = r.del(conf, pod) })
		return nil
	}
	var e *types.Error
	if !errors.As(err, &e) {
		r.t.Fatalf("ADD %s: not a CNI error: %v", l.Name, err)
	}
	return e
}

// status runs STATUS through libcni and returns its CNI error.
func (r *runtime) status(conf []byte) *types.Error {
	r.t.Helper()
	l := r.list(conf)
	err := r.do(func() error { return r.cni.GetStatusNetworkList(context.Background(), l) })
	if err == nil {
		return nil
	}
	var e *types.Error
	if !errors.As(err, &e) {
		r.t.Fatalf("STATUS %s: not a CNI error: %v", l.Name, err)
	}
	return e
}

// refused checks a refused ADD (code 7, every part of want in the
// message), then runs the runtime's DEL and checks the node is as before
// and the network holds no lease of the pod.
func refused(t *testing.T, r *runtime, node *netsim.Node, conf []byte, pod *netsim.NS, before string, want ...string) {
	t.Helper()
	e := r.tryAdd(conf, pod)
	if e == nil {
		t.Fatalf("ADD accepted, want code 7 with %q", want)
	}
	if e.Code != types.ErrInvalidNetworkConfig {
		t.Errorf("ADD: code %d (%s), want 7", e.Code, e.Msg)
	}
	for _, w := range want {
		if !strings.Contains(e.Msg, w) {
			t.Errorf("ADD: message %q lacks %q", e.Msg, w)
		}
	}
	t.Logf("ADD refused: %s", e.Msg)
	if err := r.del(conf, pod); err != nil {
		t.Fatalf("the runtime's DEL after the refused ADD: %v", err)
	}
	if after := nodeState(t, node.NS); after != before {
		t.Errorf("the refused ADD and its DEL changed the node:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if leases := leaseFiles(t, conf, r.rt(pod).ContainerID); leases != "" {
		t.Errorf("a lease of the refused pod is left: %s", leases)
	}
}

// leaseFiles returns the state files of conf's lockfile-ipam dataDir that
// mention container ("" when none does).
func leaseFiles(t *testing.T, conf []byte, container string) string {
	t.Helper()
	var dir string
	_, err := chain.Edit(conf, func(_ map[string]any, plugins []map[string]any) error {
		if p := chain.Plugin(plugins, "lockfile-ipam"); p != nil {
			dir, _ = p["ipam"].(map[string]any)["dataDir"].(string)
		}
		return nil
	})
	if err != nil || dir == "" {
		t.Fatalf("no lockfile-ipam dataDir in the conflist: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var out []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), container) {
			out = append(out, f+": "+string(b))
		}
	}
	return strings.Join(out, "\n")
}

// edited is conf with f applied to its vrf-vxlan-bridge object.
func edited(t *testing.T, conf []byte, f func(vb map[string]any)) []byte {
	t.Helper()
	b, err := chain.Edit(conf, func(_ map[string]any, plugins []map[string]any) error {
		f(chain.Plugin(plugins, "vrf-vxlan-bridge"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestClashBridgeInOtherVRF: the live network's bridge is enslaved to a
// VRF its config does not name: the config's vrf changed (another name,
// or no vrf key), or the bridge was moved under another network's VRF.
// STATUS answers 50 and ADD 7, both naming the bridge, its network and
// the VRF that holds it; nothing changes.
func TestClashBridgeInOtherVRF(t *testing.T) {
	lab, node := vrfNode(t, "vm-cb")
	r := newRuntime(t, node)
	red := tenant{name: "vmred", table: 140, vni: 140, subnets: []string{"10.140.0.0/24"}}
	redConf := red.conflist(t)
	r.add(redConf, testutil.AddNS(t, lab, "p1"))
	br, vrf := naming.BridgeName(red.name), naming.VRFName(red.name)

	for _, c := range []struct {
		name string
		conf []byte
		want []string
	}{
		{"another vrf.name", edited(t, redConf, func(vb map[string]any) { vb["vrf"] = map[string]any{"name": "vrf-vmnew", "table": 141} }),
			[]string{`vrf.name "vrf-vmnew"`, "bridge " + br + ` of network "vmred" is enslaved to vrf ` + vrf, `belongs to network "vmred"`, "restore the vrf key"}},
		{"no vrf key", edited(t, redConf, func(vb map[string]any) { delete(vb, "vrf") }),
			[]string{"no vrf key", "bridge " + br + ` of network "vmred" is enslaved to vrf ` + vrf}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := nodeState(t, node.NS)
			if e := r.status(c.conf); e == nil || e.Code != 50 || !strings.Contains(e.Msg, "is enslaved to vrf "+vrf) {
				t.Errorf("STATUS: %v, want 50 naming vrf %s", e, vrf)
			}
			refused(t, r, node, c.conf, testutil.AddNS(t, lab, "p-"+strings.ReplaceAll(c.name, " ", "")[:6]), before, c.want...)
		})
	}

	// The bridge moved under another network's VRF by hand.
	blue := tenant{name: "vmblue", table: 142, vni: 142, subnets: []string{"10.142.0.0/24"}}
	r.add(blue.conflist(t), testutil.AddNS(t, lab, "p2"))
	in(t, node.NS, "ip", "link", "set", br, "master", naming.VRFName(blue.name))
	before := nodeState(t, node.NS)
	if e := r.status(redConf); e == nil || e.Code != 50 {
		t.Errorf("STATUS with %s under vrf %s: %v, want 50", br, naming.VRFName(blue.name), e)
	}
	refused(t, r, node, redConf, testutil.AddNS(t, lab, "p3"), before,
		`vrf.name "`+vrf+`"`, "bridge "+br+` of network "vmred" is enslaved to vrf `+naming.VRFName(blue.name), `belongs to network "vmblue"`)
}

// TestClashSharedTableVRF: a second network whose vrf.table is the table
// of the first network's VRF (two VRFs in one table would share their
// routes): STATUS 50 and ADD 7 naming the table, the VRF and its network;
// the second network's VRF, bridge and VXLAN are not created. The first
// network keeps working (STATUS 0, CHECK).
func TestClashSharedTableVRF(t *testing.T) {
	lab, node := vrfNode(t, "vm-ct")
	r := newRuntime(t, node)
	red := tenant{name: "vmred", table: 150, vni: 150, subnets: []string{"10.150.0.0/24"}}
	redConf := red.conflist(t)
	p1 := testutil.AddNS(t, lab, "p1")
	r.add(redConf, p1)
	blue := tenant{name: "vmblue", table: 150, vni: 151, subnets: []string{"10.151.0.0/24"}}
	blueConf := blue.conflist(t)
	before := nodeState(t, node.NS)
	want := []string{"vrf.table 150 is already the table of " + naming.VRFName(red.name), `belongs to network "vmred"`, "pick another vrf.table"}
	e := r.status(blueConf)
	if e == nil || e.Code != 50 {
		t.Fatalf("STATUS: %v, want 50", e)
	}
	for _, w := range want {
		if !strings.Contains(e.Msg, w) {
			t.Errorf("STATUS: message %q lacks %q", e.Msg, w)
		}
	}
	refused(t, r, node, blueConf, testutil.AddNS(t, lab, "p2"), before, want...)
	for _, name := range []string{naming.VRFName(blue.name), naming.BridgeName(blue.name), naming.VXLANName(uint32(blue.vni))} {
		if out, err := node.In("ip", "link", "show", name); err == nil {
			t.Errorf("%s was created: %s", name, out)
		}
	}
	if e := r.status(redConf); e != nil {
		t.Errorf("STATUS of the live network: %v", e)
	}
	if err := r.check(redConf, p1); err != nil {
		t.Errorf("CHECK of the live network: %v", err)
	}
}

// TestClashOverlapInVRF: a subnet that overlaps another network's inside
// one VRF. vrf-vxlan-bridge gives every network a VRF of its own, so a
// second network gets into the first's VRF only through a bridge the
// operator put there: here a network chained without vrf-vxlan-bridge
// whose veth-attach names br-ops, a bridge enslaved to the first
// network's VRF. Its ADD is refused (7) naming the first network, its
// bridge, the VRF's table and the fix; after the runtime's DEL the node is
// as before and no lease is left. A disjoint subnet on the same bridge is
// accepted.
func TestClashOverlapInVRF(t *testing.T) {
	lab, node := vrfNode(t, "vm-co")
	r := newRuntime(t, node)
	red := tenant{name: "vmred", table: 160, vni: 160, subnets: []string{"10.160.0.0/24"}}
	r.add(red.conflist(t), testutil.AddNS(t, lab, "p1"))
	vrf := naming.VRFName(red.name)
	in(t, node.NS, "ip", "link", "add", "br-ops", "type", "bridge")
	in(t, node.NS, "ip", "link", "set", "br-ops", "master", vrf)
	in(t, node.NS, "ip", "link", "set", "br-ops", "up")
	t.Cleanup(func() { _, _ = node.In("ip", "link", "del", "br-ops") })

	opsConf := func(subnet string) []byte {
		dir := t.TempDir()
		b, err := chain.Edit([]byte(`{"cniVersion":"1.1.0","name":"vmops","plugins":[]}`), func(conf map[string]any, _ []map[string]any) error {
			conf["plugins"] = []any{
				map[string]any{"type": "infra-ensure", "stateDir": dir + "/infra"},
				map[string]any{"type": "lockfile-ipam", "ipam": map[string]any{"ranges": [][]map[string]string{{{"subnet": subnet}}}, "dataDir": dir + "/ipam"}},
				map[string]any{"type": "veth-attach", "bridge": "br-ops"},
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := nodeState(t, node.NS)
	refused(t, r, node, opsConf("10.160.0.128/25"), testutil.AddNS(t, lab, "p2"), before,
		"veth-attach: the pod subnet 10.160.0.128/25 overlaps 10.160.0.0/24 of network \"vmred\" (bridge "+naming.BridgeName(red.name)+")",
		fmt.Sprintf("in the routing table %d of %s", red.table, vrf), "give this network another subnet")
	if e := r.tryAdd(opsConf("10.161.0.0/24"), testutil.AddNS(t, lab, "p3")); e != nil {
		t.Errorf("a disjoint subnet in the same VRF: %d %s", e.Code, e.Msg)
	}
}
