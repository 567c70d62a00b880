package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

const (
	plugin  = "sysctl-firewall"
	testNet = "sfnet"
	bridge  = "br-sf"
	gateway = "10.66.0.1"
)

// node is a lab node with a bridge carrying the pod gateway.
type node struct {
	lab *netsim.Lab
	*netsim.Node
}

func newNode(t testing.TB, lab string) *node {
	t.Helper()
	l, n := testutil.NewNode(t, lab)
	nd := &node{lab: l, Node: n}
	nd.sh(t, "ip", "link", "add", bridge, "type", "bridge")
	nd.sh(t, "ip", "link", "set", bridge, "up")
	nd.sh(t, "ip", "addr", "add", gateway+"/24", "dev", bridge)
	nd.sh(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return nd
}

func (n *node) sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.In(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// pod is a pod netns wired to the node's bridge by a veth that this test
// (not a plugin of ours) created, with an arbitrary host veth name.
type pod struct {
	*netsim.NS
	hostVeth string
	addr     string // CIDR
}

func (n *node) addPod(t testing.TB, role, hostVeth, cidr string) *pod {
	t.Helper()
	p, err := n.lab.AddNS(role)
	if err != nil {
		t.Fatal(err)
	}
	n.sh(t, "ip", "link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", p.Name)
	n.sh(t, "ip", "link", "set", hostVeth, "master", bridge, "up")
	for _, c := range [][]string{
		{"addr", "add", cidr, "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", gateway},
	} {
		if _, err := p.In("ip", c...); err != nil {
			t.Fatal(err)
		}
	}
	return &pod{NS: p, hostVeth: hostVeth, addr: cidr}
}

// prevResult describes the pod as veth-attach would: bridge, host veth,
// pod interface (with sandbox), and the address pointing at it.
func (p *pod) prevResult(t testing.TB) *current.Result {
	t.Helper()
	ip, n, err := net.ParseCIDR(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	idx := 2
	return &current.Result{
		CNIVersion: "1.1.0",
		Interfaces: []*current.Interface{{Name: bridge}, {Name: p.hostVeth}, {Name: "eth0", Sandbox: p.Path}},
		IPs: []*current.IPConfig{{
			Address:   net.IPNet{IP: ip, Mask: n.Mask},
			Gateway:   net.ParseIP(gateway),
			Interface: &idx,
		}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: net.ParseIP(gateway)}},
	}
}

// config renders a network config at version v with extra keys and, when
// prev is not nil, prevResult converted to v.
func config(t testing.TB, v string, extra map[string]any, prev *current.Result) []byte {
	t.Helper()
	// Tests that do not name a backend test the iptables one (they read
	// iptables-save); forBackends passes each backend explicitly.
	c := testutil.Conf(v, testNet, plugin).With("backend", BackendIPTables).Keys(extra)
	if prev != nil {
		c = c.With("prevResult", asVersion(t, prev, v))
	}
	return c.Bytes()
}

// asVersion is prev converted to v, as generic JSON.
func asVersion(t testing.TB, prev *current.Result, v string) any {
	t.Helper()
	r, err := prev.GetAsVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func jsonEqual(t testing.TB, got []byte, want any) {
	t.Helper()
	var g any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output %q: %v", got, err)
	}
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("output differs from prevResult:\n got  %s\n want %v", got, want)
	}
}

// stage drives the plugin in the node, with env added to its environment.
func (n *node) stage(env ...string) testutil.Stage {
	return testutil.Stage{Plugin: plugin, In: n.NetNS, Env: env}
}

// legacyPath makes iptables and ip6tables resolve to xtables-legacy-multi
// (as after update-alternatives --set iptables iptables-legacy): it returns
// a directory of those two links and the PATH entry for the plugin's env
// that puts it first. It skips the test without xtables-legacy-multi.
func legacyPath(t *testing.T) (dir, env string) {
	t.Helper()
	testutil.RequireRoot(t)
	legacy, err := findBin("iptables-legacy")
	if err != nil {
		t.Skip(err)
	}
	multi, err := filepath.EvalSymlinks(legacy)
	if err != nil || filepath.Base(multi) != "xtables-legacy-multi" {
		t.Skipf("iptables-legacy is not xtables-legacy-multi: %s %v", multi, err)
	}
	dir = t.TempDir()
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if err := os.Symlink(multi, filepath.Join(dir, cmd)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, "PATH=" + dir + ":" + os.Getenv("PATH")
}

// save is iptables-save (v4) of the node.
func (n *node) save(t testing.TB) string {
	t.Helper()
	return n.sh(t, "iptables-save")
}

// ping from the pod; true when a reply came back (to any of 3 probes, so
// a loaded machine does not turn a slow first ARP into a failure).
func (p *pod) ping(t testing.TB, dst string, src string) bool {
	t.Helper()
	args := []string{"-c", "3", "-i", "0.2", "-W", "2"}
	if src != "" {
		args = append(args, "-I", src)
	}
	_, err := p.In("ping", append(args, dst)...)
	return err == nil
}

func (p *pod) read(t testing.TB, path string) string {
	t.Helper()
	out, err := p.In("cat", path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// counter returns the packet count of the first rule of chain (table)
// whose text contains match, from `iptables -S -v`-like listing.
func (n *node) counter(t testing.TB, table, chain, match string) int {
	t.Helper()
	out := n.sh(t, "iptables", "-t", table, "-L", chain, "-n", "-v", "-x")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, match) {
			var pkts int
			if _, err := fmt.Sscan(strings.TrimSpace(line), &pkts); err == nil {
				return pkts
			}
		}
	}
	t.Fatalf("no rule matching %q in %s/%s:\n%s", match, table, chain, out)
	return 0
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dumpNft lists our nftables tables in the node: chains with their rule
// counts and every set element with its comment (the google/nftables
// view; the machine has no nft binary).
func dumpNft(t testing.TB, n *node) string {
	t.Helper()
	var b strings.Builder
	err := n.NS.NetNS.Do(func(ns.NetNS) error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		chains, err := c.ListChains()
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if ch.Table.Name != naming.NftTable {
				continue
			}
			if strings.Contains(ch.Name, "-zone-") {
				// Its ct rule (a u8 direction) is not decodable by google/nftables.
				fmt.Fprintf(&b, "chain %d %s %s: zone rule\n", ch.Table.Family, ch.Table.Name, ch.Name)
				continue
			}
			rules, err := c.GetRules(ch.Table, ch)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "chain %d %s %s: %d rules\n", ch.Table.Family, ch.Table.Name, ch.Name, len(rules))
		}
		for _, s := range append(append([]nftSet{}, inetSets...), bridgeSets...) {
			els, err := c.GetSetElements(s.object())
			if err != nil {
				continue
			}
			for _, el := range els {
				v := ""
				if el.VerdictData != nil {
					v = " -> " + el.VerdictData.Chain
				}
				fmt.Fprintf(&b, "element bridge=%v %s %x %s%s\n", s.bridge, s.name, el.Key, el.Comment, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("nftables dump: %v", err)
	}
	return b.String()
}

// backends are the packet filters every firewall test runs against.
var backends = []string{BackendIPTables, BackendNftables}

// forBackends runs fn as one subtest per backend.
func forBackends(t *testing.T, fn func(t *testing.T, be string)) {
	for _, be := range backends {
		t.Run(be, func(t *testing.T) { fn(t, be) })
	}
}

// labFor is a lab name per backend, so subtests never share a lab.
func labFor(name, be string) string { return name + "-" + be[:1] }

// with is extra plus the backend.
func with(be string, extra map[string]any) map[string]any {
	out := map[string]any{"backend": be}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// attState is what of the attachment (network, cid, eth0) the backend
// holds in the node, one line each ("" when nothing): iptables-save lines
// naming its chain or tag, or nftables elements commented with its tag.
func (n *node) attState(t testing.TB, be, network, cid string) string {
	t.Helper()
	var lines []string
	if be == BackendNftables {
		tag := naming.NftTag(network, cid, "eth0")
		for _, l := range strings.Split(dumpNft(t, n), "\n") {
			if strings.Contains(l, tag) {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\n")
	}
	chain, tag := naming.AttachmentChain(network, cid, "eth0"), naming.AttachmentTag(network, cid, "eth0")
	for _, l := range strings.Split(n.save(t)+n.sh(t, "ip6tables-save"), "\n") {
		if strings.Contains(l, chain) || strings.Contains(l, tag) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// nftDelElements deletes, behind the plugin's back, the elements of set
// (in the bridge table when bridge) commented with the attachment's tag.
func (n *node) nftDelElements(t testing.TB, set string, bridge bool, network, cid string) {
	t.Helper()
	tag := naming.NftTag(network, cid, "eth0")
	n.nft(t, func(c *nftables.Conn) error {
		els, err := elementsOf(c, func(s string) bool { return naming.NftTagOf(s) == tag })
		if err != nil {
			return err
		}
		var del []nftElem
		for _, f := range els {
			if f.set.name == set && f.set.bridge == bridge {
				del = append(del, f)
			}
		}
		if len(del) == 0 {
			return fmt.Errorf("no element of %s in %s", tag, set)
		}
		return deleteElems(c, del)
	})
}

// nft runs fn on an nftables connection inside the node and flushes what
// it queued.
func (n *node) nft(t testing.TB, fn func(c *nftables.Conn) error) {
	t.Helper()
	err := n.NS.NetNS.Do(func(ns.NetNS) error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
		return c.Flush()
	})
	if err != nil {
		t.Fatal(err)
	}
}
