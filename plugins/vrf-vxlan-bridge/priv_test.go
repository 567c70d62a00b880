package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

const plugin = "vrf-vxlan-bridge"

// names are the result's interface names, in order.
func names(r *current.Result) []string {
	var n []string
	for _, i := range r.Interfaces {
		n = append(n, i.Name)
	}
	return n
}

// link reads a link inside the node; nil when it does not exist.
func link(t *testing.T, node *netsim.Node, name string) netlink.Link {
	t.Helper()
	var l netlink.Link
	err := node.Do(func(ns.NetNS) error {
		var err error
		l, err = netlinksafe.LinkByName(name)
		if cniutil.IsGone(err) {
			l, err = nil, nil
		}
		return err
	})
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func mustLink(t *testing.T, node *netsim.Node, name string) netlink.Link {
	t.Helper()
	l := link(t, node, name)
	if l == nil {
		t.Fatalf("link %s does not exist in the node", name)
	}
	return l
}

// TestLifecycle runs ADD, CHECK, DEL, DEL for every version, with and
// without a prevResult from infra-ensure, and checks the devices.
func TestLifecycle(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-life")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	for i, ver := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(ver, func(t *testing.T) {
			netName := fmt.Sprintf("life%d", i)
			vni := 100 + i
			extra := map[string]any{"vxlan": map[string]any{"vni": vni}}
			withPrev := i%2 == 0
			if withPrev {
				extra["prevResult"] = map[string]any{"cniVersion": ver, "interfaces": []any{map[string]any{"name": "eth0"}}}
			}
			conf := testutil.Conf(ver, netName, plugin).Keys(extra).Bytes()
			res := st.Add(t, "c1", pod, conf).Result(t)
			if res.CNIVersion != ver {
				t.Errorf("result cniVersion %q, want %q", res.CNIVersion, ver)
			}
			br, vx := naming.BridgeName(netName), naming.VXLANName(uint32(vni))
			want := []string{br, vx}
			if withPrev {
				want = append([]string{"eth0"}, want...)
			}
			if strings.Join(names(res), ",") != strings.Join(want, ",") {
				t.Errorf("result interfaces %v, want %v", names(res), want)
			}
			for _, i := range res.Interfaces {
				if i.Sandbox != "" {
					t.Errorf("interface %s has sandbox %q", i.Name, i.Sandbox)
				}
				if i.Mac == "" && i.Name != "eth0" {
					t.Errorf("interface %s has no mac", i.Name)
				}
			}
			if ver >= "1.0.0" && res.Interfaces[len(res.Interfaces)-1].Mtu != 1450 {
				t.Errorf("vxlan mtu in result %d, want 1450", res.Interfaces[len(res.Interfaces)-1].Mtu)
			}
			bl := mustLink(t, node, br)
			if bl.Type() != "bridge" || bl.Attrs().MTU != 1450 || bl.Attrs().OperState == netlink.OperDown {
				t.Errorf("bridge %s: type %s mtu %d state %s", br, bl.Type(), bl.Attrs().MTU, bl.Attrs().OperState)
			}
			vl, ok := mustLink(t, node, vx).(*netlink.Vxlan)
			if !ok {
				t.Fatalf("%s is not a vxlan", vx)
			}
			eth0 := mustLink(t, node, "eth0")
			if vl.VxlanId != vni || vl.Port != 4789 || !vl.Learning || vl.MasterIndex != bl.Attrs().Index ||
				vl.VtepDevIndex != eth0.Attrs().Index || !vl.SrcAddr.Equal(node.Addr) || vl.MTU != 1450 {
				t.Errorf("vxlan %s: %+v", vx, vl)
			}
			if ver != "0.3.1" {
				st.Check(t, "c1", pod, conf).OK(t)
			}
			st.Del(t, "c1", pod, conf).OK(t)
			st.Del(t, "c1", nil, conf).OK(t)
			if link(t, node, br) == nil || link(t, node, vx) == nil {
				t.Error("DEL removed a shared device")
			}
		})
	}
}

// TestNoVXLAN: a single-node network gets a bridge with the uplink's MTU.
func TestNoVXLAN(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-novx")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	conf := testutil.Conf("1.1.0", "solo", plugin).With("bridge", map[string]any{"mac": "02:aa:bb:cc:dd:01"}).Bytes()
	res := st.Add(t, "c1", pod, conf).Result(t)
	if strings.Join(names(res), ",") != naming.BridgeName("solo") {
		t.Errorf("interfaces %v", names(res))
	}
	bl := mustLink(t, node, naming.BridgeName("solo"))
	if bl.Attrs().MTU != 1500 || bl.Attrs().HardwareAddr.String() != "02:aa:bb:cc:dd:01" {
		t.Errorf("bridge mtu %d mac %s", bl.Attrs().MTU, bl.Attrs().HardwareAddr)
	}
	st.Check(t, "c1", pod, conf).OK(t)
}

// TestCheckDetectsRemoval: CHECK fails once the vxlan or the bridge is gone
// and passes again after the next ADD re-creates it.
func TestCheckDetectsRemoval(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-chk")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	conf := testutil.Conf("1.1.0", "chk", plugin).With("vxlan", map[string]any{"vni": 300}).Bytes()
	st.Add(t, "c1", pod, conf).OK(t)
	st.Check(t, "c1", pod, conf).OK(t)
	for _, dev := range []string{"vxlan-300", naming.BridgeName("chk")} {
		if _, err := node.In("ip", "link", "del", dev); err != nil {
			t.Fatal(err)
		}
		o := st.Check(t, "c1", pod, conf)
		e := o.CNIError(t)
		if !strings.Contains(e.Msg, dev) {
			t.Errorf("CHECK error %q does not name %s", e.Msg, dev)
		}
		st.Add(t, "c2", pod, conf).OK(t)
		st.Check(t, "c2", pod, conf).OK(t)
	}
	// A vxlan taken out of the bridge is caught too.
	if _, err := node.In("ip", "link", "set", "vxlan-300", "nomaster"); err != nil {
		t.Fatal(err)
	}
	st.Check(t, "c1", pod, conf).CNIError(t)
}

func fdbDsts(t *testing.T, node *netsim.Node, dev string) []string {
	t.Helper()
	out, err := node.In("bridge", "fdb", "show", "dev", dev)
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[0] == "00:00:00:00:00:00" && f[1] == "dst" {
			dsts = append(dsts, f[2])
		}
	}
	return dsts
}

// TestRemotes: head-end replication entries follow the remotes list.
func TestRemotes(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-rem")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	vx := map[string]any{"vni": 400, "remotes": []string{"198.18.0.21"}}
	conf := testutil.Conf("1.1.0", "rem", plugin).With("vxlan", vx).Bytes()
	st.Add(t, "c1", pod, conf).OK(t)
	if got := fdbDsts(t, node, "vxlan-400"); strings.Join(got, ",") != "198.18.0.21" {
		t.Fatalf("flood entries %v, want [198.18.0.21]", got)
	}
	st.Check(t, "c1", pod, conf).OK(t)

	vx["remotes"] = []string{"198.18.0.21", "198.18.0.22"}
	conf = testutil.Conf("1.1.0", "rem", plugin).With("vxlan", vx).Bytes()
	// CHECK with the longer list fails before the ADD that adds the entry.
	st.Check(t, "c1", pod, conf).CNIError(t)
	for _, cid := range []string{"c2", "c3"} {
		st.Add(t, cid, pod, conf).OK(t)
		got := fdbDsts(t, node, "vxlan-400")
		if strings.Join(got, ",") != "198.18.0.21,198.18.0.22" {
			t.Fatalf("after ADD %s: flood entries %v, want each remote once", cid, got)
		}
	}
	st.Check(t, "c1", pod, conf).OK(t)

	vx["remotes"] = []string{"198.18.0.22"}
	st.Add(t, "c4", pod, testutil.Conf("1.1.0", "rem", plugin).With("vxlan", vx).Bytes()).OK(t)
	if got := fdbDsts(t, node, "vxlan-400"); strings.Join(got, ",") != "198.18.0.22" {
		t.Fatalf("after dropping a remote: flood entries %v, want [198.18.0.22]", got)
	}
}

// TestEVPN: learning off on the device and on its bridge port.
func TestEVPN(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-evpn")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	conf := testutil.Conf("1.1.0", "ev", plugin).With("vxlan", map[string]any{"vni": 450, "evpn": true}).Bytes()
	st.Add(t, "c1", pod, conf).OK(t)
	vl := mustLink(t, node, "vxlan-450").(*netlink.Vxlan)
	if vl.Learning {
		t.Error("vxlan learning on with evpn")
	}
	out, err := node.In("ip", "-d", "-j", "link", "show", "vxlan-450")
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Info struct {
			Slave struct {
				Learning      bool `json:"learning"`
				NeighSuppress bool `json:"neigh_suppress"`
			} `json:"info_slave_data"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link: %v: %s", err, out)
	}
	if links[0].Info.Slave.Learning || !links[0].Info.Slave.NeighSuppress {
		t.Errorf("bridge port of vxlan-450: %+v, want learning off, neigh_suppress on", links[0].Info.Slave)
	}
	st.Check(t, "c1", pod, conf).OK(t)
}

// TestGC: no key keeps the devices, a non-empty list keeps them, an empty
// list removes them; GC again is fine.
func TestGC(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-gc")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	extra := map[string]any{"vxlan": map[string]any{"vni": 500}}
	conf := testutil.Conf("1.1.0", "gc", plugin).Keys(extra).Bytes()
	st.Add(t, "c1", pod, conf).OK(t)
	br := naming.BridgeName("gc")
	gc := func(list any) {
		t.Helper()
		e := map[string]any{"vxlan": map[string]any{"vni": 500}}
		if list != nil {
			e["cni.dev/valid-attachments"] = list
		}
		st.GC(t, testutil.Conf("1.1.0", "gc", plugin).Keys(e).Bytes()).OK(t)
	}
	gc(nil)
	if link(t, node, br) == nil || link(t, node, "vxlan-500") == nil {
		t.Fatal("GC without valid-attachments removed devices")
	}
	gc([]map[string]string{{"containerID": "c1", "ifname": "eth0"}})
	if link(t, node, br) == nil || link(t, node, "vxlan-500") == nil {
		t.Fatal("GC with a live attachment removed devices")
	}
	gc([]any{})
	if link(t, node, br) != nil || link(t, node, "vxlan-500") != nil {
		t.Fatal("GC with an empty list left devices")
	}
	gc([]any{})
	if link(t, node, "eth0") == nil {
		t.Fatal("GC removed the uplink")
	}
}

// concurrentAdds runs n ADDs (containers c0..) at once; each must succeed.
func concurrentAdds(t *testing.T, node *netsim.Node, pod *netsim.NS, conf []byte, n int) {
	t.Helper()
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	var wg sync.WaitGroup
	outs := make([]testutil.Outcome, n)
	for i := range outs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			outs[i] = st.Add(t, fmt.Sprintf("c%d", i), pod, conf)
		}(i)
	}
	wg.Wait()
	for i, o := range outs {
		if o.Err != nil {
			t.Errorf("ADD c%d: %v: %s %s", i, o.Err, o.Stdout, o.Stderr)
		}
	}
}

// TestConcurrentAdds: 20 parallel ADDs for different containers all
// succeed and share one bridge and one vxlan.
func TestConcurrentAdds(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-par")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	testutil.PluginDir(t, plugin)
	conf := testutil.Conf("1.1.0", "par", plugin).With("vxlan", map[string]any{"vni": 600, "remotes": []string{"198.18.0.31", "198.18.0.32"}}).Bytes()
	concurrentAdds(t, node, pod, conf, 20)
	out, err := node.In("ip", "-j", "link", "show", "type", "bridge")
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Name != naming.BridgeName("par") {
		t.Errorf("bridges %v, want exactly %s", links, naming.BridgeName("par"))
	}
	if got := fdbDsts(t, node, "vxlan-600"); strings.Join(got, ",") != "198.18.0.31,198.18.0.32" {
		t.Errorf("flood entries %v", got)
	}
	st.Check(t, "c0", pod, conf).OK(t)
}

// TestHostNetNS: CNI_NETNS naming the node's own namespace is refused with
// code 8 before anything is created.
func TestHostNetNS(t *testing.T) {
	node, _ := testutil.NodeWithPod(t, "vb-hostns")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	conf := testutil.Conf("1.1.0", "hns", plugin).With("vxlan", map[string]any{"vni": 700}).Bytes()
	o := st.Add(t, "c1", node.NS, conf)
	if e := o.CNIError(t); e.Code != 8 {
		t.Errorf("code %d (%s), want 8", e.Code, e.Msg)
	}
	if link(t, node, naming.BridgeName("hns")) != nil || link(t, node, "vxlan-700") != nil {
		t.Error("devices created despite the refused netns")
	}
}

// TestRollback: a device squatting on the VXLAN device's name is refused
// before the bridge is created (TestVNIConflict covers the rollback of a
// bridge created before a later step failed).
func TestRollback(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-rb")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	// A bridge squatting on the VXLAN device's name: not this network's.
	if _, err := node.In("ip", "link", "add", "vxlan-800", "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	conf := testutil.Conf("1.1.0", "rb", plugin).With("vxlan", map[string]any{"vni": 800}).Bytes()
	e := st.Add(t, "c1", pod, conf).CNIError(t)
	if !strings.Contains(e.Msg, "vxlan-800") {
		t.Errorf("error %q does not name vxlan-800", e.Msg)
	}
	if link(t, node, naming.BridgeName("rb")) != nil {
		t.Error("failed ADD left the bridge it created")
	}
	if link(t, node, "vxlan-800") == nil {
		t.Error("failed ADD removed a device it did not create")
	}
}

// TestBadMTU: a bridge MTU the underlay cannot carry is a config error.
func TestBadMTU(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-mtu")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	conf := testutil.Conf("1.1.0", "mtu", plugin).Keys(map[string]any{"bridge": map[string]any{"mtu": 1500}, "vxlan": map[string]any{"vni": 900}}).Bytes()
	if e := st.Add(t, "c1", pod, conf).CNIError(t); e.Code != 7 {
		t.Errorf("code %d (%s), want 7", e.Code, e.Msg)
	}
	if link(t, node, naming.BridgeName("mtu")) != nil {
		t.Error("bridge created despite the config error")
	}
}

// TestStatus: with vxlan, STATUS needs the uplink.
func TestStatus(t *testing.T) {
	node, _ := testutil.NodeWithPod(t, "vb-st")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	status := func(extra map[string]any) testutil.Outcome {
		return st.Status(t, testutil.Conf("1.1.0", "st", plugin).Keys(extra).Bytes())
	}
	for _, extra := range []map[string]any{nil, {"vxlan": map[string]any{"vni": 1}}, {"vxlan": map[string]any{"vni": 1, "dev": "eth0"}}} {
		if o := status(extra); o.Err != nil {
			t.Errorf("STATUS %v: %v %s", extra, o.Err, o.Stdout)
		}
	}
	if e := status(map[string]any{"vxlan": map[string]any{"vni": 1, "dev": "eth9"}}).CNIError(t); e.Code != 50 {
		t.Errorf("missing dev: code %d (%s), want 50", e.Code, e.Msg)
	}
	if _, err := node.In("ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	if e := status(map[string]any{"vxlan": map[string]any{"vni": 1, "dev": "eth0"}}).CNIError(t); e.Code != 50 {
		t.Errorf("uplink down: code %d (%s), want 50", e.Code, e.Msg)
	}
	// Down means no default route either: the default uplink is missing.
	if e := status(map[string]any{"vxlan": map[string]any{"vni": 1}}).CNIError(t); e.Code != 50 {
		t.Errorf("no default route: code %d (%s), want 50", e.Code, e.Msg)
	}
}

// TestVRFUnsupported: on a kernel without VRF the ADD fails with code 7,
// says why, and leaves nothing behind.
func TestVRFUnsupported(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-novrf")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	if node.HasVRF() {
		t.Skip("kernel has VRF; TestVRF covers it")
	}
	conf := testutil.Conf("1.1.0", "nv", plugin).Keys(map[string]any{"vrf": map[string]any{"table": 100}, "vxlan": map[string]any{"vni": 1000}}).Bytes()
	e := st.Add(t, "c1", pod, conf).CNIError(t)
	if e.Code != 7 || !strings.Contains(e.Msg, "CONFIG_NET_VRF") {
		t.Errorf("error %d %q, want 7 naming CONFIG_NET_VRF", e.Code, e.Msg)
	}
	for _, dev := range []string{naming.VRFName("nv"), naming.BridgeName("nv"), "vxlan-1000"} {
		if link(t, node, dev) != nil {
			t.Errorf("%s left behind", dev)
		}
	}
}

// TestVRF: the VRF path (needs CONFIG_NET_VRF; runs in the VM).
func TestVRF(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-vrf")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	testutil.RequireVRF(t, node.NS)
	conf := testutil.Conf("1.1.0", "red", plugin).Keys(map[string]any{"vrf": map[string]any{"table": 100}, "vxlan": map[string]any{"vni": 1100}}).Bytes()
	res := st.Add(t, "c1", pod, conf).Result(t)
	vrf, br := naming.VRFName("red"), naming.BridgeName("red")
	if strings.Join(names(res), ",") != strings.Join([]string{vrf, br, "vxlan-1100"}, ",") {
		t.Errorf("interfaces %v", names(res))
	}
	vl, ok := mustLink(t, node, vrf).(*netlink.Vrf)
	if !ok || vl.Table != 100 {
		t.Fatalf("vrf %s: %+v", vrf, vl)
	}
	if mustLink(t, node, br).Attrs().MasterIndex != vl.Index {
		t.Error("bridge not enslaved to the vrf")
	}
	st.Check(t, "c1", pod, conf).OK(t)
	st.Add(t, "c2", pod, conf).OK(t)

	// Same VRF name, other table: refused.
	other := testutil.Conf("1.1.0", "red", plugin).Keys(map[string]any{"vrf": map[string]any{"table": 101}, "vxlan": map[string]any{"vni": 1100}}).Bytes()
	if e := st.Add(t, "c3", pod, other).CNIError(t); e.Code != 7 {
		t.Errorf("table conflict: code %d (%s)", e.Code, e.Msg)
	}
	if e := st.Check(t, "c1", pod, other).CNIError(t); !strings.Contains(e.Msg, "table") {
		t.Errorf("CHECK with another table: %q", e.Msg)
	}
	// The bridge taken out of the VRF is caught by CHECK.
	if _, err := node.In("ip", "link", "set", br, "nomaster"); err != nil {
		t.Fatal(err)
	}
	st.Check(t, "c1", pod, conf).CNIError(t)

	gc := testutil.Conf("1.1.0", "red", plugin).Keys(map[string]any{"vrf": map[string]any{"table": 100}, "vxlan": map[string]any{"vni": 1100}, "cni.dev/valid-attachments": []any{}}).Bytes()
	st.GC(t, gc).OK(t)
	for _, dev := range []string{vrf, br, "vxlan-1100"} {
		if link(t, node, dev) != nil {
			t.Errorf("GC left %s", dev)
		}
	}
}

// TestVNIConflict: a foreign VXLAN device holding the same VNI and port is
// reported clearly, by name, before the bridge is created.
func TestVNIConflict(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-vni")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	if _, err := node.In("ip", "link", "add", "foreign", "type", "vxlan", "id", "1200", "dstport", "4789", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	conf := testutil.Conf("1.1.0", "vni", plugin).With("vxlan", map[string]any{"vni": 1200}).Bytes()
	e := st.Add(t, "c1", pod, conf).CNIError(t)
	if e.Code != 7 || !strings.Contains(e.Msg, "same VNI") {
		t.Errorf("error %d %q, want 7 explaining the VNI conflict", e.Code, e.Msg)
	}
	if link(t, node, naming.BridgeName("vni")) != nil {
		t.Error("failed ADD left its bridge")
	}
}

// TestTraffic: two nodes, the bridges joined by the VXLAN devices this
// plugin built, in each BUM mode that needs no external speaker. Packets
// of exactly the bridge MTU cross with don't-fragment; one byte more is
// refused.
func TestTraffic(t *testing.T) {
	for _, mode := range []string{"remotes", "group"} {
		t.Run(mode, func(t *testing.T) {
			lab := testutil.NewLab(t, "vb-tr"+mode[:1])
			var nodes []*netsim.Node
			for _, n := range []string{"n1", "n2"} {
				node, err := lab.AddNode(n)
				if err != nil {
					t.Fatal(err)
				}
				nodes = append(nodes, node)
			}
			pod := testutil.AddNS(t, lab, "p1")
			br := naming.BridgeName("tr")
			for i, node := range nodes {
				vx := map[string]any{"vni": 1300}
				if mode == "group" {
					vx["group"] = "239.1.1.13"
				} else {
					vx["remotes"] = []string{nodes[1-i].Addr.String()}
				}
				testutil.Stage{Plugin: plugin, In: node.NetNS}.Add(t, "c1", pod, testutil.Conf("1.1.0", "tr", plugin).With("vxlan", vx).Bytes()).OK(t)
				if _, err := node.In("ip", "addr", "add", fmt.Sprintf("10.99.0.%d/24", i+1), "dev", br); err != nil {
					t.Fatal(err)
				}
			}
			// 1450 (bridge MTU) - 20 (IP) - 8 (ICMP) = 1422 bytes of payload.
			if out, err := nodes[0].In("ping", "-c", "2", "-W", "3", "-M", "do", "-s", "1422", "10.99.0.2"); err != nil {
				t.Fatalf("no traffic over vxlan (%s): %v\n%s", mode, err, out)
			}
			if _, err := nodes[0].In("ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1423", "10.99.0.2"); err == nil {
				t.Error("a packet larger than the bridge MTU went through with DF set")
			}
		})
	}
}

// TestAnycastDevices: anycastGateway gives the bridge the derived MAC,
// accept_dad 0, neigh_suppress on the VXLAN port and the permanent FDB pin
// of the gateway MAC to the local VTEP; CHECK notices when the pin or
// neigh_suppress goes. (The behaviour across nodes is proven in
// integration/cluster TestAnycastGateway.)
func TestAnycastDevices(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-any")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	conf := testutil.Conf("1.1.0", "any", plugin).Keys(map[string]any{"anycastGateway": true, "vxlan": map[string]any{"vni": 460, "remotes": []string{"198.18.0.22"}}}).Bytes()
	st.Add(t, "c1", pod, conf).OK(t)
	mac := naming.AnycastGatewayMAC("any").String()
	br := naming.BridgeName("any")
	if got := mustLink(t, node, br).Attrs().HardwareAddr.String(); got != mac {
		t.Errorf("bridge MAC %s, want %s", got, mac)
	}
	if out, err := node.In("cat", "/proc/sys/net/ipv6/conf/"+br+"/accept_dad"); err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Errorf("accept_dad on %s: %q %v, want 0", br, out, err)
	}
	out, err := node.In("bridge", "fdb", "show", "dev", "vxlan-460")
	if err != nil {
		t.Fatal(err)
	}
	pin := mac + " dst " + node.Addr.String() + " self permanent"
	if !strings.Contains(string(out), pin) {
		t.Errorf("no %q in the VXLAN FDB:\n%s", pin, out)
	}
	st.Check(t, "c1", pod, conf).OK(t)
	st.Add(t, "c2", pod, conf).OK(t) // idempotent
	if _, err := node.In("bridge", "fdb", "del", mac, "dev", "vxlan-460", "self", "dst", node.Addr.String()); err != nil {
		t.Fatal(err)
	}
	st.Check(t, "c1", pod, conf).CNIError(t)
	st.Add(t, "c3", pod, conf).OK(t) // restores it
	st.Check(t, "c1", pod, conf).OK(t)
	if _, err := node.In("bridge", "link", "set", "dev", "vxlan-460", "neigh_suppress", "off"); err != nil {
		t.Fatal(err)
	}
	st.Check(t, "c1", pod, conf).CNIError(t)
}

// TestVRFEgress: vrf.egress copies the node's default route into the VRF
// table and adds the reply rule (fwmark table<<16/0xffff0000 lookup
// table); CHECK notices the rule gone; GC removes rule and routes. (The
// traffic is proven in integration/cluster TestTenantEgressVRF.)
func TestVRFEgress(t *testing.T) {
	node, pod := testutil.NodeWithPod(t, "vb-vegr")
	st := testutil.Stage{Plugin: plugin, In: node.NetNS}
	testutil.RequireVRF(t, node.NS)
	vrf := map[string]any{"table": 300, "egress": true}
	conf := testutil.Conf("1.1.0", "egr", plugin).Keys(map[string]any{"vrf": vrf, "vxlan": map[string]any{"vni": 1300}}).Bytes()
	st.Add(t, "c1", pod, conf).OK(t)
	out, err := node.In("ip", "route", "show", "table", "300")
	if err != nil || !strings.Contains(string(out), "default via "+netsim.UnderlayGateway+" dev eth0") {
		t.Errorf("table 300 lacks the egress default route: %s %v", out, err)
	}
	rule := "fwmark 0x12c0000/0xffff0000 lookup 300"
	if out, _ := node.In("ip", "rule", "show"); !strings.Contains(string(out), rule) {
		t.Errorf("no rule %q:\n%s", rule, out)
	}
	st.Check(t, "c1", pod, conf).OK(t)
	st.Add(t, "c2", pod, conf).OK(t) // idempotent
	if out, _ := node.In("ip", "rule", "show"); strings.Count(string(out), rule) != 1 {
		t.Errorf("rule %q not exactly once after a second ADD:\n%s", rule, out)
	}
	if _, err := node.In("ip", "rule", "del", "pref", "900"); err != nil {
		t.Fatal(err)
	}
	st.Check(t, "c1", pod, conf).CNIError(t)
	gc := testutil.Conf("1.1.0", "egr", plugin).Keys(map[string]any{"vrf": vrf, "vxlan": map[string]any{"vni": 1300}, "cni.dev/valid-attachments": []any{}}).Bytes()
	st.Add(t, "c3", pod, conf).OK(t)
	st.GC(t, gc).OK(t)
	if out, _ := node.In("ip", "rule", "show"); strings.Contains(string(out), "lookup 300") {
		t.Errorf("GC left the rule:\n%s", out)
	}
	if out, _ := node.In("ip", "route", "show", "table", "300"); strings.TrimSpace(string(out)) != "" {
		t.Errorf("GC left routes in table 300:\n%s", out)
	}
}
