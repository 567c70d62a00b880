package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// timeout bounds one libcni operation (a whole chain ADD or DEL).
const timeout = 60 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return c
}

// env is one lab with one node, a state root and a chain bound to the node.
type env struct {
	t     *testing.T
	lab   *netsim.Lab
	node  *netsim.Node
	root  string // state root: state/, ipam/, cache/
	conf  []byte // the conflist as run
	chain *chain.Chain
}

// edit changes the default conflist for one test.
type edit func(conf map[string]any, plugins []map[string]any) error

// newEnv builds the lab and a chain running the default conflist (its state
// directories moved under a temp dir, then the edits applied) with CNI_PATH
// = the plugin dir plus extraPath.
func newEnv(t *testing.T, labName string, extraPath []string, edits ...edit) *env {
	t.Helper()
	lab, node := testutil.NewNode(t, labName)
	bin := testutil.PluginDir(t, testutil.Plugins...)
	root := t.TempDir()
	conf, err := chain.SetStateDirs(testutil.DefaultConflist(t), root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		if conf, err = chain.Edit(conf, e); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, lab: lab, node: node, root: root, conf: conf}
	e.chain = e.chainFor(conf, append([]string{bin}, extraPath...))
	return e
}

func (e *env) chainFor(conf []byte, path []string) *chain.Chain {
	e.t.Helper()
	list, err := chain.Parse(conf)
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := chain.New(list, path, filepath.Join(e.root, "cache"), e.node.NetNS)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// pod is one attachment.
type pod struct {
	ns  *netsim.NS
	rt  chain.RuntimeConf
	res *current.Result
	ips []*current.IPConfig
}

func (p *pod) ip(v4 bool) *current.IPConfig {
	for _, ip := range p.ips {
		if (ip.Address.IP.To4() != nil) == v4 {
			return ip
		}
	}
	return nil
}

// newPod creates a pod namespace (not yet attached).
func (e *env) newPod(role string) *pod {
	e.t.Helper()
	n, err := e.lab.AddNS(role)
	if err != nil {
		e.t.Fatal(err)
	}
	return &pod{ns: n, rt: chain.RuntimeConf{ContainerID: e.lab.Name + "-" + role, NetNS: n.Path, IfName: "eth0"}}
}

// add runs ADD for p through c and checks the result's basic shape.
func (e *env) add(c *chain.Chain, p *pod) {
	e.t.Helper()
	res, err := c.AddCurrent(ctx(e.t), p.rt)
	if err != nil {
		e.t.Fatalf("ADD %s: %v", p.rt.ContainerID, err)
	}
	p.res = res
	p.ips = chain.PodIPs(res, p.rt.NetNS, p.rt.IfName)
	if len(p.ips) == 0 {
		e.t.Fatalf("ADD %s: no address on the pod interface in %s", p.rt.ContainerID, jsonOf(res))
	}
	for i, ip := range res.IPs {
		if ip.Interface == nil || *ip.Interface >= len(res.Interfaces) {
			e.t.Errorf("ADD %s: ips[%d].interface is not a valid index: %s", p.rt.ContainerID, i, jsonOf(res))
		}
	}
}

// addPod is newPod + add through the env's chain.
func (e *env) addPod(role string) *pod {
	e.t.Helper()
	p := e.newPod(role)
	e.add(e.chain, p)
	return p
}

func jsonOf(r types.Result) string {
	var b bytes.Buffer
	_ = r.PrintTo(&b)
	return b.String()
}

// ping sends one echo request from n to ip.
func ping(n *netsim.NS, ip net.IP) error {
	_, err := n.In("ping", "-c1", "-W2", ip.String())
	return err
}

// mustPing fails the test unless from reaches ip.
func mustPing(t *testing.T, what string, from *netsim.NS, ip net.IP) {
	t.Helper()
	if err := ping(from, ip); err != nil {
		t.Errorf("%s: ping %s from %s: %v", what, ip, from.Name, err)
	}
}

// tcp listens in to's namespace on addr and dials it from from's namespace;
// it returns an error unless the greeting crosses.
func tcp(from, to ns.NetNS, addr net.IP) error {
	var ln net.Listener
	if err := to.Do(func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(addr.String(), "0"))
		return err
	}); err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "hello\n")
	}()
	defer wg.Wait()
	return from.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 3*time.Second)
		if err != nil {
			ln.Close()
			return fmt.Errorf("dial %s: %w", ln.Addr(), err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read from %s: %w", ln.Addr(), err)
		}
		if line != "hello\n" {
			return fmt.Errorf("read from %s: %q", ln.Addr(), line)
		}
		return nil
	})
}

// connectivity proves the two pods reach each other (ping, and TCP over
// IPv4), their gateways, and that the node reaches them, in every family
// they have addresses in.
func (e *env) connectivity(p1, p2 *pod) {
	e.t.Helper()
	for _, v4 := range []bool{true, false} {
		a, b := p1.ip(v4), p2.ip(v4)
		if a == nil && b == nil {
			continue
		}
		if a == nil || b == nil {
			e.t.Errorf("only one pod has an address of this family: %v %v", a, b)
			continue
		}
		mustPing(e.t, "pod1 -> pod2", p1.ns, b.Address.IP)
		mustPing(e.t, "pod2 -> pod1", p2.ns, a.Address.IP)
		for i, p := range []*pod{p1, p2} {
			ip := p.ip(v4)
			if ip.Gateway == nil {
				e.t.Errorf("pod%d: no gateway in the result for %s", i+1, ip.Address.String())
			} else {
				mustPing(e.t, fmt.Sprintf("pod%d -> gateway", i+1), p.ns, ip.Gateway)
			}
			mustPing(e.t, fmt.Sprintf("node -> pod%d", i+1), e.node.NS, ip.Address.IP)
		}
		if v4 {
			if err := tcp(p2.ns.NetNS, p1.ns.NetNS, a.Address.IP); err != nil {
				e.t.Errorf("TCP pod2 -> pod1: %v", err)
			}
		}
	}
}

// in runs a command in the node namespace and returns its output.
func (e *env) in(name string, args ...string) string {
	e.t.Helper()
	out, err := e.node.In(name, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(out)
}

// links returns name -> alias of every link in the node.
func (e *env) links() map[string]string {
	e.t.Helper()
	l, err := chain.Links(e.node.NetNS)
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// stateFiles maps every file under the state and IPAM dirs to its content.
func (e *env) stateFiles() map[string]string {
	return chain.StateFiles(filepath.Join(e.root, "state"), filepath.Join(e.root, "ipam"))
}

// leftovers lists what of the pods' attachments is still in the node, the
// pod, the state directories or the libcni cache.
func (e *env) leftovers(pods ...*pod) []string {
	e.t.Helper()
	atts := make([]chain.Attachment, 0, len(pods))
	for _, p := range pods {
		a := chain.Attachment{RT: p.rt, Pod: p.ns}
		for _, ip := range p.ips {
			a.IPs = append(a.IPs, ip.Address.IP)
		}
		atts = append(atts, a)
	}
	return e.chain.Leftovers(e.node.NS, atts, filepath.Join(e.root, "state"), filepath.Join(e.root, "ipam"))
}

// present fails the test unless every kind of object leftovers looks for
// exists for p while it is attached: this proves leftovers can see them.
func (e *env) present(p *pod) {
	e.t.Helper()
	left := strings.Join(e.leftovers(p), "\n")
	for _, want := range []string{"host veth", "state file", "libcni cache entry", "the pod still has"} {
		if !strings.Contains(left, want) {
			e.t.Errorf("%s is attached but leftovers sees no %q:\n%s", p.rt.ContainerID, want, left)
		}
	}
	// The firewall state, in whichever backend auto picked.
	if !strings.Contains(left, "iptables") && !strings.Contains(left, "nftables element") {
		e.t.Errorf("%s is attached but leftovers sees no firewall state:\n%s", p.rt.ContainerID, left)
	}
}

// bridgeMAC is the MAC of the network's bridge in the node.
func (e *env) bridgeMAC() string {
	e.t.Helper()
	out := e.in("cat", "/sys/class/net/"+naming.BridgeName(e.chain.List.Name)+"/address")
	return strings.TrimSpace(out)
}

// noLeftovers fails the test when leftovers finds anything.
func (e *env) noLeftovers(pods ...*pod) {
	e.t.Helper()
	for _, l := range e.leftovers(pods...) {
		e.t.Errorf("left behind: %s", l)
	}
}

// networkGone fails the test unless the network's shared devices and rules
// are gone too (after the last DEL and GC with an empty list).
func (e *env) networkGone() {
	e.t.Helper()
	for _, l := range e.chain.NetworkLeftovers(e.node.NS) {
		e.t.Errorf("left behind after GC: %s", l)
	}
}

// teardown DELs the pods, expects nothing of them left, runs GC with an
// empty list and expects the network gone.
func (e *env) teardown(pods ...*pod) {
	e.t.Helper()
	for _, p := range pods {
		if err := e.chain.Del(ctx(e.t), p.rt); err != nil {
			e.t.Errorf("DEL %s: %v", p.rt.ContainerID, err)
		}
	}
	e.noLeftovers(pods...)
	if err := e.chain.GC(ctx(e.t), []types.GCAttachment{}); err != nil {
		e.t.Errorf("GC with an empty list: %v", err)
	}
	e.networkGone()
}
