// Package vrf holds the tests that need a kernel with VRF (CONFIG_NET_VRF).
// On a kernel without it they skip; `make test-vrf` runs them in a VM
// (scripts/vmtest.sh) where VXVRF_REQUIRE_VRF=1 turns a skip into a failure.
// Every test name contains "VRF": scripts/test-vrf.sh selects them by that.
package vrf

import (
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// in runs a command in n and fails the test on error.
func in(t *testing.T, n *netsim.NS, name string, args ...string) string {
	t.Helper()
	out, err := n.In(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// routes lists the routes of one table in n (family: netlink.FAMILY_V4/V6).
func routes(t *testing.T, n *netsim.NS, family, table int) []netlink.Route {
	t.Helper()
	var rs []netlink.Route
	err := n.Do(func(ns.NetNS) error {
		var err error
		rs, err = netlinksafe.RouteListFiltered(family, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		return err
	})
	if err != nil {
		t.Fatalf("list routes of table %d in %s: %v", table, n.Name, err)
	}
	return rs
}

// hasRoute reports whether rs holds a route to dst (CIDR) out of link index
// dev (0: any).
func hasRoute(rs []netlink.Route, dst string, dev int) bool {
	for _, r := range rs {
		if r.Dst != nil && r.Dst.String() == dst && (dev == 0 || r.LinkIndex == dev) {
			return true
		}
	}
	return false
}

func linkIn(t *testing.T, n *netsim.NS, name string) netlink.Link {
	t.Helper()
	var l netlink.Link
	err := n.Do(func(ns.NetNS) error {
		var err error
		l, err = netlinksafe.LinkByName(name)
		return err
	})
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, n.Name, err)
	}
	return l
}

// TestKernelVRF proves the harness itself: the kernel creates a VRF with
// its table, a bridge enslaved to it puts its connected route in that table
// and not in main, and the guest's iproute2 and ping work in namespaces.
func TestKernelVRF(t *testing.T) {
	lab, n := testutil.NewNode(t, "vm-k")
	testutil.RequireVRF(t, n.NS)
	p := testutil.AddNS(t, lab, "p1")

	err := n.Do(func(ns.NetNS) error {
		if err := netlink.LinkAdd(&netlink.Vrf{LinkAttrs: netlink.LinkAttrs{Name: "kv"}, Table: 1234}); err != nil {
			return fmt.Errorf("add vrf: %w", err)
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "kb"}}); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := linkIn(t, n.NS, "kv").(*netlink.Vrf)
	if !ok || v.Table != 1234 {
		t.Fatalf("vrf kv reads back as %#v, want table 1234", linkIn(t, n.NS, "kv"))
	}
	for _, c := range [][]string{
		{"link", "set", "kv", "up"},
		{"link", "set", "kb", "master", "kv"},
		{"addr", "add", "10.77.0.1/24", "dev", "kb"},
		{"link", "set", "kb", "up"},
		{"link", "add", "kh", "type", "veth", "peer", "name", "eth0", "netns", p.Name},
		{"link", "set", "kh", "master", "kb"},
		{"link", "set", "kh", "up"},
	} {
		in(t, n.NS, "ip", c...)
	}
	in(t, p, "ip", "addr", "add", "10.77.0.2/24", "dev", "eth0")
	in(t, p, "ip", "link", "set", "eth0", "up")

	kb := linkIn(t, n.NS, "kb")
	if kb.Attrs().MasterIndex != v.Index {
		t.Fatalf("bridge master = %d, want vrf %d", kb.Attrs().MasterIndex, v.Index)
	}
	if rs := routes(t, n.NS, netlink.FAMILY_V4, 1234); !hasRoute(rs, "10.77.0.0/24", kb.Attrs().Index) {
		t.Fatalf("connected route 10.77.0.0/24 not in table 1234: %v", rs)
	}
	if rs := routes(t, n.NS, netlink.FAMILY_V4, unix.RT_TABLE_MAIN); hasRoute(rs, "10.77.0.0/24", 0) {
		t.Fatalf("connected route leaked into main: %v", rs)
	}
	if out := in(t, n.NS, "ip", "-d", "link", "show", "kv"); !strings.Contains(out, "vrf table 1234") {
		t.Fatalf("ip -d link show kv: %s", out)
	}
	// Inside the VRF the pod answers; from the default VRF it is unreachable.
	in(t, n.NS, "ping", "-c1", "-W5", "-I", "kv", "10.77.0.2")
	if out, err := n.In("ping", "-c1", "-W1", "10.77.0.2"); err == nil {
		t.Fatalf("ping outside the VRF reached the pod: %s", out)
	}
	in(t, p, "ping", "-c1", "-W5", "10.77.0.1")
}

// TestGuestIptablesVRF proves iptables (nft and legacy) work where the VRF
// tests run, so the firewall assertions can run there too.
func TestGuestIptablesVRF(t *testing.T) {
	_, n := testutil.NewNode(t, "vm-ipt")
	testutil.RequireVRF(t, n.NS)
	for _, ipt := range []string{"iptables", "ip6tables", "iptables-legacy"} {
		in(t, n.NS, ipt, "-w", "-t", "filter", "-N", "VMT")
		in(t, n.NS, ipt, "-w", "-t", "filter", "-A", "VMT", "-m", "comment", "--comment", "vmtest-tag",
			"-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT")
		if out := in(t, n.NS, ipt, "-w", "-S", "VMT"); !strings.Contains(out, "vmtest-tag") {
			t.Fatalf("%s -S VMT: %s", ipt, out)
		}
	}
	in(t, n.NS, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-j", "MASQUERADE")
	in(t, n.NS, "iptables", "-w", "-t", "raw", "-A", "PREROUTING", "-i", "eth0", "-j", "CT", "--zone", "7")
}
