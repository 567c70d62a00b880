package main

import (
	"net"
	"reflect"
	"testing"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

func addr(t *testing.T, cidr string) PodAddr {
	t.Helper()
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		t.Fatal(err)
	}
	return PodAddr{IP: ip, Subnet: n}
}

func TestRenderRules(t *testing.T) {
	v4 := addr(t, "10.22.0.5/24")
	v6 := addr(t, "fd00:22::5/64")
	accept4 := [][]string{
		{"-d", "10.22.0.5/32", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		{"-s", "10.22.0.5/32", "-j", "ACCEPT"},
	}
	accept6 := [][]string{
		{"-d", "fd00:22::5/128", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		{"-s", "fd00:22::5/128", "-j", "ACCEPT"},
	}
	for name, tc := range map[string]struct {
		in   RuleInput
		want Rules
	}{
		"no addresses": {RuleInput{Masquerade: true, AntiSpoofing: true, HostVeth: "vx1", Bridge: "br0"}, Rules{}},
		"v4 filter only": {RuleInput{Addrs: []PodAddr{v4}, HostVeth: "vx1", Bridge: "br0"},
			Rules{V4: {"filter": accept4}}},
		"v4 masquerade default uplink": {RuleInput{Addrs: []PodAddr{v4}, HostVeth: "vx1", Bridge: "br0", Masquerade: true},
			Rules{V4: {"filter": accept4, "nat": {{"-s", "10.22.0.5/32", "!", "-d", "10.22.0.0/24", "!", "-o", "br0", "-j", "MASQUERADE"}}}}},
		"v4 masquerade uplink": {RuleInput{Addrs: []PodAddr{v4}, HostVeth: "vx1", Bridge: "br0", Masquerade: true, Uplink: "eth0"},
			Rules{V4: {"filter": accept4, "nat": {{"-s", "10.22.0.5/32", "!", "-d", "10.22.0.0/24", "-o", "eth0", "-j", "MASQUERADE"}}}}},
		"v4 antispoofing bridged": {RuleInput{Addrs: []PodAddr{v4}, HostVeth: "vx1", Bridge: "br0", AntiSpoofing: true},
			Rules{V4: {"filter": accept4, "raw": {{"-m", "physdev", "--physdev-in", "vx1", "!", "-s", "10.22.0.5/32", "-j", "DROP"}}}}},
		"v4 antispoofing routed": {RuleInput{Addrs: []PodAddr{v4}, HostVeth: "vx1", AntiSpoofing: true},
			Rules{V4: {"filter": accept4, "raw": {{"-i", "vx1", "!", "-s", "10.22.0.5/32", "-j", "DROP"}}}}},
		"antispoofing without veth": {RuleInput{Addrs: []PodAddr{v4}, AntiSpoofing: true},
			Rules{V4: {"filter": accept4}}},
		"v6 all": {RuleInput{Addrs: []PodAddr{v6}, HostVeth: "vx1", Bridge: "br0", AntiSpoofing: true, Masquerade: true},
			Rules{V6: {
				"filter": accept6,
				"nat":    {{"-s", "fd00:22::5/128", "!", "-d", "fd00:22::/64", "!", "-o", "br0", "-j", "MASQUERADE"}},
				"raw": {
					{"-m", "physdev", "--physdev-in", "vx1", "-s", "fe80::/10", "-j", "RETURN"},
					{"-m", "physdev", "--physdev-in", "vx1", "-s", "::/128", "-j", "RETURN"},
					{"-m", "physdev", "--physdev-in", "vx1", "!", "-s", "fd00:22::5/128", "-j", "DROP"},
				},
			}}},
		"dual stack, two v4": {RuleInput{Addrs: []PodAddr{v4, addr(t, "10.23.0.7/16"), v6}, HostVeth: "vx1", Bridge: "br0", AntiSpoofing: true},
			Rules{
				V4: {
					"filter": append(append([][]string{}, accept4...),
						[]string{"-d", "10.23.0.7/32", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
						[]string{"-s", "10.23.0.7/32", "-j", "ACCEPT"}),
					"raw": {
						{"-m", "physdev", "--physdev-in", "vx1", "-s", "10.22.0.5/32", "-j", "RETURN"},
						{"-m", "physdev", "--physdev-in", "vx1", "!", "-s", "10.23.0.7/32", "-j", "DROP"},
					},
				},
				V6: {
					"filter": accept6,
					"raw": {
						{"-m", "physdev", "--physdev-in", "vx1", "-s", "fe80::/10", "-j", "RETURN"},
						{"-m", "physdev", "--physdev-in", "vx1", "-s", "::/128", "-j", "RETURN"},
						{"-m", "physdev", "--physdev-in", "vx1", "!", "-s", "fd00:22::5/128", "-j", "DROP"},
					},
				},
			}},
	} {
		t.Run(name, func(t *testing.T) {
			got := renderRules(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestJumps(t *testing.T) {
	got := attachmentJump("net1", "cid", "eth0")
	want := []string{"-m", "comment", "--comment", naming.AttachmentTag("net1", "cid", "eth0"), "-j", naming.AttachmentChain("net1", "cid", "eth0")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	for _, h := range Hooks {
		if j := projectJump(h); len(j) != 2 || j[1] != h.Project {
			t.Fatalf("project jump %v", j)
		}
	}
}

func TestParseTags(t *testing.T) {
	c1 := naming.AttachmentChain("net1", "c1", "eth0")
	lines := []string{
		"-N VXVRF-FORWARD",
		`-A VXVRF-FORWARD -m comment --comment "vxvrf:net1:c1:eth0" -j ` + c1,
		`-A VXVRF-FORWARD -m comment --comment vxvrf:net1:c2.x-y:net1 -j VXVRF-0000000000000000`,
		`-A VXVRF-FORWARD -m comment --comment "vxvrf:net10:c3:eth0" -j VXVRF-1111111111111111`,
		`-A VXVRF-FORWARD -m comment --comment "vxvrf:other:c4:eth0" -j VXVRF-2222222222222222`,
		`-A VXVRF-FORWARD -m comment --comment "vxvrf:net1:broken" -j VXVRF-3333333333333333`,
		`-A VXVRF-FORWARD -j ACCEPT`,
	}
	got := parseTags(lines, "net1")
	want := []cniutil.Attachment{{ContainerID: "c1", IfName: "eth0"}, {ContainerID: "c2.x-y", IfName: "net1"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if got := parseTags(lines, "none"); len(got) != 0 {
		t.Fatalf("other network: %v", got)
	}
}
