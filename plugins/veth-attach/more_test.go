package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// TestStageForm: no ipam key; the prevResult ips without interface (what
// lockfile-ipam as a stage appends) end up on the pod interface, other ips
// keep their index, runtimeConfig.mac is honoured.
func TestStageForm(t *testing.T) {
	lab, node := newNode(t, "va-stage")
	pod := addPod(t, lab, "p1")
	st := stage(t, node)
	prev := map[string]any{
		"cniVersion": "1.0.0",
		"interfaces": []map[string]any{{"name": "eth0"}, {"name": testBridge}},
		"ips": []map[string]any{
			{"address": "198.18.0.11/24", "interface": 0},
			{"address": "10.77.0.9/24", "gateway": gateway},
		},
		"routes": []map[string]any{{"dst": "0.0.0.0/0"}},
		"dns":    map[string]any{"nameservers": []string{"10.77.0.53"}},
	}
	const mac = "02:aa:bb:cc:dd:01"
	conf := testutil.Conf("1.0.0", testNet, plugin).Keys(map[string]any{"prevResult": prev, "runtimeConfig": map[string]any{"mac": mac}}).Bytes()
	out := st.Add(t, "cid-s", pod, conf).OK(t)
	r := parseResult(t, out)
	if len(r.Interfaces) != 4 || r.Interfaces[3].Name != "eth0" || r.Interfaces[3].Sandbox != pod.Path || r.Interfaces[3].Mac != mac {
		t.Fatalf("interfaces: %s", out)
	}
	if *r.IPs[0].Interface != 0 || *r.IPs[1].Interface != 3 {
		t.Errorf("ip interface indexes: %s", out)
	}
	if len(r.DNS.Nameservers) != 1 || len(r.Routes) != 1 {
		t.Errorf("dns/routes not passed on: %s", out)
	}
	if a := mustIn(t, pod, "ip", "-o", "addr", "show", "eth0"); !strings.Contains(a, "10.77.0.9/24") {
		t.Errorf("pod address: %s", a)
	}
	if l := mustIn(t, pod, "ip", "-o", "link", "show", "eth0"); !strings.Contains(l, mac) {
		t.Errorf("pod mac: %s", l)
	}
	if rt := mustIn(t, pod, "ip", "route", "show", "default"); !strings.Contains(rt, "via "+gateway) {
		t.Errorf("default route: %q", rt)
	}
	mustIn(t, pod, "ping", "-c1", "-W2", gateway)
	st.Check(t, "cid-s", pod, testutil.WithPrev(t, conf, out)).OK(t)
	st.Del(t, "cid-s", pod, conf).OK(t)
	if linkExists(node.NS, hostVeth("cid-s")) {
		t.Error("DEL left the host veth")
	}
}

// TestL2Only: no ipam, no ips: a plain attachment with the pod iface up.
func TestL2Only(t *testing.T) {
	lab, node := newNode(t, "va-l2")
	pod := addPod(t, lab, "p1")
	st := stage(t, node)
	conf := testutil.Conf("1.1.0", testNet, plugin).Keys(map[string]any{"bridge": testBridge, "mtu": 1400, "hairpin": true}).Bytes()
	out := st.Add(t, "cid-l2", pod, conf).OK(t)
	r := parseResult(t, out)
	if len(r.Interfaces) != 2 || len(r.IPs) != 0 || r.Interfaces[1].Sandbox != pod.Path {
		t.Fatalf("result: %s", out)
	}
	if l := mustIn(t, pod, "ip", "-o", "link", "show", "eth0"); !strings.Contains(l, "mtu 1400") || !strings.Contains(l, "state UP") {
		t.Errorf("pod link: %s", l)
	}
	if l := mustIn(t, node.NS, "ip", "-d", "-o", "link", "show", hostVeth("cid-l2")); !strings.Contains(l, "hairpin on") || !strings.Contains(l, "state forwarding") {
		t.Errorf("host port: %s", l)
	}
	check := testutil.WithPrev(t, conf, out)
	st.Check(t, "cid-l2", pod, check).OK(t)
	mustIn(t, node.NS, "ip", "link", "set", hostVeth("cid-l2"), "type", "bridge_slave", "hairpin", "off")
	if o := st.Check(t, "cid-l2", pod, check); o.Err == nil || !strings.Contains(string(o.Stdout), "hairpin") {
		t.Errorf("CHECK with hairpin off: %v %s", o.Err, o.Stdout)
	}
	mustIn(t, node.NS, "ip", "link", "set", hostVeth("cid-l2"), "nomaster")
	if o := st.Check(t, "cid-l2", pod, check); o.Err == nil || !strings.Contains(string(o.Stdout), "not a port") {
		t.Errorf("CHECK with the host veth off the bridge: %v %s", o.Err, o.Stdout)
	}
	st.Del(t, "cid-l2", pod, conf).OK(t)
}

// TestDelWithoutNetns: DEL with the pod netns deleted, and with
// CNI_NETNS="", without prevResult, removes the host veth and the lease.
func TestDelWithoutNetns(t *testing.T) {
	lab, node := newNode(t, "va-delns")
	st := stage(t, node)
	data := t.TempDir()
	conf := attach("1.0.0", hostLocal(data, "", "")).Bytes()
	bare := testutil.Conf("1.0.0", testNet, plugin).With("ipam", hostLocal(data, "", "")).Bytes()
	p1 := addPod(t, lab, "p1")
	p2 := addPod(t, lab, "p2")
	st.Add(t, "cid-1", p1, conf).OK(t)
	st.Add(t, "cid-2", p2, conf).OK(t)
	if l := leases(t, data); len(l) != 2 {
		t.Fatalf("leases %v", l)
	}
	if err := lab.Remove(p1); err != nil {
		t.Fatal(err)
	}
	st.Del(t, "cid-1", p1, bare).OK(t) // CNI_NETNS: the path of the deleted netns
	st.Del(t, "cid-1", p1, bare).OK(t)
	st.Del(t, "cid-2", nil, bare).OK(t)
	st.Del(t, "cid-2", nil, bare).OK(t)
	for _, cid := range []string{"cid-1", "cid-2"} {
		if linkExists(node.NS, hostVeth(cid)) {
			t.Errorf("host veth of %s left", cid)
		}
	}
	if l := leases(t, data); len(l) != 0 {
		t.Errorf("leases left: %v", l)
	}
}

// TestSecondAdd: a second ADD with the same container ID and ifname fails
// (same netns, or another netns) and the first attachment still works.
func TestSecondAdd(t *testing.T) {
	lab, node := newNode(t, "va-twice")
	st := stage(t, node)
	data := t.TempDir()
	conf := attach("1.0.0", hostLocal(data, "", "")).Bytes()
	p1 := addPod(t, lab, "p1")
	p2 := addPod(t, lab, "p2")
	out := st.Add(t, "cid-1", p1, conf).OK(t)
	for name, target := range map[string]*netsim.NS{"same netns": p1, "other netns": p2} {
		o := st.Add(t, "cid-1", target, conf)
		if cerr := o.CNIError(t); !strings.Contains(cerr.Msg, "already") {
			t.Errorf("%s: unexpected error %s", name, cerr.Msg)
		}
	}
	if linkExists(p2, "eth0") {
		t.Error("the failed ADD left eth0 in the other netns")
	}
	if l := leases(t, data); len(l) != 1 {
		t.Errorf("leases after failed ADDs: %v", l)
	}
	mustIn(t, p1, "ping", "-c1", "-W2", gateway)
	check := testutil.WithPrev(t, conf, out)
	st.Check(t, "cid-1", p1, check).OK(t)
	// The delegated IPAM's CHECK is forwarded: without the lease CHECK fails.
	for _, l := range leases(t, data) {
		if err := os.Remove(filepath.Join(data, testNet, l)); err != nil {
			t.Fatal(err)
		}
	}
	if o := st.Check(t, "cid-1", p1, check); o.Err == nil || !strings.Contains(string(o.Stdout), "ipam host-local CHECK") {
		t.Errorf("CHECK without the IPAM lease: %v %s", o.Err, o.Stdout)
	}
}

// TestRollback: a failing delegated IPAM (range exhausted) leaves no veth.
func TestRollback(t *testing.T) {
	lab, node := newNode(t, "va-rb")
	st := stage(t, node)
	data := t.TempDir()
	conf := attach("1.0.0", hostLocal(data, "10.77.0.5", "10.77.0.5")).Bytes()
	p1 := addPod(t, lab, "p1")
	p2 := addPod(t, lab, "p2")
	st.Add(t, "cid-1", p1, conf).OK(t)
	o := st.Add(t, "cid-2", p2, conf)
	o.CNIError(t)
	if linkExists(node.NS, hostVeth("cid-2")) || linkExists(p2, "eth0") {
		t.Error("failed ADD left its veth")
	}
	if l := leases(t, data); len(l) != 1 {
		t.Errorf("leases: %v", l)
	}
	mustIn(t, p1, "ping", "-c1", "-W2", gateway)
}

// TestGC: no key keeps everything; a list keeps its members; [] removes all
// host veths of the network (and only of this network).
func TestGC(t *testing.T) {
	lab, node := newNode(t, "va-gc")
	st := stage(t, node)
	conf := testutil.Conf("1.1.0", testNet, plugin).With("bridge", testBridge).Bytes()
	for _, c := range []string{"c1", "c2"} {
		st.Add(t, c, addPod(t, lab, c), conf).OK(t)
	}
	other := testutil.Conf("1.1.0", testNet, plugin).Keys(map[string]any{"bridge": testBridge, "name": "othernet"}).Bytes()
	st.Add(t, "c3", addPod(t, lab, "c3"), other).OK(t)
	gc := func(list any) {
		extra := map[string]any{"bridge": testBridge}
		if list != nil {
			extra["cni.dev/valid-attachments"] = list
		}
		st.GC(t, testutil.Conf("1.1.0", testNet, plugin).Keys(extra).Bytes()).OK(t)
	}
	gc(nil)
	if !linkExists(node.NS, hostVeth("c1")) || !linkExists(node.NS, hostVeth("c2")) {
		t.Fatal("GC without the key removed veths")
	}
	gc([]map[string]string{{"containerID": "c2", "ifname": "eth0"}})
	if linkExists(node.NS, hostVeth("c1")) || !linkExists(node.NS, hostVeth("c2")) {
		t.Fatal("GC with [c2] should remove only c1")
	}
	gc([]map[string]string{})
	if linkExists(node.NS, hostVeth("c2")) {
		t.Fatal("GC with [] kept c2")
	}
	if !linkExists(node.NS, naming.HostVethName("othernet", "c3", "eth0")) {
		t.Error("GC removed another network's veth")
	}
}

// TestConcurrentAdds: 20 parallel ADDs share one gateway address without
// EEXIST failures, get 20 distinct addresses; 20 parallel DELs leave nothing.
func TestConcurrentAdds(t *testing.T) {
	lab, node := newNode(t, "va-par")
	mustIn(t, node.NS, "ip", "link", "set", testBridge, "down")
	st := stage(t, node)
	data := t.TempDir()
	conf := attach("1.1.0", hostLocal(data, "", "")).Bytes()
	const n = 20
	var wg sync.WaitGroup
	outs := make([]testutil.Outcome, n)
	pods := make([]*netsim.NS, n)
	for i := range n {
		pods[i] = addPod(t, lab, fmt.Sprintf("p%d", i))
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = st.Add(t, fmt.Sprintf("c%d", i), pods[i], conf)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, o := range outs {
		if o.Err != nil {
			t.Fatalf("ADD %d: %v %s %s", i, o.Err, o.Stdout, o.Stderr)
		}
		seen[podIP(t, parseResult(t, o.Stdout))] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct addresses, want %d", len(seen), n)
	}
	if a := mustIn(t, node.NS, "ip", "-o", "-4", "addr", "show", testBridge); strings.Count(a, gateway+"/24") != 1 {
		t.Errorf("bridge addresses: %s", a)
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = st.Del(t, fmt.Sprintf("c%d", i), pods[i], conf)
		}()
	}
	wg.Wait()
	for i, o := range outs {
		if o.Err != nil {
			t.Errorf("DEL %d: %v %s", i, o.Err, o.Stdout)
		}
	}
	if out := mustIn(t, node.NS, "ip", "-o", "link", "show", "type", "veth"); len(linkLine.FindAllString(out, -1)) != 1 {
		t.Errorf("veths left: %s", out)
	}
	if l := leases(t, data); len(l) != 0 {
		t.Errorf("leases left: %v", l)
	}
}

// TestRollbackAfterIPAM: a failure after IPAM ADD (a route the pod cannot
// have) releases the lease and removes the veth.
func TestRollbackAfterIPAM(t *testing.T) {
	lab, node := newNode(t, "va-rb2")
	st := stage(t, node)
	data := t.TempDir()
	ipam := hostLocal(data, "", "")
	ipam["routes"] = []map[string]any{{"dst": "10.99.0.0/16", "gw": "10.55.0.1"}}
	conf := attach("1.0.0", ipam).Bytes()
	p1 := addPod(t, lab, "p1")
	st.Add(t, "cid-1", p1, conf).CNIError(t)
	if linkExists(node.NS, hostVeth("cid-1")) || linkExists(p1, "eth0") {
		t.Error("failed ADD left its veth")
	}
	if l := leases(t, data); len(l) != 0 {
		t.Errorf("failed ADD left leases: %v", l)
	}
}

// TestDualStack: IPv4 + IPv6 ranges; the v6 address is not left tentative,
// both gateways land on the bridge, pods reach each other over v6.
func TestDualStack(t *testing.T) {
	lab, node := newNode(t, "va-v6")
	st := stage(t, node)
	data := t.TempDir()
	ipam := hostLocal(data, "", "")
	ipam["ranges"] = []any{
		[]map[string]any{{"subnet": subnet, "gateway": gateway}},
		[]map[string]any{{"subnet": "fd77::/64", "gateway": "fd77::1"}},
	}
	ipam["routes"] = []map[string]any{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}}
	conf := attach("1.0.0", ipam).Bytes()
	var v6 []string
	pods := []*netsim.NS{addPod(t, lab, "p1"), addPod(t, lab, "p2")}
	for i, pod := range pods {
		r := st.Add(t, fmt.Sprintf("c%d", i), pod, conf).Result(t)
		if len(r.IPs) != 2 {
			t.Fatalf("ips: %+v", r.IPs)
		}
		v6 = append(v6, r.IPs[1].Address.IP.String())
		a := mustIn(t, pod, "ip", "-o", "-6", "addr", "show", "eth0", "scope", "global")
		if !strings.Contains(a, v6[i]+"/64") || strings.Contains(a, "tentative") {
			t.Errorf("pod v6 address: %s", a)
		}
		if rt := mustIn(t, pod, "ip", "-6", "route", "show", "default"); !strings.Contains(rt, "via fd77::1") {
			t.Errorf("v6 default route: %q", rt)
		}
	}
	if a := mustIn(t, node.NS, "ip", "-o", "-6", "addr", "show", testBridge, "scope", "global"); !strings.Contains(a, "fd77::1/64") || strings.Contains(a, "tentative") {
		t.Errorf("bridge v6 gateway: %s", a)
	}
	mustIn(t, pods[0], "ping", "-6", "-c1", "-W2", v6[1])
	mustIn(t, pods[0], "ping", "-6", "-c1", "-W2", "fd77::1")

	// DAD is off on the pod interface unless enableDad asks for it; with
	// it, ADD waits until the address has left the tentative state.
	for _, pod := range pods {
		if v := strings.TrimSpace(mustIn(t, pod, "sysctl", "-n", "net.ipv6.conf.eth0.accept_dad")); v != "0" {
			t.Errorf("%s: accept_dad = %s, want 0 (enableDad unset)", pod.Name, v)
		}
	}
	dadConf := attach("1.0.0", ipam).With("enableDad", true).Bytes()
	p3 := addPod(t, lab, "p3")
	st.Add(t, "c3", p3, dadConf).OK(t)
	if v := strings.TrimSpace(mustIn(t, p3, "sysctl", "-n", "net.ipv6.conf.eth0.accept_dad")); v == "0" {
		t.Errorf("enableDad: accept_dad = 0, want DAD on")
	}
	if a := mustIn(t, p3, "ip", "-o", "-6", "addr", "show", "eth0", "scope", "global"); strings.Contains(a, "tentative") || !strings.Contains(a, "fd77::") {
		t.Errorf("enableDad: pod v6 address not settled: %s", a)
	}
}

// TestVRFHostRoute: with the bridge in a VRF, ADD puts a main-table route
// for the pod subnet via the VRF. Needs CONFIG_NET_VRF.
func TestVRFHostRoute(t *testing.T) {
	lab, node := newVRFNode(t, "va-vrf")
	st := stage(t, node)
	conf := attach("1.0.0", hostLocal(t.TempDir(), "", "")).Bytes()
	pod := addPod(t, lab, "p1")
	st.Add(t, "c1", pod, conf).OK(t)
	if rt := mustIn(t, node.NS, "ip", "route", "show", "table", "main", subnet); !strings.Contains(rt, "dev vrf-test") {
		t.Errorf("main-table route to the pod subnet: %q", rt)
	}
	mustIn(t, pod, "ping", "-c1", "-W2", gateway)
}

// TestSTPBridge: on a bridge with STP and a forward delay the port is not
// forwarding at once; ADD waits a bounded time, says so, and succeeds.
func TestSTPBridge(t *testing.T) {
	lab, node := newNode(t, "va-stp")
	mustIn(t, node.NS, "ip", "link", "set", testBridge, "type", "bridge", "stp_state", "1", "forward_delay", "400")
	pod := addPod(t, lab, "p1")
	o := stage(t, node).Add(t, "c1", pod, testutil.Conf("1.1.0", testNet, plugin).With("bridge", testBridge).Bytes())
	if o.Err != nil {
		t.Fatalf("ADD: %v %s", o.Err, o.Stdout)
	}
	if !strings.Contains(string(o.Stderr), "still in STP state") {
		t.Errorf("ADD should report the port still learning; stderr: %s", o.Stderr)
	}
}
