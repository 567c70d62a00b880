package vrf

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// tenant is one network of the chain infra-ensure → vrf-vxlan-bridge →
// lockfile-ipam → veth-attach, run through libcni as a runtime does.
type tenant struct {
	name    string
	table   int
	vni     int
	subnets []string // one range set each; gateway = first address
	// firewall appends sysctl-firewall (masquerade, anti-spoofing): the
	// default five-stage chain.
	firewall bool
	// fwExtra are more keys of sysctl-firewall (backend, conntrackZone).
	fwExtra map[string]any
}

func (tn tenant) conflist(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	var ranges [][]map[string]string
	routes := []map[string]string{}
	for _, s := range tn.subnets {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		ranges = append(ranges, []map[string]string{{"subnet": s, "gateway": gateway(n).String()}})
		if n.IP.To4() != nil {
			routes = append(routes, map[string]string{"dst": "0.0.0.0/0"})
		} else {
			routes = append(routes, map[string]string{"dst": "::/0"})
		}
	}
	c := map[string]any{
		"cniVersion": "1.1.0",
		"name":       tn.name,
		"plugins": []any{
			map[string]any{"type": "infra-ensure", "stateDir": dir + "/infra"},
			map[string]any{
				"type":  "vrf-vxlan-bridge",
				"vrf":   map[string]any{"table": tn.table},
				"vxlan": map[string]any{"vni": tn.vni, "remotes": []string{"198.18.0.99"}},
			},
			map[string]any{
				"type": "lockfile-ipam",
				"ipam": map[string]any{"ranges": ranges, "routes": routes, "dataDir": dir + "/ipam"},
			},
			map[string]any{"type": "veth-attach"},
		},
	}
	if tn.firewall {
		fw := map[string]any{"type": "sysctl-firewall", "masquerade": true, "antiSpoofing": true}
		for k, v := range tn.fwExtra {
			fw[k] = v
		}
		c["plugins"] = append(c["plugins"].([]any), fw)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gateway is the first address of n.
func gateway(n *net.IPNet) net.IP {
	ip := make(net.IP, len(n.IP))
	copy(ip, n.IP)
	ip[len(ip)-1]++
	return ip
}

// runtime runs conflists against pods of one node, through libcni, from
// inside the node namespace (plugins inherit the calling thread's netns).
type runtime struct {
	t    *testing.T
	node *netsim.Node
	cni  *libcni.CNIConfig
}

func newRuntime(t *testing.T, node *netsim.Node) *runtime {
	dir := testutil.PluginDir(t, testutil.Plugins...)
	return &runtime{t: t, node: node, cni: libcni.NewCNIConfigWithCacheDir([]string{dir}, t.TempDir(), nil)}
}

func (r *runtime) rt(pod *netsim.NS) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: "c-" + pod.Name, NetNS: pod.Path, IfName: "eth0"}
}

func (r *runtime) list(conf []byte) *libcni.NetworkConfigList {
	l, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		r.t.Fatalf("conflist: %v", err)
	}
	return l
}

func (r *runtime) do(fn func() error) error {
	return r.node.Do(func(ns.NetNS) error { return fn() })
}

// add runs ADD and registers a DEL at cleanup (DEL is idempotent).
func (r *runtime) add(conf []byte, pod *netsim.NS) *current.Result {
	r.t.Helper()
	l := r.list(conf)
	var res types.Result
	err := r.do(func() error {
		var err error
		res, err = r.cni.AddNetworkList(context.Background(), l, r.rt(pod))
		return err
	})
	if err != nil {
		r.t.Fatalf("ADD %s for %s: %v", l.Name, pod.Name, err)
	}
	r.t.Cleanup(func() {
		if err := r.del(conf, pod); err != nil {
			r.t.Errorf("cleanup DEL %s for %s: %v", l.Name, pod.Name, err)
		}
	})
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		r.t.Fatalf("result: %v", err)
	}
	return cur
}

func (r *runtime) check(conf []byte, pod *netsim.NS) error {
	l := r.list(conf)
	return r.do(func() error { return r.cni.CheckNetworkList(context.Background(), l, r.rt(pod)) })
}

func (r *runtime) del(conf []byte, pod *netsim.NS) error {
	l := r.list(conf)
	return r.do(func() error { return r.cni.DelNetworkList(context.Background(), l, r.rt(pod)) })
}

// podIPs are the result's addresses on the pod interface (sandbox set).
func podIPs(t *testing.T, res *current.Result) []*current.IPConfig {
	t.Helper()
	var out []*current.IPConfig
	for _, ip := range res.IPs {
		if ip.Interface != nil && *ip.Interface < len(res.Interfaces) && res.Interfaces[*ip.Interface].Sandbox != "" {
			out = append(out, ip)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no pod address in the result: %s", res)
	}
	return out
}

// assertVRF checks the VRF of tn exists with its table and that the
// network's bridge is enslaved to it; it returns the bridge.
func assertVRF(t *testing.T, node *netsim.Node, tn tenant) netlink.Link {
	t.Helper()
	vl := linkIn(t, node.NS, naming.VRFName(tn.name))
	v, ok := vl.(*netlink.Vrf)
	if !ok {
		t.Fatalf("%s is a %s, not a vrf", vl.Attrs().Name, vl.Type())
	}
	if int(v.Table) != tn.table {
		t.Fatalf("vrf %s has table %d, want %d", v.Name, v.Table, tn.table)
	}
	br := linkIn(t, node.NS, naming.BridgeName(tn.name))
	if br.Type() != "bridge" || br.Attrs().MasterIndex != v.Index {
		t.Fatalf("%s: type %s master %d, want a bridge enslaved to vrf %s (%d)",
			br.Attrs().Name, br.Type(), br.Attrs().MasterIndex, v.Name, v.Index)
	}
	return br
}

func prefix(ip *current.IPConfig) string {
	return (&net.IPNet{IP: ip.Address.IP.Mask(ip.Address.Mask), Mask: ip.Address.Mask}).String()
}

// ping sends one echo from the namespace (via dev when set), allowing up to
// 10 s for a reply (first ARP/ND, DAD, TCG slowness): a bound, not a sleep.
func ping(t *testing.T, from *netsim.NS, dev string, dst net.IP) error {
	t.Helper()
	args := []string{"-c1", "-w10"}
	if dst.To4() == nil {
		args = append(args, "-6")
	}
	if dev != "" {
		args = append(args, "-I", dev)
	}
	_, err := from.In("ping", append(args, dst.String())...)
	return err
}

// dumpOnFailure logs the node's links and every routing table when the
// test fails, so a failure in the VM can be read without rerunning.
func dumpOnFailure(t *testing.T, n *netsim.NS) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, c := range [][]string{{"-d", "-br", "link"}, {"-br", "addr"}, {"route", "show", "table", "all"}, {"-6", "route", "show", "table", "all"}} {
			out, _ := n.In("ip", c...)
			t.Logf("%s: ip %s:\n%s", n.Name, strings.Join(c, " "), out)
		}
	})
}

// TestChainVRF: one pod through the whole chain on a network with a VRF:
// the VRF has the configured table, the bridge (and VXLAN) hang under it,
// the pod's connected route is in the VRF's table and not in main, the pod
// reaches its gateway, the node reaches the pod only through the VRF; CHECK
// passes and DEL removes the pod's veth.
func TestChainVRF(t *testing.T) {
	lab, node := vrfNode(t, "vm-ch")
	pod := testutil.AddNS(t, lab, "p1")
	tn := tenant{name: "vmred", table: 100, vni: 100, subnets: []string{"10.20.0.0/24"}}
	conf := tn.conflist(t)
	r := newRuntime(t, node)
	res := r.add(conf, pod)

	br := assertVRF(t, node, tn)
	vx := linkIn(t, node.NS, naming.VXLANName(uint32(tn.vni)))
	if vx.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatalf("vxlan %s master %d, want the bridge %d", vx.Attrs().Name, vx.Attrs().MasterIndex, br.Attrs().Index)
	}
	ip := podIPs(t, res)[0]
	if got := in(t, pod, "ip", "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(got, ip.Address.String()) {
		t.Fatalf("pod eth0 lacks %s: %s", ip.Address.String(), got)
	}
	if rs := routes(t, node.NS, netlink.FAMILY_V4, tn.table); !hasRoute(rs, prefix(ip), br.Attrs().Index) {
		t.Fatalf("route %s dev %s not in table %d: %v", prefix(ip), br.Attrs().Name, tn.table, rs)
	}
	// main may route the subnet into the VRF device (veth-attach's route
	// for node → pod reachability), never straight onto the bridge.
	if rs := routes(t, node.NS, netlink.FAMILY_V4, unix.RT_TABLE_MAIN); hasRoute(rs, prefix(ip), br.Attrs().Index) {
		t.Fatalf("connected route %s dev %s leaked into main: %v", prefix(ip), br.Attrs().Name, rs)
	}
	if err := ping(t, pod, "", ip.Gateway); err != nil {
		t.Fatalf("pod → gateway: %v", err)
	}
	if err := ping(t, node.NS, naming.VRFName(tn.name), ip.Address.IP); err != nil {
		t.Fatalf("node (bound to the vrf) → pod: %v", err)
	}
	if err := r.check(conf, pod); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := r.del(conf, pod); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	hv := naming.HostVethName(tn.name, r.rt(pod).ContainerID, "eth0")
	if out, err := node.In("ip", "link", "show", hv); err == nil {
		t.Fatalf("host veth %s still there after DEL: %s", hv, out)
	}
	if err := r.del(conf, pod); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
}

// TestTenantsVRF: two networks with the SAME subnet in different VRFs on one
// node. Both pods get addresses, each network's connected route sits in its
// own table on its own bridge, and each pod reaches its own gateway.
func TestTenantsVRF(t *testing.T) {
	lab, node := vrfNode(t, "vm-tn")
	r := newRuntime(t, node)
	tenants := []tenant{
		{name: "vmred", table: 101, vni: 101, subnets: []string{"10.30.0.0/24"}},
		{name: "vmblue", table: 102, vni: 102, subnets: []string{"10.30.0.0/24"}},
	}
	pods := make([]*netsim.NS, len(tenants))
	ips := make([]*current.IPConfig, len(tenants))
	for i, tn := range tenants {
		pod, err := lab.AddNS("p" + tn.name[2:])
		if err != nil {
			t.Fatal(err)
		}
		pods[i] = pod
		ips[i] = podIPs(t, r.add(tn.conflist(t), pod))[0]
	}
	for i, tn := range tenants {
		br := assertVRF(t, node, tn)
		rs := routes(t, node.NS, netlink.FAMILY_V4, tn.table)
		if !hasRoute(rs, "10.30.0.0/24", br.Attrs().Index) {
			t.Errorf("%s: 10.30.0.0/24 dev %s not in table %d: %v", tn.name, br.Attrs().Name, tn.table, rs)
		}
		for j, other := range tenants {
			if j != i && hasRoute(rs, "10.30.0.0/24", linkIn(t, node.NS, naming.BridgeName(other.name)).Attrs().Index) {
				t.Errorf("table %d of %s routes to %s's bridge", tn.table, tn.name, other.name)
			}
		}
		if !ips[i].Gateway.Equal(net.ParseIP("10.30.0.1")) {
			t.Errorf("%s: gateway %s, want 10.30.0.1", tn.name, ips[i].Gateway)
		}
		if err := ping(t, pods[i], "", ips[i].Gateway); err != nil {
			t.Errorf("%s pod → its gateway: %v", tn.name, err)
		}
		if err := ping(t, node.NS, naming.VRFName(tn.name), ips[i].Address.IP); err != nil {
			t.Errorf("node in vrf %s → %s pod: %v", naming.VRFName(tn.name), tn.name, err)
		}
	}
	main := routes(t, node.NS, netlink.FAMILY_V4, unix.RT_TABLE_MAIN)
	for _, tn := range tenants {
		if br := linkIn(t, node.NS, naming.BridgeName(tn.name)); hasRoute(main, "10.30.0.0/24", br.Attrs().Index) {
			t.Errorf("%s's connected route leaked into main: %v", tn.name, main)
		}
	}
}

// v6Addr returns the flags of addr on dev in n ("" when absent).
func v6Addr(t *testing.T, n *netsim.NS, dev string, addr *net.IPNet) (found bool, tentative bool) {
	t.Helper()
	var as []netlink.Addr
	err := n.Do(func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(dev)
		if err != nil {
			return err
		}
		as, err = netlinksafe.AddrList(l, netlink.FAMILY_V6)
		return err
	})
	if err != nil {
		t.Fatalf("addresses of %s: %v", dev, err)
	}
	for _, a := range as {
		if a.IP.Equal(addr.IP) {
			return true, a.Flags&unix.IFA_F_TENTATIVE != 0
		}
	}
	return false, false
}

// TestIPv6SurvivesEnslavementVRF: a dual-stack network; the IPv6 gateway
// address on the bridge (which the kernel would flush when a device with
// addresses is enslaved to a VRF) is present after ADD and after a second
// pod's ADD re-ensures the VRF, its connected route is in the VRF's table,
// and the pod reaches the gateway over IPv6.
func TestIPv6SurvivesEnslavementVRF(t *testing.T) {
	lab, node := vrfNode(t, "vm-v6")
	tn := tenant{name: "vmsix", table: 106, vni: 106, subnets: []string{"10.60.0.0/24", "fd00:60::/64"}}
	conf := tn.conflist(t)
	r := newRuntime(t, node)
	p1 := testutil.AddNS(t, lab, "p1")
	var v6 *current.IPConfig
	for _, ip := range podIPs(t, r.add(conf, p1)) {
		if ip.Address.IP.To4() == nil {
			v6 = ip
		}
	}
	if v6 == nil {
		t.Fatal("no IPv6 address in the result")
	}
	gw := &net.IPNet{IP: v6.Gateway, Mask: v6.Address.Mask}
	brName := naming.BridgeName(tn.name)
	check := func(when string) {
		t.Helper()
		br := assertVRF(t, node, tn)
		if found, _ := v6Addr(t, node.NS, brName, gw); !found {
			t.Fatalf("%s: IPv6 gateway %s missing from %s: %s", when, gw, brName, in(t, node.NS, "ip", "-6", "addr", "show", "dev", brName))
		}
		if rs := routes(t, node.NS, netlink.FAMILY_V6, tn.table); !hasRoute(rs, "fd00:60::/64", br.Attrs().Index) {
			t.Fatalf("%s: fd00:60::/64 not in table %d: %v", when, tn.table, rs)
		}
	}
	check("after the first ADD")
	if err := ping(t, p1, "", v6.Gateway); err != nil {
		t.Fatalf("pod → IPv6 gateway: %v", err)
	}
	if _, tentative := v6Addr(t, node.NS, brName, gw); tentative {
		t.Errorf("IPv6 gateway %s still tentative after traffic", gw)
	}
	p2 := testutil.AddNS(t, lab, "p2")
	r.add(conf, p2)
	check("after the second ADD")
	if err := ping(t, p1, "", v6.Gateway); err != nil {
		t.Fatalf("pod → IPv6 gateway after the second ADD: %v", err)
	}
}

// TestCheckTableVRF: CHECK passes on a fresh attachment and fails once the
// VRF has been recreated with another table; DEL still cleans up.
func TestCheckTableVRF(t *testing.T) {
	lab, node := vrfNode(t, "vm-ck")
	pod := testutil.AddNS(t, lab, "p1")
	tn := tenant{name: "vmchk", table: 110, vni: 110, subnets: []string{"10.110.0.0/24"}}
	conf := tn.conflist(t)
	r := newRuntime(t, node)
	r.add(conf, pod)
	if err := r.check(conf, pod); err != nil {
		t.Fatalf("CHECK on a fresh attachment: %v", err)
	}
	vrf, br := naming.VRFName(tn.name), naming.BridgeName(tn.name)
	for _, c := range [][]string{
		{"link", "del", vrf},
		{"link", "add", vrf, "type", "vrf", "table", "111"},
		{"link", "set", vrf, "up"},
		{"link", "set", br, "master", vrf},
	} {
		in(t, node.NS, "ip", c...)
	}
	err := r.check(conf, pod)
	if err == nil {
		t.Fatalf("CHECK passed with vrf %s on table 111 (config: %d)", vrf, tn.table)
	}
	if !strings.Contains(err.Error(), "table") || !strings.Contains(err.Error(), fmt.Sprint(tn.table)) {
		t.Errorf("CHECK failed, but not about the table: %v", err)
	}
	t.Logf("CHECK: %v", err)
}

// TestNodeReachesPodVRF: the node's own (default-VRF) stack reaches a pod
// whose bridge is in a VRF, as the kubelet's probes need: veth-attach routes
// the pod subnet from main into the VRF device.
func TestNodeReachesPodVRF(t *testing.T) {
	lab, node := vrfNode(t, "vm-nr")
	pod := testutil.AddNS(t, lab, "p1")
	tn := tenant{name: "vmnode", table: 120, vni: 120, subnets: []string{"10.120.0.0/24"}}
	ip := podIPs(t, newRuntime(t, node).add(tn.conflist(t), pod))[0]
	vrf := linkIn(t, node.NS, naming.VRFName(tn.name))
	if rs := routes(t, node.NS, netlink.FAMILY_V4, unix.RT_TABLE_MAIN); !hasRoute(rs, prefix(ip), vrf.Attrs().Index) {
		t.Fatalf("main has no route %s dev %s: %v", prefix(ip), vrf.Attrs().Name, rs)
	}
	if err := ping(t, node.NS, "", ip.Address.IP); err != nil {
		t.Fatalf("node (default VRF) → pod %s: %v", ip.Address.IP, err)
	}
}

// TestFullChainVRF: the default five-stage chain (… → sysctl-firewall with
// masquerade and anti-spoofing) on a VRF network, with each firewall
// backend: ADD installs the attachment's rules (iptables) or elements
// (nftables), the pod still reaches its gateway, CHECK passes (the VRF's
// conntrack zone included), DEL removes them.
func TestFullChainVRF(t *testing.T) {
	for _, be := range []string{"iptables", "nftables"} {
		t.Run(be, func(t *testing.T) {
			lab, node := vrfNode(t, "vm-fc-"+be[:1])
			pod := testutil.AddNS(t, lab, "p1")
			extra := map[string]any{"backend": be}
			tn := tenant{name: "vmfw", table: 130, vni: 130, subnets: []string{"10.130.0.0/24"}, firewall: true, fwExtra: extra}
			conf := tn.conflist(t)
			r := newRuntime(t, node)
			ip := podIPs(t, r.add(conf, pod))[0]
			cid := r.rt(pod).ContainerID
			state := func() string {
				if be == "iptables" {
					tag := naming.AttachmentTag(tn.name, cid, "eth0")
					if out := in(t, node.NS, "iptables-save"); strings.Contains(out, tag) {
						return out
					}
					return ""
				}
				objs, err := chain.NftObjects(node.NetNS)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, o := range objs {
					if naming.NftTagOf(o.Comment) == naming.NftTag(tn.name, cid, "eth0") {
						out = append(out, o.String())
					}
				}
				return strings.Join(out, "\n")
			}
			if state() == "" {
				t.Fatalf("no %s state of the attachment after ADD", be)
			}
			if err := ping(t, pod, "", ip.Gateway); err != nil {
				t.Fatalf("pod → gateway through the firewall: %v", err)
			}
			if err := r.check(conf, pod); err != nil {
				t.Fatalf("CHECK: %v", err)
			}
			if err := r.del(conf, pod); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if s := state(); s != "" {
				t.Fatalf("%s state left after DEL:\n%s", be, s)
			}
		})
	}
}

// vrfNode is a lab with one node; the test skips (fails in the VM) without
// VRF support, and dumps the node's links and routes if it fails.
func vrfNode(t *testing.T, name string) (*netsim.Lab, *netsim.Node) {
	t.Helper()
	lab, node := testutil.NewNode(t, name)
	testutil.RequireVRF(t, node.NS)
	dumpOnFailure(t, node.NS)
	return lab, node
}
