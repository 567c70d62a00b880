package cluster

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// newCluster builds a cluster lab of n nodes, removed when the test ends.
func newCluster(t *testing.T, name string, n int) *Cluster {
	t.Helper()
	testutil.RequireRoot(t)
	bin := testutil.PluginDir(t, testutil.Plugins...)
	c, err := New(name, n, bin, t.TempDir())
	if err != nil {
		t.Fatalf("cluster %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return c
}

func network(t *testing.T, c *Cluster, s Spec) *Network {
	t.Helper()
	n, err := c.Network(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func addPod(t *testing.T, n *Network, node int, role string) *Pod {
	t.Helper()
	p, err := n.AddPod(node, role)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func del(t *testing.T, n *Network, p *Pod) {
	t.Helper()
	if err := n.Del(p); err != nil {
		t.Errorf("DEL %s: %v", p.Name, err)
	}
}

// mustReach fails the test unless from reaches ip.
func mustReach(t *testing.T, what string, from *netsim.NS, ip net.IP) {
	t.Helper()
	if !Reaches(from, ip) {
		t.Errorf("%s: %s cannot reach %s", what, from.Name, ip)
	}
}

// mustNotReach fails the test if from reaches ip.
func mustNotReach(t *testing.T, what string, from *netsim.NS, ip net.IP) {
	t.Helper()
	if Ping(from, ip, "-W1") == nil {
		t.Errorf("%s: %s reaches %s, it must not", what, from.Name, ip)
	}
}

// mesh proves every pod reaches every other pod, in each family they share.
func mesh(t *testing.T, pods ...*Pod) {
	t.Helper()
	for _, v4 := range []bool{true, false} {
		for _, a := range pods {
			for _, b := range pods {
				if a == b || a.IP(v4) == nil || b.IP(v4) == nil {
					continue
				}
				mustReach(t, a.Name+" -> "+b.Name, a.NS, b.IP(v4).Address.IP)
			}
		}
	}
}

func sh(t *testing.T, n *netsim.NS, name string, args ...string) string {
	t.Helper()
	out, err := n.In(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func ctxT(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return c
}
