package netsim

import (
	"fmt"
	"net"
)

// The cluster's "outside": a link from the router (the underlay namespace)
// to an external host. The router has no route to any pod subnet, so only
// traffic masqueraded to a node's uplink address gets replies.
const (
	ExternalSubnet = "203.0.113.0/24"
	RouterExternal = "203.0.113.1"  // the router's address on the external link
	ExternalHost   = "203.0.113.10" // the external host
)

// Cluster is a lab of N nodes on one underlay bridge, the underlay
// namespace acting as their router (forwarding on, default gateway
// 198.18.0.1 of every node) with an external host behind it on another
// link. Multicast snooping is off on the underlay bridge, so VXLAN
// multicast groups flood to every node without an IGMP querier.
//
//	n1 eth0 (198.18.0.11) ─┐
//	n2 eth0 (198.18.0.12) ─┼─ ul (198.18.0.1) [router] ext0 (203.0.113.1) ── eth0 (203.0.113.10) ext
//	n3 eth0 (198.18.0.13) ─┘
type Cluster struct {
	*Lab
	Nodes    []*Node
	Router   *NS    // the underlay namespace
	External *NS    // the external host's namespace ("<lab>-ext")
	ExtAddr  net.IP // ExternalHost
}

// NewCluster builds a cluster lab named name with nodes nodes (n1..nN).
// Leftovers of an earlier lab of that name are removed first; on error
// everything created is removed again.
func NewCluster(name string, nodes int) (*Cluster, error) {
	lab, err := New(name)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = lab.Close()
		}
	}()
	c := &Cluster{Lab: lab, Router: lab.Underlay, ExtAddr: net.ParseIP(ExternalHost)}
	for _, cmd := range [][]string{
		{"ip", "link", "set", "ul", "type", "bridge", "mcast_snooping", "0"},
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
	} {
		if _, err := c.Router.In(cmd[0], cmd[1:]...); err != nil {
			return nil, err
		}
	}
	ext, err := lab.AddNS("ext")
	if err != nil {
		return nil, err
	}
	c.External = ext
	if _, err := c.Router.In("ip", "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", ext.Name); err != nil {
		return nil, err
	}
	for _, cmd := range [][]string{
		{"addr", "add", RouterExternal + "/24", "dev", "ext0"},
		{"link", "set", "ext0", "up"},
	} {
		if _, err := c.Router.In("ip", cmd...); err != nil {
			return nil, err
		}
	}
	for _, cmd := range [][]string{
		{"addr", "add", ExternalHost + "/24", "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", RouterExternal},
	} {
		if _, err := ext.In("ip", cmd...); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= nodes; i++ {
		n, err := lab.AddNode(fmt.Sprintf("n%d", i))
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	ok = true
	return c, nil
}

// AddPod creates an empty pod namespace "<lab>-n<node>-<role>" for the
// node of index node (0-based). It is a plain namespace: the CNI chain run
// on that node wires it.
func (c *Cluster) AddPod(node int, role string) (*NS, error) {
	if node < 0 || node >= len(c.Nodes) {
		return nil, fmt.Errorf("cluster %s: no node %d", c.Name, node)
	}
	return c.AddNS(fmt.Sprintf("n%d-%s", node+1, role))
}
