package main

import (
	"net"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// TestReceipt: the index comment gives back the fields planNft's keys
// depend on; one that would not fit the kernel's user data gives no
// index element; an unknown field is refused.
func TestReceipt(t *testing.T) {
	p := &Policy{HostVeth: "veth0a1b2c3d", Bridge: "br-blue", VRF: "vrf-blue", Masquerade: true, AntiSpoofing: true,
		Addrs: []PodAddr{{IP: net.ParseIP("10.1.0.5").To4()}, {IP: net.ParseIP("fd00::5")}}}
	tag := naming.NftTag("blue", "cid", "eth0")
	c := receipt(tag, p)
	gotTag, got, err := parseReceipt(c)
	if err != nil || gotTag != tag || naming.NftTagOf(c) != tag {
		t.Fatalf("parseReceipt(%q) = %q, %v; tagOf %q", c, gotTag, err, naming.NftTagOf(c))
	}
	if !reflect.DeepEqual(planNft("blue", got).elems, planNft("blue", p).elems) {
		t.Fatalf("the receipt %q plans other elements than the policy", c)
	}
	if _, ok := indexEntry(attachment{Network: "blue", ContainerID: "cid", IfName: "eth0"}, p); !ok {
		t.Fatalf("no index element for %q (%d bytes)", c, len(c))
	}
	for range 8 {
		p.Addrs = append(p.Addrs, PodAddr{IP: net.ParseIP("fd00:1111:2222:3333:4444:5555:6666:7777")})
	}
	if e, ok := indexEntry(attachment{Network: "blue", ContainerID: "cid", IfName: "eth0"}, p); ok {
		t.Fatalf("index element with a %d-byte comment", len(e.comment))
	}
	if _, _, err := parseReceipt(tag + " veth=x bogus"); err == nil {
		t.Fatal("an index comment with an unknown field was read")
	}
}

// TestNftIndex: ADD records the attachment in the set "attachments"; DEL
// finds the attachment's elements from that index by key, without
// reading the sets (an element carrying the tag that the index does not
// name is not looked for); without an index element (v0.1.0's
// attachments) DEL finds them by a dump; a repeated ADD with another
// policy replaces the index and removes what the new policy no longer
// has; CHECK names an element another attachment owns.
func TestNftIndex(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sf-idx")
	keys := map[string]any{"masquerade": true, "antiSpoofing": true}
	p1 := n.addPod(t, "p1", "sfh-idx1", "10.66.0.71/24")
	p2 := n.addPod(t, "p2", "sfh-idx2", "10.66.0.72/24")
	conf1 := config(t, "1.1.0", with(BackendNftables, keys), p1.prevResult(t))
	conf2 := config(t, "1.1.0", with(BackendNftables, keys), p2.prevResult(t))
	n.stage().Add(t, "idx-1", p1.NS, conf1).OK(t)
	n.stage().Add(t, "idx-2", p2.NS, conf2).OK(t)
	tag1, tag2 := naming.NftTag(testNet, "idx-1", "eth0"), naming.NftTag(testNet, "idx-2", "eth0")

	index := func(cid string) (string, bool) {
		t.Helper()
		var comment string
		var ok bool
		err := n.NS.NetNS.Do(func(ns.NetNS) error {
			g, err := newElemGetter()
			if err != nil {
				return err
			}
			defer g.Close()
			comment, ok, err = g.comment(setAttach, attachmentKey(attachment{Network: testNet, ContainerID: cid, IfName: "eth0"}))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return comment, ok
	}
	want := tag1 + " veth=sfh-idx1 br=" + bridge + " masquerade antispoofing 10.66.0.71"
	if c, ok := index("idx-1"); !ok || c != want {
		t.Fatalf("index element of idx-1: %q (present %t), want %q", c, ok, want)
	}

	// CHECK: an element of idx-1 that another attachment's tag claims.
	fwd := nftElem{set: setFwd4, key: concat(ipBytes(net.ParseIP("10.66.0.71")), ifnameBytes(bridge))}
	retag := func(tag string) {
		n.nft(t, func(c *nftables.Conn) error {
			if err := deleteElems(c, []nftElem{fwd}); err != nil {
				return err
			}
			if err := c.Flush(); err != nil {
				return err
			}
			return addElems(c, []nftElem{fwd}, tag)
		})
	}
	retag(tag2)
	if e := n.stage().Check(t, "idx-1", p1.NS, conf1).CNIError(t); !strings.Contains(e.Msg, "belongs to") {
		t.Fatalf("CHECK of idx-1 with its fwd4 element under idx-2's tag: %s", e.Msg)
	}
	retag(tag1)
	n.stage().Check(t, "idx-1", p1.NS, conf1).OK(t)

	// A repeated ADD without anti-spoofing: guard and allow elements go,
	// the index says so.
	plain := config(t, "1.1.0", with(BackendNftables, map[string]any{"masquerade": true}), p1.prevResult(t))
	n.stage().Add(t, "idx-1", p1.NS, plain).OK(t)
	if s := n.attState(t, BackendNftables, testNet, "idx-1"); strings.Contains(s, "guard4") || strings.Contains(s, "allow4") {
		t.Fatalf("a repeated ADD without antiSpoofing left:\n%s", s)
	}
	if c, _ := index("idx-1"); strings.Contains(c, "antispoofing") {
		t.Fatalf("index after a repeated ADD without antiSpoofing: %q", c)
	}
	n.stage().Check(t, "idx-1", p1.NS, plain).OK(t)

	// DEL goes by the index: a planted element with idx-1's tag that the
	// index does not name stays; everything else of idx-1 goes.
	planted := nftElem{set: setFwd4, key: concat(ipBytes(net.ParseIP("10.66.0.99")), ifnameBytes(bridge))}
	n.nft(t, func(c *nftables.Conn) error { return addElems(c, []nftElem{planted}, tag1) })
	n.stage().Del(t, "idx-1", p1.NS, plain).OK(t)
	if s := n.attState(t, BackendNftables, testNet, "idx-1"); strings.Count(s, "\n") != 0 || !strings.Contains(s, "0a420063") {
		t.Fatalf("DEL of idx-1 by its index left:\n%s\nwant only the planted fwd4 element", s)
	}
	n.nft(t, func(c *nftables.Conn) error { return deleteElems(c, []nftElem{planted}) })

	// Without its index element, DEL of idx-2 finds its elements by a dump.
	n.nft(t, func(c *nftables.Conn) error {
		return deleteElems(c, []nftElem{{set: setAttach, key: attachmentKey(attachment{Network: testNet, ContainerID: "idx-2", IfName: "eth0"})}})
	})
	if _, ok := index("idx-2"); ok {
		t.Fatal("the index element of idx-2 is still there")
	}
	n.stage().Check(t, "idx-2", p2.NS, conf2).OK(t)
	n.stage().Del(t, "idx-2", p2.NS, conf2).OK(t)
	if s := n.attState(t, BackendNftables, testNet, "idx-2"); s != "" {
		t.Fatalf("DEL of idx-2 without an index element left:\n%s", s)
	}
	n.stage().Del(t, "idx-2", p2.NS, conf2).OK(t)
}

// TestNftIndexUpgrade: v0.1.0's sysctl-firewall (nftables, no index, no
// key byte order on its sets) attached p1; today's ADD of p2 brings the
// new set next to the old ones; both pods masquerade and are anti-spoofed;
// CHECK passes for both; DEL removes both, p1's by the dump.
func TestNftIndexUpgrade(t *testing.T) {
	testutil.RequireRoot(t)
	old := testutil.Stage{Plugin: plugin, In: nil, Dir: testutil.ReleasePlugins(t, testutil.NftIndexRelease)}
	n := newNode(t, "sf-idxu")
	old.In = n.NetNS
	keys := map[string]any{"masquerade": true, "antiSpoofing": true, "uplink": "eth0"}
	p1 := n.addPod(t, "p1", "sfh-idxu1", "10.66.0.81/24")
	p2 := n.addPod(t, "p2", "sfh-idxu2", "10.66.0.82/24")
	conf1 := config(t, "1.1.0", with(BackendNftables, keys), p1.prevResult(t))
	conf2 := config(t, "1.1.0", with(BackendNftables, keys), p2.prevResult(t))
	old.Add(t, "idxu-1", p1.NS, conf1).OK(t)
	if s := n.attState(t, BackendNftables, testNet, "idxu-1"); strings.Contains(s, "attachments") || s == "" {
		t.Fatalf("v0.1.0's ADD made:\n%s\nwant elements and no index", s)
	}
	n.stage().Add(t, "idxu-2", p2.NS, conf2).OK(t)
	for _, p := range []*pod{p1, p2} {
		if !p.ping(t, netsim.UnderlayGateway, "") {
			t.Fatalf("%s cannot reach the external address after the upgrade", p.hostVeth)
		}
		if _, err := p.In("ip", "addr", "add", "10.66.0.98/32", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		if p.ping(t, gateway, "10.66.0.98") {
			t.Fatalf("%s: a spoofed source gets through after the upgrade", p.hostVeth)
		}
		if _, err := p.In("ip", "addr", "del", "10.66.0.98/32", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	n.stage().Check(t, "idxu-1", p1.NS, conf1).OK(t)
	n.stage().Check(t, "idxu-2", p2.NS, conf2).OK(t)
	n.stage().Del(t, "idxu-1", p1.NS, conf1).OK(t)
	n.stage().Del(t, "idxu-2", p2.NS, conf2).OK(t)
	for _, cid := range []string{"idxu-1", "idxu-2"} {
		if s := n.attState(t, BackendNftables, testNet, cid); s != "" {
			t.Fatalf("DEL of %s left:\n%s", cid, s)
		}
	}
}

// TestNftListReadable: nft shows our sets' keys as the interface names
// and marks they are (single-key sets carry the key byte order).
func TestNftListReadable(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("no nft binary (Debian package nftables; scripts/install-deps.sh installs it)")
	}
	n := newNode(t, "sf-nftl")
	p := n.addPod(t, "p1", "sfh-nftl1", "10.66.0.61/24")
	keys := map[string]any{"masquerade": true, "antiSpoofing": true, "conntrackZone": 61}
	n.stage().Add(t, "nftl-1", p.NS, config(t, "1.1.0", with(BackendNftables, keys), p.prevResult(t))).OK(t)
	out := n.sh(t, "nft", "list", "ruleset")
	key := naming.NftAttachmentKey(testNet, "nftl-1", "eth0")
	for _, want := range []string{
		`"sfh-nftl1" comment "` + naming.NftTag(testNet, "nftl-1", "eth0"),                                         // guard4
		`"` + key + `" comment "` + naming.NftTag(testNet, "nftl-1", "eth0") + " ",                                 // attachments
		`"` + bridge + `" comment "` + naming.NftZoneTag(testNet) + `" : jump ` + naming.NftZoneMarkChain(testNet), // markjump
		`0x003d0000 comment "` + naming.NftZoneTag(testNet) + `" : jump ` + naming.NftZoneRestoreChain(testNet),    // restorejump: 61<<16
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list ruleset has no %s:\n%s", want, out)
		}
	}
}

// FuzzParseReceipt: an index comment is read back from the kernel, so any
// string must parse or be refused without a panic; one that parses plans
// elements, and its policy written again reads back the same.
func FuzzParseReceipt(f *testing.F) {
	tag := naming.NftTag("blue", "cid", "eth0")
	f.Add(tag + " veth=veth0a1b2c3d br=br-blue vrf=vrf-blue masquerade antispoofing 10.1.0.5 fd00::5")
	f.Add(tag)
	f.Add(tag + " veth= br==x 1.2.3.4 ::ffff:1.2.3.4 masquerade masquerade")
	f.Add(" \t ")
	f.Fuzz(func(t *testing.T, comment string) {
		gotTag, p, err := parseReceipt(comment)
		if err != nil {
			return
		}
		planNft("blue", p)
		tag2, p2, err := parseReceipt(receipt(gotTag, p))
		if err != nil || tag2 != gotTag || p2.HostVeth != p.HostVeth || p2.Bridge != p.Bridge || p2.VRF != p.VRF ||
			p2.Masquerade != p.Masquerade || p2.AntiSpoofing != p.AntiSpoofing || len(p2.Addrs) != len(p.Addrs) {
			t.Fatalf("%q: written again it reads %q %+v, %v; want %q %+v", comment, tag2, p2, err, gotTag, p)
		}
		for i := range p.Addrs {
			if !p.Addrs[i].IP.Equal(p2.Addrs[i].IP) {
				t.Fatalf("%q: address %d reads back as %v, want %v", comment, i, p2.Addrs[i].IP, p.Addrs[i].IP)
			}
		}
	})
}
