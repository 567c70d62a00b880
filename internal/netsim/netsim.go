// Package netsim builds throwaway network labs out of network namespaces:
// an underlay namespace holding a bridge, node namespaces whose uplink
// ("eth0") is a veth to that bridge with a default route through the
// underlay, and empty pod namespaces. Tests and demos run the plugins inside
// a node namespace, so the machine's own network is never touched.
//
// Every namespace is named "<lab>-<role>" and Close removes them all, so a
// lab that failed or was interrupted can be swept with Sweep(prefix).
package netsim

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
)

// NetNSDir is where iproute2 keeps named network namespaces.
const NetNSDir = "/run/netns"

// UnderlayGateway is the underlay bridge's address, the nodes' default gateway.
const UnderlayGateway = "198.18.0.1"

// Lab is a set of namespaces sharing one underlay.
type Lab struct {
	Name     string
	Underlay *NS
	nodes    int
	all      []*NS
}

// NS is one named network namespace of a lab.
type NS struct {
	Name string
	Path string
	ns.NetNS
}

// Node is a simulated node: a namespace with an uplink on the underlay.
type Node struct {
	*NS
	Uplink string // "eth0"
	Addr   net.IP // the uplink's address (198.18.0.x)
}

// Sh runs an external command, returning its combined output on failure.
func Sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// In runs an external command inside the namespace.
func (n *NS) In(name string, args ...string) ([]byte, error) {
	full := append([]string{"netns", "exec", n.Name, name}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("in %s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// New creates a lab named name with its underlay namespace. name should be
// short and unique per concurrent lab; leftovers of an earlier lab of the
// same name are removed first.
//
// $VXVRF_LAB_PREFIX, when set, is put in front of every lab name, so two
// runs of the suite on one machine keep apart.
func New(name string) (*Lab, error) {
	name = os.Getenv("VXVRF_LAB_PREFIX") + name
	Sweep(name + "-")
	l := &Lab{Name: name}
	u, err := l.AddNS("underlay")
	if err != nil {
		return nil, err
	}
	l.Underlay = u
	for _, c := range [][]string{
		{"link", "add", "ul", "type", "bridge"},
		{"link", "set", "ul", "up"},
		{"addr", "add", UnderlayGateway + "/24", "dev", "ul"},
		{"link", "set", "lo", "up"},
	} {
		if _, err := u.In("ip", c...); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// AddNS creates an empty namespace "<lab>-<role>" with loopback up.
func (l *Lab) AddNS(role string) (*NS, error) {
	name := l.Name + "-" + role
	if err := Sh("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	path := filepath.Join(NetNSDir, name)
	netns, err := ns.GetNS(path)
	if err != nil {
		_ = Sh("ip", "netns", "del", name)
		return nil, err
	}
	n := &NS{Name: name, Path: path, NetNS: netns}
	l.all = append(l.all, n)
	if _, err := n.In("ip", "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// AddNode creates a node namespace whose eth0 is plugged into the underlay
// bridge, with address 198.18.0.(10+i)/24 and a default route via the underlay.
func (l *Lab) AddNode(role string) (*Node, error) {
	l.nodes++
	n, err := l.AddNS(role)
	if err != nil {
		return nil, err
	}
	addr := net.IPv4(198, 18, 0, byte(10+l.nodes))
	port := fmt.Sprintf("ul-%d", l.nodes)
	if _, err := l.Underlay.In("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n.Name); err != nil {
		return nil, err
	}
	for _, c := range [][]string{{"link", "set", port, "master", "ul"}, {"link", "set", port, "up"}} {
		if _, err := l.Underlay.In("ip", c...); err != nil {
			return nil, err
		}
	}
	for _, c := range [][]string{
		{"link", "set", "eth0", "up"},
		{"addr", "add", addr.String() + "/24", "dev", "eth0"},
		{"route", "add", "default", "via", UnderlayGateway},
	} {
		if _, err := n.In("ip", c...); err != nil {
			return nil, err
		}
	}
	return &Node{NS: n, Uplink: "eth0", Addr: addr}, nil
}

// Close removes every namespace of the lab (and so every link in them).
func (l *Lab) Close() error {
	var errs []error
	for i := len(l.all) - 1; i >= 0; i-- {
		n := l.all[i]
		_ = n.NetNS.Close()
		if err := Sh("ip", "netns", "del", n.Name); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	l.all = nil
	return errors.Join(errs...)
}

// Remove deletes one namespace of the lab early (a pod whose sandbox is gone).
func (l *Lab) Remove(n *NS) error {
	for i, m := range l.all {
		if m == n {
			l.all = append(l.all[:i], l.all[i+1:]...)
			break
		}
	}
	_ = n.NetNS.Close()
	return Sh("ip", "netns", "del", n.Name)
}

// Sweep deletes every named namespace whose name starts with prefix.
func Sweep(prefix string) {
	entries, _ := os.ReadDir(NetNSDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			_ = Sh("ip", "netns", "del", e.Name())
		}
	}
}

// HasVRF says whether the kernel can create a VRF device, probing inside n
// (a lab namespace, never the host's): it creates and removes a throwaway
// VRF. A kernel without CONFIG_NET_VRF answers false.
func (n *NS) HasVRF() bool {
	if _, err := n.In("ip", "link", "add", "vrfprobe", "type", "vrf", "table", "4242"); err != nil {
		return false
	}
	_, _ = n.In("ip", "link", "del", "vrfprobe")
	return true
}
