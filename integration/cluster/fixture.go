// Package cluster runs the vxvrf chain on a simulated cluster: several
// node namespaces on one underlay (netsim.Cluster), every node running the
// same conflist through libcni except for its own IPAM range and its own
// uplink address (resolved on the node). The tests of this package,
// `make demo` (integration/demo) and `make demo-cluster`
// (integration/cluster-demo) share it.
package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/pkg/chain"
	"github.com/vxvrf/cni/pkg/netsim"
)

// BUM modes of vrf-vxlan-bridge.
const (
	Remotes = "remotes"
	Group   = "group"
	EVPN    = "evpn"
)

// Spec is one network (one conflist) of the cluster.
type Spec struct {
	Name    string // network name
	VNI     int
	Mode    string // Remotes, Group or EVPN
	Group   string // multicast group (Group mode); default 239.1.1.<VNI%250>
	Subnet4 string // e.g. "10.244.0.0/16"; node i gets 10.244.i.2-254, gateway .0.1
	Subnet6 string // optional, e.g. "fd00:10:244::/64"; node i gets ::i:2-::i:ffff, gateway ::1
	// Peers lists the nodes (0-based) in the remotes list; nil: all nodes.
	Peers []int
	// Anycast sets vrf-vxlan-bridge's anycastGateway.
	Anycast bool
	// VRFTable puts the network in a VRF with that table; 0: no VRF.
	VRFTable int
	// Egress sets vrf.egress (the VRF's default route through the uplink).
	Egress bool
	// Plugins, when set, edits the rendered conflist (after the defaults).
	Edit func(conf map[string]any, plugins []map[string]any) error
}

// Cluster is the lab plus the plugin directory and a state root holding
// one directory per node (its stateDir, IPAM dataDir and libcni cache).
type Cluster struct {
	*netsim.Cluster
	Bin  string
	Root string
}

// New builds a cluster lab of n nodes. bin holds the plugin binaries; root
// is a directory for the nodes' state (one subdirectory per node).
func New(name string, n int, bin, root string) (*Cluster, error) {
	c, err := netsim.NewCluster(name, n)
	if err != nil {
		return nil, err
	}
	return &Cluster{Cluster: c, Bin: bin, Root: root}, nil
}

// NodeRoot is node i's state directory.
func (c *Cluster) NodeRoot(i int) string { return filepath.Join(c.Root, fmt.Sprintf("n%d", i+1)) }

// nodeRange returns the node's range of subnet: the node's "row" of the
// subnet (a /24 of an IPv4 subnet, a /112 of an IPv6 one) from .2 to the
// last usable address of the row.
func nodeRange(subnet string, node int) (start, end, gw net.IP, err error) {
	_, ipn, err := net.ParseCIDR(subnet)
	if err != nil {
		return nil, nil, nil, err
	}
	base := new(big.Int).SetBytes(ipn.IP)
	shift, last := uint(8), int64(254)
	if ipn.IP.To4() == nil {
		shift, last = 16, 0xffff
	}
	row := new(big.Int).Add(base, new(big.Int).Lsh(big.NewInt(int64(node+1)), shift))
	toIP := func(v *big.Int) net.IP {
		b := v.Bytes()
		out := make(net.IP, len(ipn.IP))
		copy(out[len(out)-len(b):], b)
		return out
	}
	start = toIP(new(big.Int).Add(row, big.NewInt(2)))
	end = toIP(new(big.Int).Add(row, big.NewInt(last)))
	gw = toIP(new(big.Int).Add(base, big.NewInt(1)))
	if !ipn.Contains(end) {
		return nil, nil, nil, fmt.Errorf("subnet %s too small for node %d's range", subnet, node+1)
	}
	return start, end, gw, nil
}

// Conflist renders the network's conflist for node i (0-based): the same
// on every node except the IPAM range and the state directories (the
// uplink address is resolved on the node by infra-ensure; the remotes list
// names every node, the node itself included).
func (c *Cluster) Conflist(s Spec, node int) ([]byte, error) {
	var ranges [][]map[string]any
	routes := []map[string]any{}
	for _, sub := range []string{s.Subnet4, s.Subnet6} {
		if sub == "" {
			continue
		}
		start, end, gw, err := nodeRange(sub, node)
		if err != nil {
			return nil, err
		}
		ranges = append(ranges, []map[string]any{{"subnet": sub, "rangeStart": start.String(), "rangeEnd": end.String(), "gateway": gw.String()}})
		if gw.To4() != nil {
			routes = append(routes, map[string]any{"dst": "0.0.0.0/0"})
		} else {
			routes = append(routes, map[string]any{"dst": "::/0"})
		}
	}
	vx := map[string]any{"vni": s.VNI}
	switch s.Mode {
	case Remotes:
		// The same list on every node: vrf-vxlan-bridge skips the node's
		// own address.
		var peers []string
		for i, n := range c.Nodes {
			if s.Peers != nil && !contains(s.Peers, i) {
				continue
			}
			peers = append(peers, n.Addr.String())
		}
		vx["remotes"] = peers
	case Group:
		g := s.Group
		if g == "" {
			g = fmt.Sprintf("239.1.1.%d", s.VNI%250+1)
		}
		vx["group"] = g
	case EVPN:
		vx["evpn"] = true
	default:
		return nil, fmt.Errorf("unknown mode %q", s.Mode)
	}
	bridge := map[string]any{"type": "vrf-vxlan-bridge", "bridge": map[string]any{}, "vxlan": vx}
	if s.Anycast {
		bridge["anycastGateway"] = true
	}
	if s.VRFTable != 0 {
		bridge["vrf"] = map[string]any{"table": s.VRFTable, "egress": s.Egress}
	}
	root := c.NodeRoot(node)
	conf := map[string]any{
		"cniVersion":  "1.0.0",
		"cniVersions": []string{"1.0.0", "1.1.0"},
		"name":        s.Name,
		"plugins": []any{
			map[string]any{"type": "infra-ensure", "uplink": "eth0", "stateDir": filepath.Join(root, "state")},
			bridge,
			map[string]any{"type": "lockfile-ipam", "ipam": map[string]any{
				"ranges": ranges, "routes": routes, "dataDir": filepath.Join(root, "ipam"),
			}},
			map[string]any{"type": "veth-attach"},
			map[string]any{"type": "sysctl-firewall", "masquerade": true, "antiSpoofing": true},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, err
	}
	if s.Edit != nil {
		return chain.Edit(b, s.Edit)
	}
	return b, nil
}

func contains(l []int, v int) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

// Network is one network deployed on every node: a chain per node.
type Network struct {
	Spec   Spec
	C      *Cluster
	Chains []*chain.Chain
}

// Network renders and binds the network's chain on every node (nothing
// runs yet: devices appear with the first ADD on a node).
func (c *Cluster) Network(s Spec) (*Network, error) {
	n := &Network{Spec: s, C: c}
	for i, node := range c.Nodes {
		ch, err := c.chainFor(s, i, node)
		if err != nil {
			return nil, err
		}
		n.Chains = append(n.Chains, ch)
	}
	return n, nil
}

// NetworkFrom binds already rendered conflists, one per node (in node
// order), as one network: a caller that renders per-node values itself
// (the demo renders them with vxvrf-installer). The network is named by
// the conflists; Spec carries only that name.
func (c *Cluster) NetworkFrom(conflists [][]byte) (*Network, error) {
	if len(conflists) != len(c.Nodes) {
		return nil, fmt.Errorf("%d conflists for %d nodes", len(conflists), len(c.Nodes))
	}
	n := &Network{C: c}
	for i, b := range conflists {
		ch, err := c.bind(b, i, c.Nodes[i])
		if err != nil {
			return nil, fmt.Errorf("node n%d: %w", i+1, err)
		}
		if i > 0 && ch.List.Name != n.Spec.Name {
			return nil, fmt.Errorf("node n%d: network %q, node n1: %q", i+1, ch.List.Name, n.Spec.Name)
		}
		n.Spec.Name = ch.List.Name
		n.Chains = append(n.Chains, ch)
	}
	return n, nil
}

func (c *Cluster) chainFor(s Spec, i int, node *netsim.Node) (*chain.Chain, error) {
	b, err := c.Conflist(s, i)
	if err != nil {
		return nil, err
	}
	return c.bind(b, i, node)
}

// bind parses node i's conflist and binds it to the node, its plugin
// directory and its cache directory.
func (c *Cluster) bind(b []byte, i int, node *netsim.Node) (*chain.Chain, error) {
	list, err := chain.Parse(b)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.NodeRoot(i), 0o755); err != nil {
		return nil, err
	}
	return chain.New(list, []string{c.Bin}, filepath.Join(c.NodeRoot(i), "cache"), node.NetNS)
}

// Rebind re-renders node i's conflist from s (e.g. a longer peer list) and
// uses it for later operations on that node.
func (n *Network) Rebind(s Spec, i int) error {
	ch, err := n.C.chainFor(s, i, n.C.Nodes[i])
	if err != nil {
		return err
	}
	n.Chains[i] = ch
	return nil
}

// Pod is one attachment of a network on a node.
type Pod struct {
	NS   *netsim.NS
	Node int
	Net  *Network
	RT   chain.RuntimeConf
	Res  *current.Result
	IPs  []*current.IPConfig
	Name string // "<net>/n<node>-<role>"
}

// IP returns the pod's address of the family (nil if none).
func (p *Pod) IP(v4 bool) *current.IPConfig {
	for _, ip := range p.IPs {
		if (ip.Address.IP.To4() != nil) == v4 {
			return ip
		}
	}
	return nil
}

// Attachment is the pod as chain.Leftovers wants it.
func (p *Pod) Attachment() chain.Attachment {
	a := chain.Attachment{RT: p.RT, Pod: p.NS}
	for _, ip := range p.IPs {
		a.IPs = append(a.IPs, ip.Address.IP)
	}
	return a
}

// Timeout bounds one chain operation.
const Timeout = 60 * time.Second

// AddPod creates a pod namespace on node i and runs ADD for it.
func (n *Network) AddPod(i int, role string) (*Pod, error) {
	ns, err := n.C.AddPod(i, role)
	if err != nil {
		return nil, err
	}
	p := &Pod{NS: ns, Node: i, Net: n, Name: fmt.Sprintf("%s/n%d-%s", n.Spec.Name, i+1, role),
		RT: chain.RuntimeConf{ContainerID: ns.Name, NetNS: ns.Path, IfName: "eth0"}}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	res, err := n.Chains[i].AddCurrent(ctx, p.RT)
	if err != nil {
		return nil, fmt.Errorf("ADD %s on n%d: %w", p.Name, i+1, err)
	}
	p.Res = res
	p.IPs = chain.PodIPs(res, p.RT.NetNS, p.RT.IfName)
	if len(p.IPs) == 0 {
		return nil, fmt.Errorf("ADD %s: no address on the pod interface", p.Name)
	}
	return p, nil
}

// Del runs DEL for the pod on its node.
func (n *Network) Del(p *Pod) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	return n.Chains[p.Node].Del(ctx, p.RT)
}

// Ping sends count echo requests from ns to ip (extra ping args before the
// address); it returns ping's output on failure.
func Ping(from *netsim.NS, ip net.IP, extra ...string) error {
	args := append([]string{"-c1", "-W2"}, extra...)
	args = append(args, ip.String())
	_, err := from.In("ping", args...)
	return err
}

// Reaches says whether from reaches ip: one ping, retried once (the first
// may be spent on neighbour resolution across the overlay).
func Reaches(from *netsim.NS, ip net.IP) bool {
	for i := 0; i < 2; i++ {
		if Ping(from, ip) == nil {
			return true
		}
	}
	return false
}

// FDB is "bridge fdb show" of node i, one entry a line.
func (c *Cluster) FDB(i int, args ...string) (string, error) {
	out, err := c.Nodes[i].In("bridge", append([]string{"fdb", "show"}, args...)...)
	return string(out), err
}

// Lines returns the lines of s containing every sub (case-insensitive).
func Lines(s string, sub ...string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		ok := l != ""
		for _, x := range sub {
			if !strings.Contains(strings.ToLower(l), strings.ToLower(x)) {
				ok = false
			}
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// Egress dials a TCP listener on the external host from the namespace from
// and returns the address the external host saw as the peer (the
// masquerading node's uplink address when it works). The reply (a line
// carrying that address) must come back for it to succeed.
func (c *Cluster) Egress(from *netsim.NS) (net.IP, error) {
	return TCPPeer(c.External, net.JoinHostPort(netsim.ExternalHost, "0"), from, "")
}

// TCPPeer listens on listen (host:port) in server, dials dial (host:port;
// "" = the listener's own address) from client and returns the source
// address the server saw. The server sends it back as a line, which the
// client must read: the reply path must work too.
func TCPPeer(server *netsim.NS, listen string, client *netsim.NS, dial string) (net.IP, error) {
	var ln net.Listener
	if err := server.Do(func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", listen)
		return err
	}); err != nil {
		return nil, fmt.Errorf("listen on %s in %s: %w", listen, server.Name, err)
	}
	defer ln.Close()
	if dial == "" {
		dial = ln.Addr().String()
	}
	seen := make(chan net.IP, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			close(seen)
			return
		}
		defer conn.Close()
		peer := conn.RemoteAddr().(*net.TCPAddr).IP
		seen <- peer
		_, _ = io.WriteString(conn, peer.String()+"\n")
	}()
	var got string
	err := client.Do(func(ns.NetNS) error {
		conn, err := net.DialTimeout("tcp", dial, 3*time.Second)
		if err != nil {
			return fmt.Errorf("dial %s: %w", dial, err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return fmt.Errorf("no reply from %s: %w", dial, err)
		}
		got = strings.TrimSpace(line)
		return nil
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	peer := <-seen
	if peer == nil || peer.String() != got {
		return nil, fmt.Errorf("%s saw %v but the reply said %q", server.Name, peer, got)
	}
	return peer, nil
}
