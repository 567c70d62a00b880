package agent

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vxvrf/cni/deploy/internal/install"
)

const conflist = `{"cniVersion":"1.0.0","name":"vxvrf","plugins":[
 {"type":"infra-ensure"},
 {"type":"vrf-vxlan-bridge","vxlan":{"vni":4244%s}},
 {"type":"lockfile-ipam","ipam":{"ranges":[[{"subnet":"10.244.0.0/16","gateway":"10.244.255.254"}],[{"subnet":"fd00:244::/56"}]]}},
 {"type":"veth-attach"}]}`

func node(name string, cidrs []string, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}}
	n.Spec.PodCIDRs = cidrs
	for _, a := range addrs {
		typ := corev1.NodeInternalIP
		if strings.HasPrefix(a, "ext:") {
			typ, a = corev1.NodeExternalIP, strings.TrimPrefix(a, "ext:")
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: typ, Address: a})
	}
	return n
}

func cluster(t *testing.T, vxlanExtra string, nodes ...install.Node) *install.Cluster {
	t.Helper()
	c := &install.Cluster{Conflist: json.RawMessage(strings.Replace(conflist, "%s", vxlanExtra, 1)), Nodes: nodes}
	b, _ := json.Marshal(c)
	c, err := install.ParseCluster(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// render is what Reconcile computes, without the API or the kernel.
// It renders for node "a", the node every case looks from.
func render(t *testing.T, c *install.Cluster, nodes []*corev1.Node, fam string) ([]floodSpec, map[string]any, error) {
	t.Helper()
	const self = "a"
	m, _, err := clusterFromAPI(c, nodes, self, fam)
	if err != nil {
		return nil, nil, err
	}
	v, err := m.Resolve(install.Local{Name: self}, nil)
	if err != nil {
		return nil, nil, err
	}
	out, err := install.Render(m, v)
	if err != nil {
		return nil, nil, err
	}
	specs, err := floodSpecs(out)
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatal(err)
	}
	return specs, list, nil
}

func peers(s []floodSpec) []string {
	var out []string
	for _, p := range s[0].Peers {
		out = append(out, p.String())
	}
	return out
}

func TestNodesBecomePeersAndRanges(t *testing.T) {
	c := cluster(t, "")
	nodes := []*corev1.Node{
		node("b", []string{"10.244.2.0/24", "fd00:244:0:2::/64"}, "ext:203.0.113.5", "fd00::12", "192.0.2.12"),
		node("a", []string{"10.244.1.0/24", "fd00:244:0:1::/64"}, "192.0.2.11", "fd00::11"),
		node("c", []string{"10.244.3.0/24"}, "192.0.2.13"),
	}
	specs, list, err := render(t, c, nodes, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 || specs[0].Device != "vxlan-4244" {
		t.Fatalf("specs %+v", specs)
	}
	// Family of a's first InternalIP (IPv4); b's ExternalIP and IPv6 are not its VTEP.
	if got := peers(specs); !slices.Equal(got, []string{"192.0.2.12", "192.0.2.13"}) {
		t.Errorf("peers %v", got)
	}
	b, _ := json.Marshal(list)
	for _, want := range []string{`"local":"192.0.2.11"`, `"rangeStart":"10.244.1.2"`, `"rangeEnd":"10.244.1.254"`, `"rangeStart":"fd00:244:0:1::2"`,
		`"nodeAddresses":["10.244.1.1/16","fd00:244:0:1::1/56"]`, `"localAddress":"192.0.2.11"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("rendered conflist lacks %s: %s", want, b)
		}
	}
	// IPv6 underlay by flag.
	specs, _, err = render(t, c, nodes, "ipv6")
	if err != nil {
		t.Fatal(err)
	}
	if got := peers(specs); !slices.Equal(got, []string{"fd00::12"}) {
		t.Errorf("ipv6 peers %v (c has no IPv6 address: left out)", got)
	}
}

func TestAnnotationAndConfigOverride(t *testing.T) {
	nodes := []*corev1.Node{
		node("a", []string{"10.244.1.0/24", "fd00:244:0:1::/64"}, "192.0.2.11"),
		node("b", []string{"10.244.2.0/24", "fd00:244:0:2::/64"}, "192.0.2.12"),
	}
	nodes[1].Annotations[AddressAnnotation] = "198.51.100.12"
	c := cluster(t, "", install.Node{Name: "a", Address: "192.0.2.111"}, install.Node{Name: "ext", Address: "192.0.2.200"})
	specs, list, err := render(t, c, nodes, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := peers(specs); !slices.Equal(got, []string{"198.51.100.12", "192.0.2.200"}) {
		t.Errorf("peers %v: want b's annotation and the config-only VTEP", got)
	}
	if b, _ := json.Marshal(list); !strings.Contains(string(b), `"local":"192.0.2.111"`) {
		t.Errorf("the config's address for a must win: %s", b)
	}
	nodes[1].Annotations[AddressAnnotation] = "not-an-ip"
	specs, _, err = render(t, cluster(t, ""), nodes, "")
	if err != nil || len(peers(specs)) != 0 {
		t.Errorf("a peer with a bad annotation is left out, not fatal: %v %v", specs, err)
	}
}

// Nothing is rendered until this node has everything.
func TestWaitsForOwnValues(t *testing.T) {
	c := cluster(t, "")
	for name, tc := range map[string]struct {
		nodes []*corev1.Node
		want  string
	}{
		"unknown node": {[]*corev1.Node{node("b", []string{"10.244.2.0/24", "fd00:244:0:2::/64"}, "192.0.2.12")}, "not known to the API server"},
		"no address":   {[]*corev1.Node{node("a", []string{"10.244.1.0/24"})}, "no InternalIP"},
		"no podCIDR":   {[]*corev1.Node{node("a", nil, "192.0.2.11")}, "no pod CIDR inside subnet 10.244.0.0/16"},
		"overlap":      {[]*corev1.Node{node("a", []string{"10.244.1.0/24", "fd00:244:0:1::/64"}, "192.0.2.11"), node("b", []string{"10.244.1.0/25"}, "192.0.2.12")}, "overlaps"},
	} {
		_, _, err := render(t, c, tc.nodes, "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", name, err, tc.want)
		}
	}
}

// group and evpn modes: the agent renders, but keeps no flood list.
func TestGroupAndEVPNHaveNoFloodList(t *testing.T) {
	nodes := []*corev1.Node{node("a", []string{"10.244.1.0/24", "fd00:244:0:1::/64"}, "192.0.2.11"), node("b", []string{"10.244.2.0/24", "fd00:244:0:2::/64"}, "192.0.2.12")}
	for _, extra := range []string{`,"group":"239.1.1.1"`, `,"evpn":true`} {
		specs, list, err := render(t, cluster(t, extra), nodes, "")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(list)
		if len(specs) != 0 || strings.Contains(string(b), "remotes") || !strings.Contains(string(b), `"local":"192.0.2.11"`) {
			t.Errorf("%s: specs %v, conflist %s", extra, specs, b)
		}
	}
}

func TestNodeRelevant(t *testing.T) {
	a := node("a", []string{"10.244.1.0/24", "fd00:244:0:1::/64"}, "192.0.2.11")
	b := a.DeepCopy()
	b.Status.Conditions = append(b.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady})
	if nodeRelevant(a, b) {
		t.Error("a heartbeat is not relevant")
	}
	b.Status.Addresses[0].Address = "192.0.2.99"
	if !nodeRelevant(a, b) {
		t.Error("an address change is relevant")
	}
	b = a.DeepCopy()
	b.Annotations[AddressAnnotation] = "192.0.2.5"
	if !nodeRelevant(a, b) {
		t.Error("the annotation is relevant")
	}
}
