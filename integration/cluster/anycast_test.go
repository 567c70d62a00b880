package cluster

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vxvrf/cni/pkg/naming"
)

// TestAnycastGateway: with anycastGateway every node's bridge has the same
// gateway IP and MAC; a pod's ARP/ND for the gateway is answered by its own
// node and never crosses VXLAN (no other node's bridge learns the pod as a
// neighbour), and the gateway MAC never appears as learned on the VXLAN
// port of any node (no FDB flapping), even when the nodes' bridges send
// across the overlay. Two controls show the detectors see the failure when
// each protection is removed.
func TestAnycastGateway(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "cl-any", 3)
	const net = "any"
	n := network(t, c, Spec{Name: net, VNI: 320, Mode: Remotes, Subnet4: "10.32.0.0/16", Subnet6: "fd00:32::/64", Anycast: true})
	var pods []*Pod
	for i := range c.Nodes {
		pods = append(pods, addPod(t, n, i, "p"))
	}
	br, vx := naming.BridgeName(net), naming.VXLANName(320)
	gwMAC := naming.AnycastGatewayMAC(net).String()
	for i, node := range c.Nodes {
		if got := sh(t, node.NS, "cat", "/sys/class/net/"+br+"/address"); got != gwMAC {
			t.Errorf("n%d: bridge MAC %s, want the anycast MAC %s", i+1, got, gwMAC)
		}
		for _, gw := range []string{"10.32.0.1/16", "fd00:32::1/64"} {
			if out := sh(t, node.NS, "ip", "addr", "show", "dev", br); !strings.Contains(out, gw) {
				t.Errorf("n%d: bridge lacks the gateway %s:\n%s", i+1, gw, out)
			}
		}
	}

	// Pods reach their gateway; no other node's bridge hears the ARP/ND.
	for _, p := range pods {
		for _, v4 := range []bool{true, false} {
			mustReach(t, p.Name+" -> gateway", p.NS, p.IP(v4).Gateway)
		}
	}
	strangers := func() []string {
		var out []string
		for i, node := range c.Nodes {
			neigh := sh(t, node.NS, "ip", "neigh", "show", "dev", br)
			for _, p := range pods {
				if p.Node == i {
					continue
				}
				for _, ip := range p.IPs {
					if l := Lines(neigh, ip.Address.IP.String()+" "); len(l) > 0 {
						out = append(out, fmt.Sprintf("n%d's bridge learned %s as a neighbour: %s", i+1, p.Name, l))
					}
				}
			}
		}
		return out
	}
	for _, s := range strangers() {
		t.Errorf("gateway ARP/ND crossed the overlay: %s", s)
	}
	mesh(t, pods...) // pod to pod across nodes still resolves over the overlay

	// Make the bridges speak across the overlay with the gateway MAC as
	// source: each node pings the other nodes' pods (this fails with an
	// anycast gateway - the reply goes to the pod's own node - and is only
	// here to send frames).
	provoke := func() {
		var wg sync.WaitGroup
		for i, node := range c.Nodes {
			for _, p := range pods {
				if p.Node != i {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_ = Ping(node.NS, p.IP(true).Address.IP, "-W1")
					}()
				}
			}
		}
		wg.Wait()
	}
	provoke()
	flapping := func() []string {
		var out []string
		for i, node := range c.Nodes {
			fdb, err := c.FDB(i)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range Lines(fdb, gwMAC) {
				switch {
				case strings.Contains(l, "dev "+br+" ") && strings.Contains(l, "permanent"):
					// the bridge's own, local entry
				case strings.Contains(l, "dev "+vx+" ") && strings.Contains(l, " self permanent") && strings.Contains(l, "dst "+node.Addr.String()+" "):
					// the pin that keeps it local
				default:
					out = append(out, fmt.Sprintf("n%d: %s", i+1, l))
				}
			}
		}
		return out
	}
	for _, f := range flapping() {
		t.Errorf("gateway MAC learned away from the local bridge: %s", f)
	}
	for _, p := range pods {
		if err := n.Chains[p.Node].Check(ctxT(t), p.RT); err != nil {
			t.Errorf("CHECK %s: %v", p.Name, err)
		}
	}

	// Control 1: without the FDB pin on n2, n2's VXLAN device learns the
	// gateway MAC from the other nodes' bridges - the detector sees it.
	sh(t, c.Nodes[1].NS, "bridge", "fdb", "del", gwMAC, "dev", vx, "self", "dst", c.Nodes[1].Addr.String())
	provoke()
	if len(flapping()) == 0 {
		t.Errorf("control: with n2's pin removed the gateway MAC was still not learned; the FDB check proves nothing")
	}
	if err := n.Chains[1].Check(ctxT(t), pods[1].RT); err == nil {
		t.Errorf("CHECK passed on n2 without the anycast FDB pin")
	}
	// Control 2: without neigh_suppress on n1's VXLAN port, pod1's ARP for
	// the gateway reaches the other nodes, which learn pod1.
	sh(t, c.Nodes[0].NS, "bridge", "link", "set", "dev", vx, "neigh_suppress", "off")
	sh(t, pods[0].NS, "ip", "neigh", "flush", "dev", "eth0")
	mustReach(t, "pod1 -> gateway", pods[0].NS, pods[0].IP(true).Gateway)
	if len(strangers()) == 0 {
		t.Errorf("control: with neigh_suppress off, no other node learned pod1; the ARP check proves nothing")
	}
}
