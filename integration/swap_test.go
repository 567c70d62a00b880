// Stage swapping: the reference plugins (containernetworking/plugins
// v1.9.1) in place of, after, or around our stages, each with real traffic
// and a DEL that leaves nothing of the attachment. TestSwapHostLocal (the
// reference host-local in place of lockfile-ipam) is in chain_test.go.

package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// withoutStage removes our stage typ from the conflist and appends the
// given plugin objects at the end.
func withoutStage(typ string, add ...map[string]any) edit {
	return func(conf map[string]any, plugins []map[string]any) error {
		if typ != "" {
			if chain.Plugin(plugins, typ) == nil {
				return fmt.Errorf("default conflist has no %s", typ)
			}
			chain.Without(conf, plugins, typ)
		}
		list, _ := conf["plugins"].([]any)
		for _, p := range add {
			list = append(list, p)
		}
		conf["plugins"] = list
		return nil
	}
}

// appendPlugins appends plugin objects after our whole chain.
func appendPlugins(add ...map[string]any) edit { return withoutStage("", add...) }

// TestSwapTuningFirewall: the reference tuning (a pod sysctl) and firewall
// (iptables backend) in place of sysctl-firewall.
func TestSwapTuningFirewall(t *testing.T) {
	t.Parallel()
	ref := testutil.ReferencePlugins(t, "tuning", "firewall")
	tuningDir := t.TempDir()
	const sysctlFile = "/proc/sys/net/ipv4/conf/eth0/arp_notify"
	e := newEnv(t, "sw-tf", []string{ref}, withoutStage("sysctl-firewall",
		map[string]any{"type": "tuning", "dataDir": tuningDir,
			"sysctl": map[string]any{"net.ipv4.conf.IFNAME.arp_notify": "1"}},
		map[string]any{"type": "firewall", "backend": "iptables"},
	))
	for _, p := range e.chain.List.Plugins {
		if p.Network.Type == "sysctl-firewall" {
			t.Fatal("sysctl-firewall still in the chain")
		}
	}
	p1, p2 := e.newPod("p1"), e.newPod("p2")
	// The sysctl must be tuning's doing: a fresh pod has it at 0.
	if out, err := p1.ns.In("cat", "/proc/sys/net/ipv4/conf/default/arp_notify"); err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("a fresh pod has arp_notify %q (%v), want 0", out, err)
	}
	e.add(e.chain, p1)
	e.add(e.chain, p2)
	for _, p := range []*pod{p1, p2} {
		out, err := p.ns.In("cat", sysctlFile)
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Errorf("%s: tuning did not set %s: %q %v", p.rt.ContainerID, sysctlFile, out, err)
		}
	}
	rules := e.ruleset()
	if ours := chain.NetworkRules(rules, e.chain.List.Name); len(ours) > 0 {
		t.Errorf("sysctl-firewall rules although it is not in the chain:\n%s", strings.Join(ours, "\n"))
	}
	for _, p := range []*pod{p1, p2} {
		for _, a := range p.podAddrs() {
			want := "-A CNI-FORWARD -s " + a + " -j ACCEPT"
			if !strings.Contains(rules, want) {
				t.Errorf("%s: no firewall rule %q in\n%s", p.rt.ContainerID, want, strings.Join(linesWith(rules, "CNI-"), "\n"))
			}
		}
	}
	e.connectivity(p1, p2)
	e.checkAll(p1, p2)
	// tuning's CHECK reads the sysctl back: flipping it must fail CHECK.
	if _, err := p1.ns.In("sh", "-c", "echo 0 > "+sysctlFile); err != nil {
		t.Fatal(err)
	}
	if err := e.chain.Check(ctx(t), p1.rt); err == nil {
		t.Errorf("CHECK passed after pod1's arp_notify was reset to 0")
	}

	e.delAll(p1, p2)
	e.noLeftovers(p1, p2)
	var addrs []string
	for _, p := range []*pod{p1, p2} {
		addrs = append(addrs, p.podAddrs()...)
	}
	for _, l := range linesWith(e.ruleset(), addrs...) {
		t.Errorf("firewall rule left after DEL: %s", l)
	}
	if left := dirFiles(tuningDir); len(left) > 0 {
		t.Errorf("tuning left files: %v", left)
	}
}

// TestSwapPortmap: the reference portmap after our chain; a hostPort on
// the node reaches a TCP listener in the pod from the node, the underlay,
// another pod, the pod itself (hairpin, portmap's SNAT) and 127.0.0.1.
// It runs with each sysctl-firewall backend.
func TestSwapPortmap(t *testing.T) {
	t.Parallel()
	for _, be := range []string{"iptables", "nftables"} {
		t.Run(be, func(t *testing.T) { testSwapPortmap(t, be) })
	}
}

func testSwapPortmap(t *testing.T, be string) {
	ref := testutil.ReferencePlugins(t, "portmap")
	e := newEnv(t, "sw-pm-"+be[:1], []string{ref}, appendPlugins(map[string]any{
		"type": "portmap", "backend": "iptables", "snat": true,
		"capabilities": map[string]any{"portMappings": true},
	}), hairpin, firewallBackend(be))
	const hostPort, podPort = 30080, 8080
	p1 := e.newPod("p1")
	p1.rt.CapabilityArgs = map[string]any{"portMappings": []map[string]any{
		{"hostPort": hostPort, "containerPort": podPort, "protocol": "tcp"},
	}}
	e.add(e.chain, p1)
	p2 := e.addPod("p2")
	e.connectivity(p1, p2)

	l := listen(t, p1.ns.NetNS, fmt.Sprintf(":%d", podPort), "pod1")
	hp := net.JoinHostPort(e.node.Addr.String(), fmt.Sprint(hostPort))
	for _, c := range []struct {
		what string
		from *netsim.NS
		addr string
	}{
		{"node -> uplink address:hostPort", e.node.NS, hp},
		{"underlay -> node:hostPort", e.lab.Underlay, hp},
		{"pod2 -> node:hostPort", p2.ns, hp},
		{"pod1 -> node:hostPort (hairpin)", p1.ns, hp},
		{"node -> 127.0.0.1:hostPort", e.node.NS, fmt.Sprintf("127.0.0.1:%d", hostPort)},
	} {
		if got := l.mustDial(t, c.what, c.from.NetNS, c.addr); got != "" {
			t.Logf("%s: %s", c.what, got)
		}
	}
	// Only the hostPort is mapped: the pod's port itself on the node is not.
	if got, err := dial(e.node.NetNS, net.JoinHostPort(e.node.Addr.String(), fmt.Sprint(podPort))); err == nil {
		t.Errorf("the unmapped node port %d reached the pod: %s", podPort, got)
	}
	e.checkAll(p1, p2)

	before := linesWith(e.ruleset(), p1.rt.ContainerID)
	if len(before) == 0 {
		t.Fatalf("no portmap rule names %s:\n%s", p1.rt.ContainerID, e.ruleset())
	}
	e.delAll(p1, p2)
	e.noLeftovers(p1, p2)
	rules := e.ruleset()
	for _, l := range linesWith(rules, p1.rt.ContainerID, p2.rt.ContainerID, ":CNI-DN-", fmt.Sprint(hostPort)) {
		t.Errorf("portmap rule left after DEL: %s", l)
	}
	if _, err := dial(e.node.NetNS, hp); err == nil {
		t.Errorf("the hostPort still answers after DEL")
	}
}

// firewallBackend sets sysctl-firewall's backend.
func firewallBackend(be string) edit {
	return func(_ map[string]any, plugins []map[string]any) error {
		sf := chain.Plugin(plugins, "sysctl-firewall")
		if sf == nil {
			return errors.New("default conflist has no sysctl-firewall")
		}
		sf["backend"] = be
		return nil
	}
}

// hairpin turns on veth-attach's hairpin mode. A pod reaching its own
// hostPort needs it whenever net.bridge.bridge-nf-call-iptables is 1 (the
// default where br_netfilter is loaded or built in; sysctl-firewall's
// antiSpoofing sets it too): portmap's DNAT of a frame that arrived on the
// bridge then happens on the bridge path, which sends it back out the port
// it came in by, and a port without hairpin mode drops it (checked: with
// hairpin off the dial times out, with antiSpoofing on or off).
func hairpin(_ map[string]any, plugins []map[string]any) error {
	va := chain.Plugin(plugins, "veth-attach")
	if va == nil {
		return errors.New("default conflist has no veth-attach")
	}
	va["hairpin"] = true
	return nil
}

// TestSwapBandwidth: the reference bandwidth after our chain; pod1 gets
// ingress and egress limits (tbf on the host veth and on an ifb), pod2
// none; traffic flows; DEL removes the ifb.
func TestSwapBandwidth(t *testing.T) {
	t.Parallel()
	ref := testutil.ReferencePlugins(t, "bandwidth")
	e := newEnv(t, "sw-bw", []string{ref}, appendPlugins(map[string]any{
		"type": "bandwidth", "capabilities": map[string]any{"bandwidth": true},
	}))
	p1 := e.newPod("p1")
	p1.rt.CapabilityArgs = map[string]any{"bandwidth": map[string]any{
		"ingressRate": 8_000_000, "ingressBurst": 800_000,
		"egressRate": 4_000_000, "egressBurst": 400_000,
	}}
	e.add(e.chain, p1)
	p2 := e.addPod("p2")
	e.connectivity(p1, p2)

	net1 := e.chain.List.Name
	veth1 := naming.HostVethName(net1, p1.rt.ContainerID, p1.rt.IfName)
	veth2 := naming.HostVethName(net1, p2.rt.ContainerID, p2.rt.IfName)
	if q := e.in("tc", "qdisc", "show", "dev", veth1); !strings.Contains(q, "qdisc tbf") || !strings.Contains(q, "rate 8Mbit") {
		t.Errorf("pod1's host veth %s has no tbf at 8Mbit (ingress limit):\n%s", veth1, q)
	}
	ifbs := ifbLinks(e)
	if len(ifbs) != 1 {
		t.Fatalf("want one ifb (pod1's egress limit), got %v", ifbs)
	}
	if q := e.in("tc", "qdisc", "show", "dev", ifbs[0]); !strings.Contains(q, "qdisc tbf") || !strings.Contains(q, "rate 4Mbit") {
		t.Errorf("ifb %s has no tbf at 4Mbit (egress limit):\n%s", ifbs[0], q)
	}
	found := false
	for _, iface := range p1.res.Interfaces {
		found = found || iface.Name == ifbs[0]
	}
	if !found {
		t.Errorf("pod1's result does not list the ifb %s: %s", ifbs[0], jsonOf(p1.res))
	}
	if q := e.in("tc", "qdisc", "show", "dev", veth2); strings.Contains(q, "tbf") {
		t.Errorf("pod2 asked for no limit but its host veth %s has a tbf:\n%s", veth2, q)
	}
	e.checkAll(p1, p2)

	e.delAll(p1, p2)
	e.noLeftovers(p1, p2)
	if left := ifbLinks(e); len(left) > 0 {
		t.Errorf("ifb left after DEL: %v", left)
	}
}

func ifbLinks(e *env) []string {
	e.t.Helper()
	var out []string
	for _, l := range strings.Split(e.in("ip", "-br", "link", "show", "type", "ifb"), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, strings.SplitN(f[0], "@", 2)[0])
		}
	}
	return out
}

// TestSwapBridgeLockfileIPAM: the reference bridge with lockfile-ipam as
// its (delegated) IPAM, dual-stack.
func TestSwapBridgeLockfileIPAM(t *testing.T) {
	t.Parallel()
	ref := testutil.ReferencePlugins(t, "bridge")
	e := newEnv(t, "sw-br", []string{ref})
	const network, br = "sw-brnet", "swbr0"
	conf := []byte(fmt.Sprintf(`{
  "cniVersion": "1.1.0",
  "name": %q,
  "plugins": [{
    "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
    "ipam": {
      "type": "lockfile-ipam",
      "ranges": [[{"subnet": "10.66.0.0/24"}], [{"subnet": "fd00:66::/64"}]],
      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
      "dataDir": %q
    }
  }]
}`, network, br, filepath.Join(e.root, "ipam")))
	e.conf = conf
	e.chain = e.chainFor(conf, e.chain.CNIPath)

	p1, p2 := e.addPod("p1"), e.addPod("p2")
	for i, p := range []*pod{p1, p2} {
		if v4 := p.ip(true); v4 == nil || !strings.HasPrefix(v4.Address.IP.String(), "10.66.0.") {
			t.Errorf("pod%d: no IPv4 address from lockfile-ipam's 10.66.0.0/24: %s", i+1, jsonOf(p.res))
		}
	}
	// The reference bridge puts the IPv6 gateway on the bridge with DAD
	// (ours adds it nodad): it answers only once DAD is over.
	waitNotTentative(t, e, br)
	leaseFile := filepath.Join(e.root, "ipam", naming.LeaseFile(network))
	if n := leases(t, leaseFile); n != 2 {
		t.Errorf("lockfile-ipam state has %d leases, want 2", n)
	}
	e.connectivity(p1, p2)
	e.checkAll(p1, p2)
	if ports := bridgePorts(e, br); len(ports) != 2 {
		t.Errorf("bridge %s has ports %v, want two host veths", br, ports)
	}

	e.delAll(p1, p2)
	e.noLeftovers(p1, p2)
	if n := leases(t, leaseFile); n != 0 {
		t.Errorf("lockfile-ipam state still has %d leases after DEL", n)
	}
	if ports := bridgePorts(e, br); len(ports) != 0 {
		t.Errorf("bridge %s still has ports after DEL: %v", br, ports)
	}
	// The freed addresses are reusable: a third pod gets one and works.
	p3 := e.addPod("p3")
	waitNotTentative(t, e, br)
	mustPing(t, "pod3 -> gateway", p3.ns, p3.ip(true).Gateway)
	e.delAll(p3)
	e.noLeftovers(p3)
}

// waitNotTentative waits (bounded) until no IPv6 address of dev in the
// node is tentative (DAD in progress).
func waitNotTentative(t *testing.T, e *env, dev string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := strings.TrimSpace(e.in("ip", "-6", "addr", "show", "dev", dev, "tentative"))
		if out == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still has tentative addresses after 5s:\n%s", dev, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leases counts the leases in a lockfile-ipam state file (none if absent).
func leases(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Leases []json.RawMessage `json:"leases"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state file %s: %v: %s", path, err, b)
	}
	return len(st.Leases)
}

func bridgePorts(e *env, br string) []string {
	e.t.Helper()
	var out []string
	for _, l := range strings.Split(e.in("ip", "-br", "link", "show", "master", br), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, strings.SplitN(f[0], "@", 2)[0])
		}
	}
	return out
}

// dirFiles lists the regular files under dir.
func dirFiles(dir string) []string {
	var out []string
	for path := range chain.StateFiles(dir) {
		out = append(out, path)
	}
	return out
}

// listener is a TCP server in a namespace that answers every connection
// with a greeting naming itself.
type listener struct {
	ln    net.Listener
	hello string
	wg    sync.WaitGroup
}

// listen starts a listener on addr (host:port) inside n; it is closed when
// the test ends.
func listen(t *testing.T, n ns.NetNS, addr, hello string) *listener {
	t.Helper()
	l := &listener{hello: hello}
	if err := n.Do(func(ns.NetNS) error {
		var err error
		l.ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := l.ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, hello+" from "+c.RemoteAddr().String()+"\n")
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.ln.Close()
		l.wg.Wait()
	})
	return l
}

// dial connects from n to addr (host:port) and returns the greeting line.
func dial(n ns.NetNS, addr string) (string, error) {
	var line string
	err := n.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return fmt.Errorf("dial %s: %w", addr, err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err = bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read from %s: %q %w", addr, line, err)
		}
		line = strings.TrimSpace(line)
		return nil
	})
	return line, err
}

// mustDial fails the test unless the greeting of l arrives from n at addr.
func (l *listener) mustDial(t *testing.T, what string, n ns.NetNS, addr string) string {
	t.Helper()
	line, err := dial(n, addr)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return ""
	}
	if !strings.HasPrefix(line, l.hello+" ") {
		t.Errorf("%s: got %q, want the greeting %q", what, line, l.hello)
	}
	return line
}

// linesWith returns the lines of s that contain any of subs.
func linesWith(s string, subs ...string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if sub != "" && strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// ruleset is iptables-save + ip6tables-save of the node.
func (e *env) ruleset() string {
	e.t.Helper()
	return e.in("iptables-save") + e.in("ip6tables-save")
}

// podAddrs are the pod's addresses as iptables-save prints them (/32, /128).
func (p *pod) podAddrs() []string {
	var out []string
	for _, ip := range p.ips {
		if ip.Address.IP.To4() != nil {
			out = append(out, ip.Address.IP.String()+"/32")
		} else {
			out = append(out, ip.Address.IP.String()+"/128")
		}
	}
	return out
}

// delAll DELs every pod through the env's chain.
func (e *env) delAll(pods ...*pod) {
	e.t.Helper()
	for _, p := range pods {
		if err := e.chain.Del(ctx(e.t), p.rt); err != nil {
			e.t.Errorf("DEL %s: %v", p.rt.ContainerID, err)
		}
	}
}

// checkAll runs CHECK for every pod.
func (e *env) checkAll(pods ...*pod) {
	e.t.Helper()
	for _, p := range pods {
		if err := e.chain.Check(ctx(e.t), p.rt); err != nil {
			e.t.Errorf("CHECK %s: %v", p.rt.ContainerID, err)
		}
	}
}
