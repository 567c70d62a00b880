package kernel

import (
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/vxvrf/cni/internal/testutil"
)

// TestLinksOfKind: only the links of the kind come back (the kernel
// filters; the kind is checked here too), none for a kind with no link;
// LinksOfMaster: only the ports of that bridge.
func TestLinksOfKind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	_, node := testutil.NewNode(t, "kdump")
	for _, c := range [][]string{
		{"link", "add", "br-k1", "type", "bridge"},
		{"link", "add", "br-k2", "type", "bridge"},
		{"link", "add", "vk1", "type", "veth", "peer", "name", "vk1p"},
		{"link", "add", "vk2", "type", "veth", "peer", "name", "vk2p"},
		{"link", "set", "vk1", "master", "br-k1"},
	} {
		if out, err := node.In("ip", c...); err != nil {
			t.Fatalf("ip %v: %v %s", c, err, out)
		}
	}
	names := func(kind string) string {
		t.Helper()
		var ls []netlink.Link
		err := node.Do(func(ns.NetNS) error {
			var err error
			ls, err = LinksOfKind(kind)
			return err
		})
		if err != nil {
			t.Fatalf("LinksOfKind(%q): %v", kind, err)
		}
		var out []string
		for _, l := range ls {
			if n := l.Attrs().Name; strings.HasPrefix(n, "vk") || strings.HasPrefix(n, "br-k") {
				out = append(out, n) // not the node's own uplink
			}
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	var br []netlink.Link
	var ports []string
	err := node.Do(func(ns.NetNS) error {
		var err error
		if br, err = LinksOfKind("bridge"); err != nil {
			return err
		}
		for _, b := range br {
			if b.Attrs().Name != "br-k1" {
				continue
			}
			ls, err := LinksOfMaster(b.Attrs().Index)
			if err != nil {
				return err
			}
			for _, l := range ls {
				ports = append(ports, l.Attrs().Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ports, ",") != "vk1" {
		t.Errorf("LinksOfMaster(br-k1) = %v, want [vk1]", ports)
	}
	for kind, want := range map[string]string{
		"bridge": "br-k1,br-k2",
		"veth":   "vk1,vk1p,vk2,vk2p",
		"vxlan":  "",
	} {
		if got := names(kind); got != want {
			t.Errorf("LinksOfKind(%q) = %q, want %q", kind, got, want)
		}
	}
}

// TestTableRoutes: the routes of the asked table only, of both families,
// not the main table's nor the local table's.
func TestTableRoutes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	_, node := testutil.NewNode(t, "kroute")
	for _, c := range [][]string{
		{"link", "add", "br-k", "type", "bridge"},
		{"link", "set", "br-k", "up"},
		{"addr", "add", "10.61.0.1/24", "dev", "br-k"},
		{"-6", "addr", "add", "fd61::1/64", "dev", "br-k", "nodad"},
		{"route", "add", "10.62.0.0/24", "dev", "br-k", "table", "100"},
		{"-6", "route", "add", "fd62::/64", "dev", "br-k", "table", "100"},
		{"route", "add", "10.63.0.0/24", "dev", "br-k", "table", "300"},
	} {
		if out, err := node.In("ip", c...); err != nil {
			t.Fatalf("ip %v: %v %s", c, err, out)
		}
	}
	dsts := func(family, table int) string {
		t.Helper()
		var rs []netlink.Route
		err := node.Do(func(ns.NetNS) error {
			var err error
			rs, err = TableRoutes(family, table)
			return err
		})
		if err != nil {
			t.Fatalf("TableRoutes(%d, %d): %v", family, table, err)
		}
		var out []string
		for _, r := range rs {
			if r.Table != table {
				t.Errorf("TableRoutes(%d, %d) returned a route of table %d: %s", family, table, r.Table, r)
			}
			if r.Dst != nil && (strings.HasPrefix(r.Dst.String(), "10.6") || strings.HasPrefix(r.Dst.String(), "fd6")) {
				out = append(out, r.Dst.String())
			}
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	for _, c := range []struct {
		family, table int
		want          string
	}{
		{netlink.FAMILY_ALL, 100, "10.62.0.0/24,fd62::/64"},
		{netlink.FAMILY_V4, 100, "10.62.0.0/24"},
		{netlink.FAMILY_V6, 100, "fd62::/64"},
		{netlink.FAMILY_ALL, 300, "10.63.0.0/24"},
		{netlink.FAMILY_ALL, 254, "10.61.0.0/24,fd61::/64"},
	} {
		if got := dsts(c.family, c.table); got != c.want {
			t.Errorf("TableRoutes(%d, %d) = %q, want %q", c.family, c.table, got, c.want)
		}
	}
}

// TestLinkAddrs: the addresses of that link only, by family.
func TestLinkAddrs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	_, node := testutil.NewNode(t, "kaddr")
	for _, c := range [][]string{
		{"link", "add", "br-ka", "type", "bridge"},
		{"link", "add", "br-kb", "type", "bridge"},
		{"addr", "add", "10.64.0.1/24", "dev", "br-ka"},
		{"addr", "add", "10.64.1.1/24", "dev", "br-ka"},
		{"-6", "addr", "add", "fd64::1/64", "dev", "br-ka", "nodad"},
		{"addr", "add", "10.65.0.1/24", "dev", "br-kb"},
		{"-6", "addr", "add", "fd65::1/64", "dev", "br-kb", "nodad"},
	} {
		if out, err := node.In("ip", c...); err != nil {
			t.Fatalf("ip %v: %v %s", c, err, out)
		}
	}
	addrs := func(family int) string {
		t.Helper()
		var out []string
		err := node.Do(func(ns.NetNS) error {
			l, err := netlinksafe.LinkByName("br-ka")
			if err != nil {
				return err
			}
			ips, err := LinkAddrs(l.Attrs().Index, family)
			for _, ip := range ips {
				out = append(out, ip.String())
			}
			return err
		})
		if err != nil {
			t.Fatalf("LinkAddrs(br-ka, %d): %v", family, err)
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	for family, want := range map[int]string{
		netlink.FAMILY_ALL: "10.64.0.1,10.64.1.1,fd64::1",
		netlink.FAMILY_V4:  "10.64.0.1,10.64.1.1",
		netlink.FAMILY_V6:  "fd64::1",
	} {
		if got := addrs(family); got != want {
			t.Errorf("LinkAddrs(br-ka, %d) = %q, want %q", family, got, want)
		}
	}
}
