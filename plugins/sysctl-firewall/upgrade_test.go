package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// TestAutoUpgrade: a node whose network has an attachment in iptables (as
// the previous, iptables-only release or the iptables backend left it),
// where auto's node rule picks nftables. With auto: CHECK of the old
// attachment looks in iptables and passes; a second pod of the network
// lands in iptables too; both pods forward, masquerade and drop spoofed
// sources; DEL removes the old attachment; GC with an empty list clears a
// network mixed across both backends; with no iptables state left, the
// network's next ADD lands in nftables.
func TestAutoUpgrade(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sf-upg")
	ext := netsim.UnderlayGateway
	type member struct {
		*pod
		cid, spoofed string
	}
	var ms []member
	for i := 1; i <= 3; i++ {
		p := n.addPod(t, fmt.Sprintf("p%d", i), fmt.Sprintf("sfh-upg%d", i), fmt.Sprintf("10.66.0.8%d/24", i))
		spoofed := fmt.Sprintf("10.66.0.9%d", i)
		if _, err := p.In("ip", "addr", "add", spoofed+"/32", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, member{p, fmt.Sprintf("sf-upg-%d", i), spoofed})
	}
	p1, p2, p3 := ms[0], ms[1], ms[2]
	keys := map[string]any{"masquerade": true, "antiSpoofing": true, "uplink": "eth0"}
	conf := func(be string, m member) []byte { return config(t, "1.1.0", with(be, keys), m.prevResult(t)) }
	where := func(m member) (ipt, nft bool) {
		return n.attState(t, BackendIPTables, testNet, m.cid) != "", n.attState(t, BackendNftables, testNet, m.cid) != ""
	}
	works := func(m member) {
		t.Helper()
		if !m.ping(t, ext, "") {
			t.Fatalf("%s cannot reach the external address (masquerade)", m.cid)
		}
		if m.ping(t, gateway, m.spoofed) {
			t.Fatalf("%s: a spoofed source gets through", m.cid)
		}
	}

	n.stage().Add(t, p1.cid, p1.pod.NS, conf(BackendIPTables, p1)).OK(t)
	var pick, why string
	if err := cniutil.InNS(n.NS.NetNS, func(ns.NetNS) error { pick, why = autoBackend(); return nil }); err != nil {
		t.Fatal(err)
	}
	if pick != BackendNftables {
		t.Fatalf("auto's node rule picks %s (%s) here: the test could not show anything", pick, why)
	}

	n.stage().Check(t, p1.cid, p1.pod.NS, conf(BackendAuto, p1)).OK(t)
	n.stage().Add(t, p2.cid, p2.pod.NS, conf(BackendAuto, p2)).OK(t)
	if ipt, nft := where(p2); !ipt || nft {
		t.Fatalf("auto ADD of a network with an iptables attachment: iptables=%v nftables=%v, want iptables only", ipt, nft)
	}
	n.stage().Check(t, p2.cid, p2.pod.NS, conf(BackendAuto, p2)).OK(t)
	works(p1)
	works(p2)
	if !p1.ping(t, strings.Split(p2.addr, "/")[0], "") {
		t.Fatal("p1 cannot reach p2")
	}

	// DEL as after a deleted sandbox: no prevResult, no netns.
	n.stage().Del(t, p1.cid, nil, config(t, "1.1.0", with(BackendAuto, nil), nil)).OK(t)
	if ipt, nft := where(p1); ipt || nft {
		t.Fatalf("DEL with auto left p1: iptables=%v nftables=%v", ipt, nft)
	}
	if !p1.ping(t, gateway, p1.spoofed) {
		t.Fatal("p1's spoofed source still dropped after DEL")
	}

	// A network split across both backends (nftables forced for p3):
	// GC with an empty list clears both.
	n.stage().Add(t, p3.cid, p3.pod.NS, conf(BackendNftables, p3)).OK(t)
	n.stage().GC(t, testutil.Conf("1.1.0", testNet, plugin).With("cni.dev/valid-attachments", []any{}).Bytes()).OK(t)
	for _, m := range ms {
		if ipt, nft := where(m); ipt || nft {
			t.Fatalf("GC left %s: iptables=%v nftables=%v", m.cid, ipt, nft)
		}
	}
	if s := n.save(t); strings.Contains(s, naming.NetworkTag(testNet)) {
		t.Fatalf("GC left rules of the network in iptables:\n%s", s)
	}
	if d := dumpNft(t, n); strings.Contains(d, naming.NftMasqPrefix(testNet)) {
		t.Fatalf("GC left the network's masquerade chain in nftables:\n%s", d)
	}

	// No iptables state of the network left: auto follows the node rule.
	n.stage().Add(t, p3.cid, p3.pod.NS, conf(BackendAuto, p3)).OK(t)
	if ipt, nft := where(p3); ipt || !nft {
		t.Fatalf("auto ADD after the network's iptables state is gone: iptables=%v nftables=%v, want nftables only", ipt, nft)
	}
	n.stage().Check(t, p3.cid, p3.pod.NS, conf(BackendAuto, p3)).OK(t)
	works(p3)
	n.stage().Del(t, p3.cid, p3.pod.NS, conf(BackendAuto, p3)).OK(t)
	if ipt, nft := where(p3); ipt || nft {
		t.Fatalf("DEL left p3: iptables=%v nftables=%v", ipt, nft)
	}
}
