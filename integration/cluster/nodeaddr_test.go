package cluster

import (
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/pkg/netsim"
	"github.com/vxvrf/cni/pkg/testutil"
)

// nodeAddrs is node i's bridge.nodeAddresses in s: the first address of
// the node's row of each subnet (the fixture's ranges start at .2), with
// the subnet's prefix length.
func nodeAddrs(t *testing.T, s Spec, i int) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{s.Subnet4, s.Subnet6} {
		if sub == "" {
			continue
		}
		start, _, _, err := nodeRange(sub, i)
		if err != nil {
			t.Fatal(err)
		}
		_, ipn, _ := net.ParseCIDR(sub)
		ones, _ := ipn.Mask.Size()
		first := new(big.Int).Sub(new(big.Int).SetBytes(start), big.NewInt(1))
		ip := make(net.IP, len(start))
		b := first.Bytes()
		copy(ip[len(ip)-len(b):], b)
		out = append(out, fmt.Sprintf("%s/%d", ip, ones))
	}
	return out
}

// withNodeAddrs renders s for every node with bridge.nodeAddresses set to
// the node's own addresses.
func withNodeAddrs(t *testing.T, c *Cluster, s Spec) *Network {
	t.Helper()
	var lists [][]byte
	for i := range c.Nodes {
		b, err := c.Conflist(nodeAddrSpec(t, s, i), i)
		if err != nil {
			t.Fatal(err)
		}
		lists = append(lists, b)
	}
	n, err := c.NetworkFrom(lists)
	if err != nil {
		t.Fatal(err)
	}
	n.Spec = s
	return n
}

// nodeAddrSpec is s with node i's bridge.nodeAddresses.
func nodeAddrSpec(t *testing.T, s Spec, i int) Spec {
	addrs := nodeAddrs(t, s, i)
	s.Edit = func(_ map[string]any, plugins []map[string]any) error {
		for _, p := range plugins {
			if p["type"] == "vrf-vxlan-bridge" {
				p["bridge"].(map[string]any)["nodeAddresses"] = addrs
			}
		}
		return nil
	}
	return s
}

// addrLine is the "ip -o addr" line of addr (CIDR) on dev in node, "" when
// absent.
func addrLine(t *testing.T, node *netsim.NS, dev, addr string) string {
	t.Helper()
	for _, l := range strings.Split(sh(t, node, "ip", "-o", "addr", "show", "dev", dev), "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && f[3] == addr {
			return l
		}
	}
	return ""
}

// wantAddrs checks the bridge's addresses: node4 the primary IPv4 address
// of the subnet, the gateway gw4 secondary, the IPv6 gateway gw6
// deprecated.
func wantAddrs(t *testing.T, node *netsim.NS, br, node4, gw4, gw6 string) {
	t.Helper()
	if l := addrLine(t, node, br, node4); l == "" || strings.Contains(l, "secondary") {
		t.Errorf("%s: node address %s: %q, want it primary", node.Name, node4, l)
	}
	if l := addrLine(t, node, br, gw4); !strings.Contains(l, "secondary") {
		t.Errorf("%s: gateway %s: %q, want it secondary", node.Name, gw4, l)
	}
	if l := addrLine(t, node, br, gw6); !strings.Contains(l, "deprecated") {
		t.Errorf("%s: gateway %s: %q, want it deprecated", node.Name, gw6, l)
	}
}

// gatewayNeigh is the MAC the pod's neighbour entry for its gateway of
// the family holds ("" when there is none).
func gatewayNeigh(t *testing.T, p *Pod, v4 bool) string {
	t.Helper()
	out := sh(t, p.NS, "ip", "neigh", "show", p.IP(v4).Gateway.String(), "dev", "eth0")
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return f[i+1]
		}
	}
	return ""
}

func bridgeMAC(t *testing.T, c *Cluster, i int, network string) string {
	t.Helper()
	return sh(t, c.Nodes[i].NS, "cat", "/sys/class/net/"+naming.BridgeName(network)+"/address")
}

// nodeReachesRemotePod makes p2 resolve its gateways, lets node 0 ping p2
// and connect to it over TCP in both families, and returns the sources
// p2 saw (v4, v6). Ping and TCP failures are reported by the caller
// through the returned error list.
func nodeToRemotePod(t *testing.T, c *Cluster, p2 *Pod) (srcs []net.IP, errs []string) {
	t.Helper()
	for _, v4 := range []bool{true, false} {
		mustReach(t, p2.Name+" -> its gateway", p2.NS, p2.IP(v4).Gateway)
	}
	for _, v4 := range []bool{true, false} {
		ip := p2.IP(v4).Address.IP
		if !Reaches(c.Nodes[0].NS, ip) {
			errs = append(errs, fmt.Sprintf("n1 cannot ping %s (%s)", p2.Name, ip))
		}
		addr := net.JoinHostPort(ip.String(), "7000") // ports apart from the Service tests
		src, err := TCPPeer(p2.NS, addr, c.Nodes[0].NS, addr)
		if err != nil {
			errs = append(errs, err.Error())
		}
		srcs = append(srcs, src)
	}
	return srcs, errs
}

// wantNodeReaches proves n1 reaches p (on another node) over ping and TCP
// from want4 and want6 (n1's node addresses), and p's gateway entries keep
// its own node's bridge MAC afterwards.
func wantNodeReaches(t *testing.T, c *Cluster, p *Pod, want4, want6 string) {
	t.Helper()
	srcs, errs := nodeToRemotePod(t, c, p)
	for _, e := range errs {
		t.Error(e)
	}
	for i, want := range []string{want4, want6} {
		if srcs[i] != nil && srcs[i].String() != want {
			t.Errorf("n1 -> %s: the pod saw source %s, want n1's node address %s", p.Name, srcs[i], want)
		}
	}
	own := bridgeMAC(t, c, p.Node, p.Net.Spec.Name)
	for _, v4 := range []bool{true, false} {
		if got := gatewayNeigh(t, p, v4); got != own {
			t.Errorf("%s's gateway %s resolves to %q after n1 spoke to it, want its own node's bridge %s", p.Name, p.IP(v4).Gateway, got, own)
		}
	}
}

// TestNodeAddresses: with bridge.nodeAddresses (per-node bridge MACs, the
// default) the node reaches pods on other nodes in both families, from its
// own node address, and the remote pod's neighbour entry for its gateway
// keeps its own node's bridge MAC (no trombone through the node that
// spoke). A Service-like DNAT on n1 (pod on n1 → VIP:80 → pod on n2:8080,
// with bridge-nf-call-iptables as kube-proxy needs on a bridge) and a
// NodePort-like DNAT + MASQUERADE (external host → n1's uplink → pod on
// n2) work. The control network without the key shows the failure the key
// fixes: n1's ARP for the pod carries the shared gateway address, the pod
// moves its gateway to n1's MAC, and n1's own traffic leaves with the
// gateway address.
func TestNodeAddresses(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "cl-na", 2)
	s := Spec{Name: "nad", VNI: 480, Mode: Remotes, Subnet4: "10.48.0.0/16", Subnet6: "fd00:48::/64"}
	n := withNodeAddrs(t, c, s)
	p1, p2 := addPod(t, n, 0, "p"), addPod(t, n, 1, "p")
	br := naming.BridgeName(s.Name)
	n1v4, n1v6 := "10.48.1.1", "fd00:48::1:1"

	// The node address is the bridge's primary IPv4 address of the subnet,
	// the gateway secondary; the IPv6 gateway is deprecated.
	wantAddrs(t, c.Nodes[0].NS, br, n1v4+"/16", "10.48.0.1/16", "fd00:48::1/64")
	if l := addrLine(t, c.Nodes[0].NS, br, n1v6+"/64"); l == "" || strings.Contains(l, "deprecated") {
		t.Errorf("n1: node address %s/64: %q, want it present and preferred", n1v6, l)
	}

	wantNodeReaches(t, c, p2, n1v4, n1v6)
	n2MAC := bridgeMAC(t, c, 1, s.Name)

	// ClusterIP-like: pod on n1 → VIP:80, n1 DNATs to the pod on n2, in
	// both families. kube-proxy on a bridge needs bridge-nf-call-iptables:
	// the pod's reply is bridged on n1 (same subnet) and must be un-DNATed
	// there.
	for i := range c.Nodes {
		for _, key := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables"} {
			path := "/proc/sys/net/bridge/" + key
			if err := c.Nodes[i].NS.Do(func(ns.NetNS) error { _, err := os.Stat(path); return err }); err != nil {
				t.Skipf("no per-namespace %s (br_netfilter) in this kernel: %v", path, err)
			}
			sh(t, c.Nodes[i].NS, "sysctl", "-qw", "net.bridge."+key+"=1")
		}
	}
	// Forget what the node traffic above resolved, so the Service traffic
	// below makes n1 resolve the pod on n2 again (IPv6: from the bridge's
	// link-local address, the DNATed flow's source being the pod's).
	sh(t, c.Nodes[0].NS, "ip", "neigh", "flush", "dev", br)
	sh(t, p2.NS, "ip", "neigh", "flush", "dev", "eth0")
	for _, v4 := range []bool{true, false} {
		mustReach(t, p2.Name+" -> its gateway", p2.NS, p2.IP(v4).Gateway)
	}
	for _, svc := range []struct{ ipt, vip string }{{"iptables", "10.96.0.10"}, {"ip6tables", "fd00:96::10"}} {
		v4 := svc.ipt == "iptables"
		// More than one connection: an ICMP redirect must not send the pod
		// around n1. Each its own service port and listener port, so no
		// listener waits for the last one's socket to go.
		for k := 0; k < 3; k++ {
			port, to := fmt.Sprint(80+k), net.JoinHostPort(p2.IP(v4).Address.IP.String(), fmt.Sprint(8080+k))
			sh(t, c.Nodes[0].NS, svc.ipt, "-w", "-t", "nat", "-A", "PREROUTING", "-d", svc.vip, "-p", "tcp", "--dport", port,
				"-j", "DNAT", "--to-destination", to)
			src, err := TCPPeer(p2.NS, to, p1.NS, net.JoinHostPort(svc.vip, port))
			if err != nil {
				t.Errorf("ClusterIP %s:%s -> %s: %v", svc.vip, port, to, err)
			} else if !src.Equal(p1.IP(v4).Address.IP) {
				t.Errorf("ClusterIP %s: %s saw source %s, want the client pod %s", svc.vip, p2.Name, src, p1.IP(v4).Address.IP)
			}
		}
	}
	pod2 := p2.IP(true).Address.IP.String()

	// NodePort-like: external host → n1's uplink :30080, DNAT to the pod
	// on n2 and masquerade on the bridge (kube-proxy's MASQUERADE picks the
	// egress device's address: the node address).
	up := c.Nodes[0].Addr.String()
	sh(t, c.Nodes[0].NS, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", up, "-p", "tcp", "--dport", "30080",
		"-j", "DNAT", "--to-destination", pod2+":9000")
	sh(t, c.Nodes[0].NS, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", br, "-m", "conntrack", "--ctstate", "DNAT",
		"-j", "MASQUERADE")
	src, err := TCPPeer(p2.NS, net.JoinHostPort(pod2, "9000"), c.External, net.JoinHostPort(up, "30080"))
	if err != nil {
		t.Errorf("NodePort %s:30080 -> %s: %v", up, p2.Name, err)
	} else if src.String() != n1v4 {
		t.Errorf("NodePort: %s saw source %s, want n1's node address %s", p2.Name, src, n1v4)
	}
	for _, v4 := range []bool{true, false} {
		if got := gatewayNeigh(t, p2, v4); got != n2MAC {
			t.Errorf("after the Service traffic %s's gateway %s resolves to %q, want its own node's bridge %s", p2.Name, p2.IP(v4).Gateway, got, n2MAC)
		}
		ip := p2.IP(v4).Address.IP.String()
		if out := sh(t, c.Nodes[0].NS, "ip", "neigh", "show", ip, "dev", br); !strings.Contains(out, "lladdr") {
			t.Errorf("n1 did not resolve %s again for the Service traffic: %q", ip, out)
		}
	}
	mesh(t, p1, p2)
	for i := range c.Nodes {
		if err := n.Chains[i].Check(ctxT(t), []*Pod{p1, p2}[i].RT); err != nil {
			t.Errorf("CHECK on n%d: %v", i+1, err)
		}
	}

	// Control: the same without bridge.nodeAddresses.
	ctl := network(t, c, Spec{Name: "nactl", VNI: 481, Mode: Remotes, Subnet4: "10.49.0.0/16", Subnet6: "fd00:49::/64"})
	addPod(t, ctl, 0, "c")
	c2 := addPod(t, ctl, 1, "c")
	srcs, _ := nodeToRemotePod(t, c, c2)
	if srcs[0] == nil || srcs[0].String() != "10.49.0.1" {
		t.Errorf("control: n1 -> %s from %v, want the shared gateway 10.49.0.1 (the failure bridge.nodeAddresses fixes)", c2.Name, srcs[0])
	}
	if got, n1MAC := gatewayNeigh(t, c2, true), bridgeMAC(t, c, 0, "nactl"); got != n1MAC {
		t.Errorf("control: %s's gateway resolves to %q, want n1's bridge %s (moved by n1's ARP: the failure bridge.nodeAddresses fixes)", c2.Name, got, n1MAC)
	}

	// Anycast (the same MAC on every bridge, where bridge.nodeAddresses is
	// refused): the pod's ARP reply to n1 goes to the shared MAC and is
	// taken by its own node's bridge, so n1 never reaches it.
	anyNet := network(t, c, Spec{Name: "naany", VNI: 484, Mode: Remotes, Subnet4: "10.52.0.0/16", Anycast: true})
	addPod(t, anyNet, 0, "a")
	a2 := addPod(t, anyNet, 1, "a")
	mustReach(t, a2.Name+" -> its gateway", a2.NS, a2.IP(true).Gateway)
	mustNotReach(t, "anycast: n1 -> "+a2.Name, c.Nodes[0].NS, a2.IP(true).Address.IP)
}

// TestNodeAddressesUpgrade: a network whose bridges got the gateway first
// (pods from before bridge.nodeAddresses) gets the node address as the
// primary IPv4 address and a deprecated IPv6 gateway on the next ADD with
// the key, while the old pod keeps its connectivity and passes CHECK.
func TestNodeAddressesUpgrade(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "cl-nau", 2)
	s := Spec{Name: "nau", VNI: 482, Mode: Remotes, Subnet4: "10.50.0.0/16", Subnet6: "fd00:50::/64"}
	n := network(t, c, s)
	old1, old2 := addPod(t, n, 0, "old"), addPod(t, n, 1, "old")
	br := naming.BridgeName(s.Name)
	if l := addrLine(t, c.Nodes[0].NS, br, "10.50.0.1/16"); l == "" || strings.Contains(l, "secondary") {
		t.Fatalf("before: want the gateway primary: %q", l)
	}
	for i := range c.Nodes {
		if err := n.Rebind(nodeAddrSpec(t, s, i), i); err != nil {
			t.Fatal(err)
		}
	}
	new1 := addPod(t, n, 0, "new")
	wantAddrs(t, c.Nodes[0].NS, br, "10.50.1.1/16", "10.50.0.1/16", "fd00:50::1/64")
	if got := sh(t, c.Nodes[0].NS, "sysctl", "-n", "net.ipv4.conf."+br+".promote_secondaries"); got != "1" {
		t.Errorf("promote_secondaries %s, want 1", got)
	}
	if out := sh(t, c.Nodes[0].NS, "ip", "-4", "route", "show", "10.50.0.0/16"); !strings.Contains(out, "src 10.50.1.1") {
		t.Errorf("after: the subnet route should have the node address as source: %s", out)
	}
	new2 := addPod(t, n, 1, "new")
	mesh(t, old1, old2, new1, new2)
	wantNodeReaches(t, c, old2, "10.50.1.1", "fd00:50::1:1")
	for _, p := range []*Pod{old1, old2} {
		if err := n.Chains[p.Node].Check(ctxT(t), p.RT); err != nil {
			t.Errorf("CHECK %s: %v", p.Name, err)
		}
	}
	// CHECK notices a node address that lost its place.
	sh(t, c.Nodes[0].NS, "ip", "addr", "del", "10.50.1.1/16", "dev", br)
	if err := n.Chains[0].Check(ctxT(t), new1.RT); err == nil || !strings.Contains(err.Error(), "node address") {
		t.Errorf("CHECK with the node address removed: %v, want an error naming the node address", err)
	}
}

// TestNodeAddressesVRF (VM): in a VRF the node address is on the bridge
// inside the VRF; the node reaches a pod on another node through
// veth-attach's main-table route "<subnet> dev <vrf>", from its node
// address, and the pod's gateway entry keeps its own node's MAC.
func TestNodeAddressesVRF(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "cl-nav", 2)
	testutil.RequireVRF(t, c.Nodes[0].NS)
	s := Spec{Name: "nav", VNI: 483, Mode: Remotes, Subnet4: "10.51.0.0/16", Subnet6: "fd00:51::/64", VRFTable: 483}
	n := withNodeAddrs(t, c, s)
	addPod(t, n, 0, "p")
	p2 := addPod(t, n, 1, "p")
	wantNodeReaches(t, c, p2, "10.51.1.1", "fd00:51::1:1")
}

// TestNodeAddressesFromAnycast: a cluster moving from an anycast gateway
// (every bridge the same MAC) to per-node MACs with node addresses (the
// ConfigMap's change): the next ADD on each node gives the live bridge a
// MAC of its own and drops the anycast FDB pin, and the existing pods'
// gateway entries follow at once (the kernel's gratuitous ARP and
// unsolicited NA, kept on the node). Afterwards the node reaches the old
// pod on the other node, and all pods reach each other.
func TestNodeAddressesFromAnycast(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "cl-naa", 2)
	s := Spec{Name: "naa", VNI: 485, Mode: Remotes, Subnet4: "10.53.0.0/16", Subnet6: "fd00:53::/64", Anycast: true}
	n := network(t, c, s)
	old1, old2 := addPod(t, n, 0, "old"), addPod(t, n, 1, "old")
	shared := naming.AnycastGatewayMAC(s.Name).String()
	for _, p := range []*Pod{old1, old2} {
		for _, v4 := range []bool{true, false} {
			mustReach(t, p.Name+" -> gateway", p.NS, p.IP(v4).Gateway)
			if got := gatewayNeigh(t, p, v4); got != shared {
				t.Fatalf("before: %s's gateway is %q, want the anycast MAC %s", p.Name, got, shared)
			}
		}
	}
	s.Anycast = false
	for i := range c.Nodes {
		if err := n.Rebind(nodeAddrSpec(t, s, i), i); err != nil {
			t.Fatal(err)
		}
	}
	// CHECK with the new config, before any ADD: the shared MAC is named.
	if err := n.Chains[0].Check(ctxT(t), old1.RT); err == nil || !strings.Contains(err.Error(), "anycast gateway MAC") {
		t.Errorf("CHECK before the next ADD: %v, want the shared anycast MAC reported", err)
	}
	new1, new2 := addPod(t, n, 0, "new"), addPod(t, n, 1, "new")
	macs := []string{bridgeMAC(t, c, 0, s.Name), bridgeMAC(t, c, 1, s.Name)}
	if macs[0] == shared || macs[1] == shared || macs[0] == macs[1] {
		t.Errorf("bridge MACs %v: want one of its own on each node, not the anycast %s", macs, shared)
	}
	for i := range c.Nodes {
		fdb, err := c.FDB(i, "dev", naming.VXLANName(485))
		if err != nil {
			t.Fatal(err)
		}
		// The pin (own VTEP, permanent) goes. Until every node has moved,
		// another node's bridge may still speak with the shared MAC and be
		// learned here like any remote MAC: that entry ages out.
		if l := Lines(fdb, shared, "dst "+c.Nodes[i].Addr.String(), "permanent"); len(l) > 0 {
			t.Errorf("n%d still pins the anycast MAC: %v", i+1, l)
		}
	}
	// The old pods' gateway entries follow without any traffic of theirs.
	for _, p := range []*Pod{old1, old2} {
		for _, v4 := range []bool{true, false} {
			if got := gatewayNeigh(t, p, v4); got != macs[p.Node] {
				t.Errorf("%s's gateway %s is %q, want its node's new bridge MAC %s", p.Name, p.IP(v4).Gateway, got, macs[p.Node])
			}
		}
	}
	wantNodeReaches(t, c, old2, "10.53.1.1", "fd00:53::1:1")
	mesh(t, old1, old2, new1, new2)
	for _, p := range []*Pod{old1, old2, new1, new2} {
		if err := n.Chains[p.Node].Check(ctxT(t), p.RT); err != nil {
			t.Errorf("CHECK %s: %v", p.Name, err)
		}
	}
}
