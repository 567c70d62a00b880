package main

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/nftables"

	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// dualPrev is p's prevResult plus an IPv6 address (configured here on the
// pod and its gateway on the bridge).
func (n *node) dualPod(t *testing.T, role, hostVeth, v4, v6 string) (*pod, *current.Result) {
	t.Helper()
	p := n.addPod(t, role, hostVeth, v4)
	if _, err := p.In("ip", "addr", "add", v6+"/64", "dev", "eth0", "nodad"); err != nil {
		t.Fatal(err)
	}
	prev := p.prevResult(t)
	idx := 2
	prev.IPs = append(prev.IPs, &current.IPConfig{
		Address: net.IPNet{IP: net.ParseIP(v6), Mask: net.CIDRMask(64, 128)}, Interface: &idx,
	})
	return p, prev
}

// zoneLines returns the lines of iptables-save / ip6tables-save that carry
// the tag.
func (n *node) zoneLines(t *testing.T, save, tag string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(n.sh(t, save), "\n") {
		if strings.Contains(l, `"`+tag+`"`) || strings.Contains(l, " "+tag+" ") {
			out = append(out, l)
		}
	}
	return out
}

// conntrack returns the node's conntrack entries that contain every word.
func (n *node) conntrack(t *testing.T, words ...string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(n.sh(t, "cat", "/proc/net/nf_conntrack"), "\n") {
		ok := l != ""
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// TestConntrackZone: an explicit conntrackZone on a plain bridge (no VRF
// on this kernel). The network's zone rules appear once per family however
// many pods, real packets from the pod get the zone and the mark in
// conntrack, CHECK fails when a zone rule is removed and the next ADD puts
// it back, a changed zone replaces the network's rules, DEL of a pod keeps
// them, GC with attachments left keeps them and GC with an empty list
// removes them (and the node-wide restore rule). The traffic proof that
// zones keep two tenants' identical flows apart needs VRF: integration/
// cluster TestTenantEgressVRF in the VM.
func TestConntrackZone(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sfz-zone")
	n.sh(t, "ip", "addr", "add", "fd00:66::1/64", "dev", bridge, "nodad")
	p1, prev1 := n.dualPod(t, "p1", "sfz-h1", "10.66.0.5/24", "fd00:66::5")
	p2, prev2 := n.dualPod(t, "p2", "sfz-h2", "10.66.0.6/24", "fd00:66::6")
	extra := map[string]any{"masquerade": true, "antiSpoofing": true, "conntrackZone": 77}
	conf1, conf2 := config(t, "1.1.0", extra, prev1), config(t, "1.1.0", extra, prev2)
	tag := naming.ZoneTag(testNet)

	n.stage().Add(t, "sfz-1", p1.NS, conf1).OK(t)
	n.stage().Add(t, "sfz-2", p2.NS, conf2).OK(t)
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		s := n.sh(t, save)
		for _, want := range []string{
			"-A PREROUTING -j VXVRF-ZONES", // raw and mangle
			`-A VXVRF-ZONES -i br-sf -m comment --comment "` + tag + `" -j CT --zone-orig 77`,
			`-A VXVRF-ZONES -i br-sf -m conntrack --ctdir ORIGINAL -m comment --comment "` + tag + `" -j CONNMARK --set-xmark 0x4d0000/0xffff0000`,
			`-A VXVRF-ZONES -m conntrack --ctdir REPLY -m comment --comment ` + naming.ZoneRestoreTag + ` -j CONNMARK --restore-mark --nfmask 0xffff0000 --ctmask 0xffff0000`,
		} {
			if !strings.Contains(s, want) {
				t.Fatalf("%s lacks %q:\n%s", save, want, s)
			}
		}
		if got := n.zoneLines(t, save, tag); len(got) != 2 {
			t.Fatalf("%s: want the network's 2 zone rules once (two pods), got %d:\n%s", save, len(got), strings.Join(got, "\n"))
		}
	}

	// Real packets: the pod's flows to its gateway are in zone 77 (original
	// direction) with the connection mark 77<<16.
	zoneFlows(t, n, p1)

	n.stage().Check(t, "sfz-1", p1.NS, conf1).OK(t)
	// CHECK catches a removed zone rule (each family, each table); the
	// next ADD of the network puts it back.
	for _, rm := range [][]string{
		{"iptables", "-t", "raw", "-F", naming.ZoneChain},
		{"ip6tables", "-t", "mangle", "-D", "PREROUTING", "-j", naming.ZoneChain},
	} {
		n.sh(t, rm[0], rm[1:]...)
		o := n.stage().Check(t, "sfz-1", p1.NS, conf1)
		if o.Err == nil {
			t.Fatalf("CHECK passed after %v", rm)
		}
		if e := o.CNIError(t); !strings.Contains(e.Msg+e.Details, "conntrack zone") {
			t.Fatalf("CHECK after %v: %+v, want a conntrack zone error", rm, e)
		}
		n.stage().Del(t, "sfz-2", p2.NS, conf2).OK(t)
		n.stage().Add(t, "sfz-2", p2.NS, conf2).OK(t)
		n.stage().Check(t, "sfz-1", p1.NS, conf1).OK(t)
	}

	// DEL of one pod keeps the network's rules.
	n.stage().Del(t, "sfz-1", p1.NS, conf1).OK(t)
	n.stage().Del(t, "sfz-1", p1.NS, conf1).OK(t)
	n.stage().Check(t, "sfz-2", p2.NS, conf2).OK(t)

	// A changed zone replaces the network's rules (no stale zone-77 rule).
	conf78 := config(t, "1.1.0", map[string]any{"conntrackZone": 78}, prev1)
	n.stage().Add(t, "sfz-1", p1.NS, conf78).OK(t)
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		got := strings.Join(n.zoneLines(t, save, tag), "\n")
		if strings.Contains(got, "--zone-orig 77") || !strings.Contains(got, "--zone-orig 78") || strings.Count(got, "\n") != 1 {
			t.Fatalf("%s after the zone changed:\n%s", save, got)
		}
	}
	n.stage().Check(t, "sfz-1", p1.NS, conf78).OK(t)

	gc := func(valid []map[string]string) {
		n.stage().GC(t, testutil.Conf("1.1.0", testNet, plugin).With("cni.dev/valid-attachments", valid).Bytes()).OK(t)
	}
	gc([]map[string]string{{"containerID": "sfz-1", "ifname": "eth0"}})
	if len(n.zoneLines(t, "iptables-save", tag)) != 2 || len(n.zoneLines(t, "ip6tables-save", tag)) != 2 {
		t.Fatal("GC with an attachment left removed the zone rules")
	}
	// Another network's zone keeps the node-wide restore rule.
	other := testutil.Conf("1.1.0", "sfzother", plugin).With("backend", BackendIPTables).With("conntrackZone", 79)
	n.stage().Add(t, "sfz-o", p2.NS, other.Prev(prev2).Bytes()).OK(t)
	gc([]map[string]string{})
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if got := n.zoneLines(t, save, tag); len(got) != 0 {
			t.Fatalf("%s: GC with an empty list left the zone rules:\n%s", save, strings.Join(got, "\n"))
		}
		if len(n.zoneLines(t, save, naming.ZoneTag("sfzother"))) != 2 || len(n.zoneLines(t, save, naming.ZoneRestoreTag)) != 1 {
			t.Fatalf("%s: GC of %s touched another network's zone or the restore rule:\n%s", save, testNet, n.sh(t, save))
		}
	}
	n.stage().GC(t, other.With("cni.dev/valid-attachments", []map[string]string{}).Bytes()).OK(t)
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if s := n.sh(t, save); strings.Contains(s, "vxvrf-zone") || strings.Contains(s, "vxvrf:") || strings.Contains(s, naming.ZoneChain) {
			t.Fatalf("%s: rules or zone chains left after the last GC:\n%s", save, s)
		}
	}
}

// TestConntrackZoneConcurrent: 12 first ADDs of a network at once create
// each zone rule exactly once.
func TestConntrackZoneConcurrent(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sfz-conc")
	const k = 12
	pods := make([]*pod, k)
	for i := range pods {
		pods[i] = n.addPod(t, fmt.Sprintf("p%d", i), fmt.Sprintf("sfz-c%d", i), fmt.Sprintf("10.66.0.%d/24", 10+i))
	}
	var wg sync.WaitGroup
	errs := make([]error, k)
	for i, p := range pods {
		wg.Add(1)
		go func(i int, p *pod) {
			defer wg.Done()
			conf := config(t, "1.1.0", map[string]any{"conntrackZone": 12}, p.prevResult(t))
			if o := n.stage().Add(t, fmt.Sprintf("sfz-c%d", i), p.NS, conf); o.Err != nil {
				errs[i] = fmt.Errorf("%w: %s", o.Err, o.Stdout)
			}
		}(i, p)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("ADD %d: %v", i, err)
		}
	}
	s := n.save(t)
	for want, times := range map[string]int{"-A PREROUTING -j VXVRF-ZONES": 2, naming.ZoneRestoreTag: 1} { // raw + mangle hooks
		if c := strings.Count(s, want); c != times {
			t.Errorf("%q appears %d times, want %d:\n%s", want, c, times, s)
		}
	}
	if got := n.zoneLines(t, "iptables-save", naming.ZoneTag(testNet)); len(got) != 2 {
		t.Errorf("want 2 zone rules, got %d:\n%s", len(got), strings.Join(got, "\n"))
	}
}

// TestConntrackZoneLegacy: the zone rules with iptables resolving to
// xtables-legacy-multi (legacy restore), also for a host veth name that
// restore only carries quoted: present after ADD, CHECK catches a
// missing one, GC with an empty list removes them.
func TestConntrackZoneLegacy(t *testing.T) {
	_, env := legacyPath(t)
	n := newNode(t, "sfz-leg")
	tag := naming.ZoneTag(testNet)
	for _, tc := range []struct{ cid, veth, addr string }{
		{"sfz-leg", "sfz-hleg", "10.66.0.61/24"},
		{"sfz-odd", `sfz"odd`, "10.66.0.62/24"}, // quoted in the batch
	} {
		p := n.addPod(t, tc.cid, tc.veth, tc.addr)
		conf := config(t, "1.1.0", map[string]any{"conntrackZone": 31, "antiSpoofing": true}, p.prevResult(t))
		n.stage(env).Add(t, tc.cid, p.NS, conf).OK(t)
		if got := n.zoneLines(t, "iptables-legacy-save", tag); len(got) != 2 || !strings.Contains(strings.Join(got, "\n"), "--zone-orig 31") {
			t.Fatalf("%s: zone rules in iptables-legacy-save:\n%s", tc.cid, n.sh(t, "iptables-legacy-save"))
		}
		if s := n.sh(t, "iptables-nft-save"); strings.Contains(s, "VXVRF") {
			t.Fatalf("%s: rules in nf_tables too:\n%s", tc.cid, s)
		}
		n.stage(env).Check(t, tc.cid, p.NS, conf).OK(t)
		n.sh(t, "iptables-legacy", "-t", "mangle", "-F", naming.ZoneChain)
		if o := n.stage(env).Check(t, tc.cid, p.NS, conf); o.Err == nil {
			t.Fatalf("%s: CHECK passed without the mangle zone rules", tc.cid)
		}
		n.stage(env).Del(t, tc.cid, p.NS, conf).OK(t)
		n.stage(env).Add(t, tc.cid, p.NS, conf).OK(t)
		n.stage(env).Check(t, tc.cid, p.NS, conf).OK(t)
	}
	n.stage(env).GC(t, testutil.Conf("1.1.0", testNet, plugin).With("cni.dev/valid-attachments", []any{}).Bytes()).OK(t)
	if s := n.sh(t, "iptables-legacy-save"); strings.Contains(s, "vxvrf-zone") || strings.Contains(s, "vxvrf:") || strings.Contains(s, naming.ZoneChain) {
		t.Fatalf("GC left rules:\n%s", s)
	}
}

// TestConntrackZoneNft: the nftables backend's conntrack zones. Real
// packets from the pod get zone 77 in the original direction only
// ("zone-orig=77": the zone rule's direction, which google/nftables cannot
// send, works) and the mark 77<<16, in both families; the network's zone
// objects exist once for two pods; CHECK fails without them and the next
// ADD puts them back; a changed zone replaces the zone chain; GC with an
// empty list removes the network's zone objects and keeps another's.
func TestConntrackZoneNft(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sfz-nft")
	n.sh(t, "ip", "addr", "add", "fd00:66::1/64", "dev", bridge, "nodad")
	p1, prev1 := n.dualPod(t, "p1", "sfz-h1", "10.66.0.5/24", "fd00:66::5")
	p2, prev2 := n.dualPod(t, "p2", "sfz-h2", "10.66.0.6/24", "fd00:66::6")
	extra := with(BackendNftables, map[string]any{"masquerade": true, "antiSpoofing": true, "conntrackZone": 77})
	conf1, conf2 := config(t, "1.1.0", extra, prev1), config(t, "1.1.0", extra, prev2)
	n.stage().Add(t, "sfz-1", p1.NS, conf1).OK(t)
	n.stage().Add(t, "sfz-2", p2.NS, conf2).OK(t)
	zoneTag := naming.NftZoneTag(testNet)
	dump := dumpNft(t, n)
	if got := strings.Count(dump, zoneTag); got != 3 {
		t.Fatalf("%d zone elements of the network, want 3 (zonejump, markjump, restorejump) for two pods:\n%s", got, dump)
	}
	for _, want := range []string{naming.NftZoneChain(testNet, 77) + ": zone rule", naming.NftZoneMarkChain(testNet) + ": 1 rules", naming.NftZoneRestoreChain(testNet) + ": 1 rules"} {
		if !strings.Contains(dump, want) {
			t.Fatalf("no %q:\n%s", want, dump)
		}
	}
	if s := n.save(t); strings.Contains(s, "VXVRF") {
		t.Fatalf("the nftables backend made iptables rules:\n%s", s)
	}

	zoneFlows(t, n, p1)

	n.stage().Check(t, "sfz-1", p1.NS, conf1).OK(t)
	n.nft(t, func(c *nftables.Conn) error {
		els, err := elementsOf(c, func(s string) bool { return s == zoneTag })
		if err != nil {
			return err
		}
		var jump []nftElem
		for _, f := range els {
			if f.set.name == setZoneJump.name {
				jump = append(jump, f)
			}
		}
		return deleteElems(c, jump)
	})
	if e := n.stage().Check(t, "sfz-1", p1.NS, conf1).CNIError(t); !strings.Contains(e.Msg, "zonejump") {
		t.Fatalf("CHECK without the zone element: %s", e.Msg)
	}
	n.stage().Del(t, "sfz-2", p2.NS, conf2).OK(t)
	n.stage().Add(t, "sfz-2", p2.NS, conf2).OK(t)
	n.stage().Check(t, "sfz-1", p1.NS, conf1).OK(t)
	// DEL of a pod keeps the network's zone.
	n.stage().Del(t, "sfz-1", p1.NS, conf1).OK(t)
	n.stage().Check(t, "sfz-2", p2.NS, conf2).OK(t)

	// A changed zone: a new zone chain, the old one gone.
	conf78 := config(t, "1.1.0", with(BackendNftables, map[string]any{"conntrackZone": 78}), prev1)
	n.stage().Add(t, "sfz-1", p1.NS, conf78).OK(t)
	dump = dumpNft(t, n)
	if !strings.Contains(dump, naming.NftZoneChain(testNet, 78)) || strings.Contains(dump, naming.NftZoneChain(testNet, 77)) {
		t.Fatalf("after the zone changed to 78:\n%s", dump)
	}
	n.stage().Check(t, "sfz-1", p1.NS, conf78).OK(t)

	// Another network with a zone, on a bridge of its own (a bridge has
	// one network's zone).
	n.sh(t, "ip", "link", "add", "br-sf2", "type", "bridge")
	n.sh(t, "ip", "link", "set", "br-sf2", "up")
	n.sh(t, "ip", "link", "set", "sfz-h2", "master", "br-sf2")
	other := testutil.Conf("1.1.0", "sfzother", plugin).With("backend", BackendNftables).With("conntrackZone", 79).Prev(prev2)
	n.stage().Add(t, "sfz-o", p2.NS, other.Bytes()).OK(t)
	n.stage().GC(t, testutil.Conf("1.1.0", testNet, plugin).With("cni.dev/valid-attachments", []map[string]string{}).Bytes()).OK(t)
	dump = dumpNft(t, n)
	if strings.Contains(dump, zoneTag) || strings.Contains(dump, naming.NftZonePrefix(testNet)) {
		t.Fatalf("GC with an empty list left the network's zone objects:\n%s", dump)
	}
	if strings.Count(dump, naming.NftZoneTag("sfzother")) != 3 || !strings.Contains(dump, naming.NftZoneChain("sfzother", 79)) {
		t.Fatalf("GC touched another network's zone:\n%s", dump)
	}
}

// zoneFlows: the pod's (10.66.0.5, fd00:66::5) flows to its gateway are
// in zone 77 (original direction) with the connection mark 77<<16.
func zoneFlows(t *testing.T, n *node, p1 *pod) {
	t.Helper()
	if !p1.ping(t, gateway, "") {
		t.Fatal("pod -> gateway (IPv4)")
	}
	if _, err := p1.In("ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "fd00:66::1"); err != nil {
		t.Fatalf("pod -> gateway (IPv6): %v", err)
	}
	mark := fmt.Sprintf("mark=%d", 77<<16)
	if got := n.conntrack(t, "src=10.66.0.5 ", "zone-orig=77", mark); len(got) == 0 {
		t.Fatalf("no IPv4 conntrack entry of the pod in zone 77 with %s:\n%s", mark, n.sh(t, "cat", "/proc/net/nf_conntrack"))
	}
	if got := n.conntrack(t, "src=fd00:0066:0000:0000:0000:0000:0000:0005 ", "zone-orig=77", mark); len(got) == 0 {
		t.Fatalf("no IPv6 conntrack entry of the pod in zone 77 with %s:\n%s", mark, n.sh(t, "cat", "/proc/net/nf_conntrack"))
	}
}
