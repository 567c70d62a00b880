package main

import (
	"net"
	"reflect"
	"testing"

	"github.com/vxvrf/cni/pkg/naming"
)

func podAddr(cidr string) PodAddr {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		panic(err)
	}
	return PodAddr{IP: ip, Subnet: n}
}

// TestPolicy: what the policy allows, whatever the backend.
func TestPolicy(t *testing.T) {
	p := &Policy{
		Addrs:        []PodAddr{podAddr("10.0.0.5/24"), podAddr("fd00::5/64"), podAddr("fd00::6/64")},
		HostVeth:     "veth1",
		Bridge:       "br0",
		AntiSpoofing: true,
	}
	if got := p.Families(); !reflect.DeepEqual(got, []Family{V4, V6}) {
		t.Fatalf("families %v", got)
	}
	if p.InDev() != "br0" || !p.Spoofable() {
		t.Fatalf("in-dev %q spoofable %v", p.InDev(), p.Spoofable())
	}
	var got []string
	for _, n := range p.Allowed(V6) {
		got = append(got, n.String())
	}
	if want := []string{"fe80::/10", "::/128", "fd00::5/128", "fd00::6/128"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("allowed v6 %v, want %v", got, want)
	}
	if a := p.Allowed(V4); len(a) != 1 || a[0].String() != "10.0.0.5/32" {
		t.Fatalf("allowed v4 %v", a)
	}
	routed := &Policy{Addrs: p.Addrs[:1], HostVeth: "veth1"}
	if routed.InDev() != "veth1" || routed.Spoofable() {
		t.Fatalf("routed: in-dev %q spoofable %v", routed.InDev(), routed.Spoofable())
	}
	if (&Policy{AntiSpoofing: true}).Spoofable() {
		t.Fatal("anti-spoofing without a veth")
	}
}

// TestPlanNft: the nftables elements of an attachment, and the
// masquerade chains they jump to.
func TestPlanNft(t *testing.T) {
	p := &Policy{
		Addrs:        []PodAddr{podAddr("10.0.0.5/24"), podAddr("fd00::5/64")},
		HostVeth:     "veth1",
		Bridge:       "br0",
		Masquerade:   true,
		AntiSpoofing: true,
	}
	plan := planNft("net", p)
	type el struct{ set, key, verdict string }
	var got []el
	for _, e := range plan.elems {
		b := ""
		if e.set.bridge {
			b = "bridge "
		}
		got = append(got, el{b + e.set.name, string(e.key), e.verdict})
	}
	v4 := string(net.ParseIP("10.0.0.5").To4())
	v6 := string(net.ParseIP("fd00::5").To16())
	br, veth := string(ifnameBytes("br0")), string(ifnameBytes("veth1"))
	m4 := naming.NftMasqChain("net", "ipv4 10.0.0.0/24 ! br0")
	m6 := naming.NftMasqChain("net", "ipv6 fd00::/64 ! br0")
	want := []el{
		{"fwd4", v4 + br, ""}, {"masq4", v4 + br, m4},
		{"fwd6", v6 + br, ""}, {"masq6", v6 + br, m6},
		{"bridge guard4", veth, ""}, {"bridge allow4", veth + v4, ""},
		{"bridge guard6", veth, ""}, {"bridge allow6", veth + v6, ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("elements\n got  %q\n want %q", got, want)
	}
	if len(plan.masq) != 2 || plan.masq[m4].oif != "br0" || !plan.masq[m4].notOif {
		t.Fatalf("masquerade chains %+v", plan.masq)
	}
	// Routed with an uplink: forward keyed by the host veth, masquerade
	// out of the uplink, anti-spoofing in the inet table.
	routed := planNft("net", &Policy{Addrs: p.Addrs[:1], HostVeth: "veth1", Uplink: "eth0", Masquerade: true, AntiSpoofing: true})
	if e := routed.elems[0]; e.set.name != "fwd4" || string(e.key) != v4+veth {
		t.Fatalf("routed forward element %q", e.key)
	}
	for _, e := range routed.elems {
		if e.set.bridge {
			t.Fatalf("routed pod has a bridge-table element in %s", e.set.name)
		}
	}
	for _, r := range routed.masq {
		if r.oif != "eth0" || r.notOif {
			t.Fatalf("routed masquerade %+v", r)
		}
	}
	// Nothing asked: forward elements only.
	if bare := planNft("net", &Policy{Addrs: p.Addrs}); len(bare.elems) != 2 || len(bare.masq) != 0 {
		t.Fatalf("bare plan %+v", bare)
	}
}

// TestBackendNames: the values of "backend".
func TestBackendNames(t *testing.T) {
	for _, ok := range []string{"", "auto", "nftables", "iptables"} {
		if !validBackend(ok) {
			t.Fatalf("%q refused", ok)
		}
	}
	if validBackend("pf") || validBackend("NFTABLES") {
		t.Fatal("unknown backend accepted")
	}
}
