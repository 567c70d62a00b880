package cluster

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/pkg/naming"
)

// basics proves, for pods one per node of a dual-stack network: pod <-> pod
// across nodes in both families; each pod reaches its gateway; no address
// tentative; the pod MTU is the uplink's minus the VXLAN overhead and a DF
// packet of exactly that size crosses nodes while one byte more fails
// cleanly; each node reaches its own pods over the bridge's connected
// route; egress to the external host is masqueraded to the node's uplink
// address and the reply comes back.
func basics(t *testing.T, c *Cluster, n *Network, pods []*Pod) {
	t.Helper()
	mesh(t, pods...)
	br := naming.BridgeName(n.Spec.Name)
	for _, p := range pods {
		node := c.Nodes[p.Node]
		for _, v4 := range []bool{true, false} {
			ip := p.IP(v4)
			if ip == nil {
				if v4 || n.Spec.Subnet6 != "" {
					t.Errorf("%s: no address of family v4=%t: %v", p.Name, v4, p.IPs)
				}
				continue
			}
			mustReach(t, p.Name+" -> gateway", p.NS, ip.Gateway)
			mustReach(t, fmt.Sprintf("n%d -> its pod %s", p.Node+1, p.Name), node.NS, ip.Address.IP)
		}
		if out := sh(t, p.NS, "ip", "addr", "show", "tentative"); out != "" {
			t.Errorf("%s: tentative addresses: %s", p.Name, out)
		}
		if out := sh(t, p.NS, "ip", "addr", "show", "dadfailed"); out != "" {
			t.Errorf("%s: DAD failed: %s", p.Name, out)
		}
		// The node reaches its pods through the connected route of the
		// gateway address on the bridge.
		if out := sh(t, node.NS, "ip", "route", "get", p.IP(true).Address.IP.String()); !strings.Contains(out, "dev "+br) {
			t.Errorf("n%d: route to %s is not via %s: %s", p.Node+1, p.Name, br, out)
		}
		peer, err := c.Egress(p.NS)
		if err != nil {
			t.Errorf("%s -> external host: %v", p.Name, err)
		} else if !peer.Equal(node.Addr) {
			t.Errorf("%s -> external host: it saw %s, want the node's uplink address %s", p.Name, peer, node.Addr)
		}
	}
	// MTU: 1500 (uplink) - 50 (VXLAN over IPv4).
	const mtu = 1450
	a, b := pods[0], pods[1]
	if got := sh(t, a.NS, "cat", "/sys/class/net/eth0/mtu"); got != fmt.Sprint(mtu) {
		t.Errorf("%s: pod MTU %s, want %d", a.Name, got, mtu)
	}
	for _, v4 := range []bool{true, false} {
		if b.IP(v4) == nil {
			continue
		}
		hdr, fam := 28, "-4"
		if !v4 {
			hdr, fam = 48, "-6"
		}
		dst := b.IP(v4).Address.IP
		if err := Ping(a.NS, dst, fam, "-M", "do", "-s", fmt.Sprint(mtu-hdr)); err != nil {
			t.Errorf("%s -> %s: a DF packet of exactly the MTU %d did not cross: %v", a.Name, b.Name, mtu, err)
		}
		out, err := a.NS.In("ping", fam, "-c1", "-W1", "-M", "do", "-s", fmt.Sprint(mtu-hdr+1), dst.String())
		if err == nil {
			t.Errorf("%s -> %s: a DF packet one byte over the MTU went through", a.Name, b.Name)
		} else if !strings.Contains(strings.ToLower(string(out)+err.Error()), "message too long") {
			t.Errorf("%s -> %s: one byte over the MTU did not fail cleanly (EMSGSIZE at the sender): %v", a.Name, b.Name, err)
		}
	}
}

// TestRemotes: three nodes with static peer lists (head-end replication).
func TestRemotes(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "cl-rem", 3)
	n := network(t, c, Spec{Name: "rem", VNI: 310, Mode: Remotes, Subnet4: "10.31.0.0/16", Subnet6: "fd00:31::/64"})
	var pods []*Pod
	for i := range c.Nodes {
		pods = append(pods, addPod(t, n, i, "p"))
	}
	basics(t, c, n, pods)
}

// TestGroup: three nodes flooding through a multicast group on the
// underlay (flood and learn).
func TestGroup(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "cl-grp", 3)
	n := network(t, c, Spec{Name: "grp", VNI: 330, Mode: Group, Subnet4: "10.33.0.0/16", Subnet6: "fd00:33::/64"})
	var pods []*Pod
	for i := range c.Nodes {
		pods = append(pods, addPod(t, n, i, "p"))
	}
	basics(t, c, n, pods)
	for i, node := range c.Nodes {
		if out := sh(t, node.NS, "ip", "-d", "link", "show", naming.VXLANName(330)); !strings.Contains(out, "group 239.1.1.81") {
			t.Errorf("n%d: vxlan not in the group: %s", i+1, out)
		}
	}
}

// floodDsts lists the all-zero FDB destinations of the network's VXLAN
// device on node i.
func floodDsts(t *testing.T, c *Cluster, i int, vni int) []string {
	t.Helper()
	out, err := c.FDB(i, "dev", naming.VXLANName(uint32(vni)))
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, l := range Lines(out, "00:00:00:00:00:00") {
		f := strings.Fields(l)
		for j := 0; j+1 < len(f); j++ {
			if f[j] == "dst" {
				dsts = append(dsts, f[j+1])
			}
		}
	}
	slices.Sort(dsts)
	return dsts
}

// TestRemotesGrow: n1 and n2 start with each other as peers; n3 joins. The
// next ADD on each node (its conflist re-rendered with the longer list)
// adds the new flood entry once; repeating ADDs keeps exactly one entry per
// peer; pods on all three nodes then reach each other.
func TestRemotesGrow(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "cl-grow", 3)
	two := Spec{Name: "grow", VNI: 340, Mode: Remotes, Subnet4: "10.34.0.0/16", Peers: []int{0, 1}}
	n := network(t, c, two)
	p1, p2 := addPod(t, n, 0, "a"), addPod(t, n, 1, "a")
	mesh(t, p1, p2)
	if got, want := floodDsts(t, c, 0, 340), []string{c.Nodes[1].Addr.String()}; !slices.Equal(got, want) {
		t.Errorf("n1 flood entries %v, want %v", got, want)
	}
	all := two
	all.Peers = nil
	for i := range c.Nodes {
		if err := n.Rebind(all, i); err != nil {
			t.Fatal(err)
		}
	}
	p3 := addPod(t, n, 2, "a")
	q1, q2 := addPod(t, n, 0, "b"), addPod(t, n, 1, "b")
	_ = addPod(t, n, 0, "c") // a further ADD changes nothing
	for i, node := range c.Nodes {
		var want []string
		for j, other := range c.Nodes {
			if j != i {
				want = append(want, other.Addr.String())
			}
		}
		slices.Sort(want)
		if got := floodDsts(t, c, i, 340); !slices.Equal(got, want) {
			t.Errorf("n%d (%s) flood entries %v, want %v", i+1, node.Addr, got, want)
		}
	}
	mesh(t, p1, p2, p3, q1, q2)
	if err := n.Chains[0].Check(ctxT(t), p1.RT); err != nil {
		t.Errorf("CHECK of an old pod with the new list: %v", err)
	}
}

// TestDelGCIsolation: DEL and GC on one node leave the other nodes' pods
// and devices alone; after the last pod of the network leaves n1 and GC runs
// there with an empty list, the network's devices and rules are gone from
// n1 only.
func TestDelGCIsolation(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "cl-gc", 3)
	n := network(t, c, Spec{Name: "gc", VNI: 350, Mode: Remotes, Subnet4: "10.35.0.0/16", Subnet6: "fd00:35::/64"})
	a1, b1 := addPod(t, n, 0, "a"), addPod(t, n, 0, "b")
	p2, p3 := addPod(t, n, 1, "a"), addPod(t, n, 2, "a")
	mesh(t, a1, b1, p2, p3)
	others := func(when string) {
		t.Helper()
		mesh(t, p2, p3)
		for _, p := range []*Pod{p2, p3} {
			if err := n.Chains[p.Node].Check(ctxT(t), p.RT); err != nil {
				t.Errorf("%s: CHECK %s: %v", when, p.Name, err)
			}
		}
	}
	del(t, n, a1)
	if err := n.Chains[0].GC(ctxT(t), []types.GCAttachment{{ContainerID: b1.RT.ContainerID, IfName: "eth0"}}); err != nil {
		t.Errorf("GC on n1 keeping b1: %v", err)
	}
	if left := n.Chains[0].Leftovers(c.Nodes[0].NS, []chain.Attachment{a1.Attachment()}, c.NodeRoot(0)); len(left) > 0 {
		t.Errorf("after DEL of %s: %v", a1.Name, left)
	}
	mesh(t, b1, p2, p3)
	others("after DEL+GC of one pod on n1")

	del(t, n, b1)
	if err := n.Chains[0].GC(ctxT(t), []types.GCAttachment{}); err != nil {
		t.Errorf("GC on n1 with an empty list: %v", err)
	}
	if err := n.Chains[0].GC(ctxT(t), []types.GCAttachment{}); err != nil {
		t.Errorf("GC on n1 again: %v", err)
	}
	for _, l := range n.Chains[0].NetworkLeftovers(c.Nodes[0].NS) {
		t.Errorf("n1 after the last DEL and GC: %s", l)
	}
	for _, l := range n.Chains[0].Leftovers(c.Nodes[0].NS, []chain.Attachment{a1.Attachment(), b1.Attachment()}, c.NodeRoot(0)) {
		t.Errorf("n1 after the last DEL and GC: %s", l)
	}
	if links, _ := chain.Links(c.Nodes[0].NetNS); links[naming.VXLANName(350)] != "" || hasKey(links, naming.VXLANName(350)) {
		t.Errorf("n1: %s still there", naming.VXLANName(350))
	}
	for i := 1; i < 3; i++ {
		links, err := chain.Links(c.Nodes[i].NetNS)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{naming.BridgeName("gc"), naming.VXLANName(350)} {
			if !hasKey(links, d) {
				t.Errorf("n%d lost %s after GC on n1", i+1, d)
			}
		}
	}
	others("after the network left n1")
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }
