package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// TestDualStack: an IPv6 pod address gets ip6tables rules, and with
// anti-spoofing the pod still reaches its IPv6 gateway (neighbour
// discovery from link-local and :: passes) while a spoofed source does not.
func TestDualStack(t *testing.T) {
	forBackends(t, testDualStack)
}

func testDualStack(t *testing.T, be string) {
	testutil.RequireRoot(t)
	n := newNode(t, labFor("sf-v6", be))
	n.sh(t, "ip", "-6", "addr", "add", "fd66::1/64", "dev", bridge, "nodad")
	p := n.addPod(t, "p", "sfh-v6", "10.66.0.30/24")
	for _, c := range [][]string{
		{"-6", "addr", "add", "fd66::30/64", "dev", "eth0", "nodad"},
		{"-6", "addr", "add", "fd66::99/128", "dev", "eth0", "nodad"},
	} {
		if _, err := p.In("ip", c...); err != nil {
			t.Fatal(err)
		}
	}
	prev := p.prevResult(t)
	idx := 2
	prev.IPs = append(prev.IPs, &current.IPConfig{
		Address:   net.IPNet{IP: net.ParseIP("fd66::30"), Mask: net.CIDRMask(64, 128)},
		Gateway:   net.ParseIP("fd66::1"),
		Interface: &idx,
	})
	if !p.ping(t, "fd66::1", "fd66::99") {
		t.Fatal("spoofed IPv6 ping fails before ADD: the test could not show anything")
	}
	cid := "sf-v6"
	chain := naming.AttachmentChain(testNet, cid, "eth0")
	conf := config(t, "1.1.0", with(be, map[string]any{"antiSpoofing": true, "masquerade": true}), prev)
	n.stage().Add(t, cid, p.NS, conf).OK(t)
	if be == BackendIPTables {
		s6 := n.sh(t, "ip6tables-save")
		for _, want := range []string{
			"-A " + chain + " -s fd66::30/128 -j ACCEPT",
			"-A " + chain + " -s fd66::30/128 ! -d fd66::/64 ! -o " + bridge + " -j MASQUERADE",
			"-A " + chain + " ! -s fd66::30/128 -m physdev --physdev-in sfh-v6 -j DROP",
		} {
			if !strings.Contains(s6, want) {
				t.Fatalf("ip6tables-save lacks %q:\n%s", want, s6)
			}
		}
		if got := strings.TrimSpace(n.sh(t, "cat", "/proc/sys/net/bridge/bridge-nf-call-ip6tables")); got != "1" {
			t.Fatalf("bridge-nf-call-ip6tables = %s", got)
		}
	} else {
		tag := naming.NftTag(testNet, cid, "eth0")
		ip6 := fmt.Sprintf("%x", []byte(net.ParseIP("fd66::30").To16()))
		dump := dumpNft(t, n)
		for _, want := range []string{
			"bridge=false fwd6 " + ip6 + hexName(bridge) + " " + tag,
			"bridge=false masq6 " + ip6 + hexName(bridge) + " " + tag,
			"bridge=true guard6 " + hexName("sfh-v6") + " " + tag,
			"bridge=true allow6 " + hexName("sfh-v6") + ip6 + " " + tag,
			"bridge=true guard4 " + hexName("sfh-v6") + " " + tag,
		} {
			if !strings.Contains(dump, "element "+want) {
				t.Fatalf("nftables lacks %q:\n%s", want, dump)
			}
		}
	}
	n.stage().Check(t, cid, p.NS, conf).OK(t)
	// Clear the neighbour cache so the ping needs neighbour discovery again.
	_, _ = p.In("ip", "-6", "neigh", "flush", "dev", "eth0")
	if !p.ping(t, "fd66::1", "fd66::30") {
		t.Fatal("pod cannot ping its IPv6 gateway with anti-spoofing on")
	}
	if p.ping(t, "fd66::1", "fd66::99") {
		t.Fatal("spoofed IPv6 ping still works with anti-spoofing")
	}
	if !p.ping(t, gateway, "") {
		t.Fatal("pod cannot ping its IPv4 gateway")
	}
	n.stage().Del(t, cid, nil, config(t, "1.1.0", nil, nil)).OK(t)
	if s := n.attState(t, be, testNet, cid); s != "" {
		t.Fatalf("DEL left:\n%s", s)
	}
}

// TestRollback: ADD that fails after the IPv4 chains exist (the IPv6
// tools are broken: ip6tables itself, so there is no restore next to it;
// or only ip6tables-restore) removes them again, and the failure is a CNI
// error.
func TestRollback(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sf-rb")
	p := n.addPod(t, "p", "sfh-rb", "10.66.0.40/24")
	prev := p.prevResult(t)
	idx := 2
	prev.IPs = append(prev.IPs, &current.IPConfig{
		Address:   net.IPNet{IP: net.ParseIP("fd66::40"), Mask: net.CIDRMask(64, 128)},
		Interface: &idx,
	})
	real6, err := findBin("ip6tables")
	if err != nil {
		t.Skip(err)
	}
	broken := "#!/bin/sh\necho broken >&2\nexit 3\n"
	for name, files := range map[string]map[string]string{
		"ip6tables":         {"ip6tables": broken},
		"ip6tables-restore": {"ip6tables": "#!/bin/sh\nexec " + real6 + " \"$@\"\n", "ip6tables-restore": broken},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for f, body := range files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cid := "sf-rb"
			chain := naming.AttachmentChain(testNet, cid, "eth0")
			conf := config(t, "1.1.0", map[string]any{"masquerade": true}, prev)
			o := n.stage("PATH="+dir+":"+os.Getenv("PATH")).Add(t, cid, p.NS, conf)
			if e := o.CNIError(t); !strings.Contains(e.Msg, "ipv6") {
				t.Fatalf("ADD failed, but not at the IPv6 step after the IPv4 chains: %s", e.Msg)
			}
			if s := n.save(t) + n.sh(t, "ip6tables-save"); strings.Contains(s, chain) {
				t.Fatalf("failed ADD left its chain:\n%s", s)
			}
			// The same ADD with working tools succeeds: nothing was left over.
			n.stage().Add(t, cid, p.NS, conf).OK(t)
			n.stage().Del(t, cid, p.NS, conf).OK(t)
		})
	}
}

// TestRollbackPartial: iptables-restore commits table by table, so a
// restore that fails in its last table (raw) has already committed filter
// and nat. ADD's converging batch (after listing) fails there too; ADD
// then fails with restore's own message and deletes what the listing
// finds of the attachment (the filter and nat chains); another attachment
// of the node is untouched.
func TestRollbackPartial(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sf-rbp")
	p := n.addPod(t, "p", "sfh-rbp", "10.66.0.41/24")
	q := n.addPod(t, "q", "sfh-rbq", "10.66.0.42/24")
	extra := map[string]any{"masquerade": true, "antiSpoofing": true}
	n.stage().Add(t, "sf-rbp-other", q.NS, config(t, "1.1.0", extra, q.prevResult(t))).OK(t)
	before := n.save(t)
	realRestore, err := findBin("iptables-restore")
	if err != nil {
		t.Skip(err)
	}
	realIPT, err := findBin("iptables")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	// The raw table's DROP rule gets a target that does not exist.
	files := map[string]string{
		"iptables":         "#!/bin/sh\nexec " + realIPT + " \"$@\"\n",
		"iptables-restore": "#!/bin/sh\nsed 's/-j DROP/-j SFNOSUCH/' | " + realRestore + " \"$@\"\n",
	}
	for f, body := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cid := "sf-rbp"
	chain := naming.AttachmentChain(testNet, cid, "eth0")
	conf := config(t, "1.1.0", extra, p.prevResult(t))
	o := n.stage("PATH="+dir+":"+os.Getenv("PATH")).Add(t, cid, p.NS, conf)
	if e := o.CNIError(t); !strings.Contains(e.Msg, "ipv4 firewall") || !strings.Contains(e.Msg, "SFNOSUCH") {
		t.Fatalf("ADD failed, but not with restore's message about the raw rule: %s", e.Msg)
	}
	if after := n.save(t); strings.Contains(after, chain) || stripSaveComments(after) != stripSaveComments(before) {
		t.Fatalf("failed ADD changed iptables:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	n.stage().Add(t, cid, p.NS, conf).OK(t)
	n.stage().Check(t, cid, p.NS, conf).OK(t)
	n.stage().Del(t, cid, p.NS, conf).OK(t)
}

var saveCounters = regexp.MustCompile(`\[\d+:\d+\]`)

// stripSaveComments drops iptables-save's "#" lines (they carry a date)
// and zeroes chain counters.
func stripSaveComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, saveCounters.ReplaceAllString(l, "[0:0]"))
		}
	}
	return strings.Join(out, "\n")
}
