package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxvrf/cni/pkg/naming"
)

func TestFindRestore(t *testing.T) {
	root := t.TempDir()
	sbin := filepath.Join(root, "sbin")
	bin := filepath.Join(root, "bin")
	wrap := filepath.Join(root, "wrap")
	for _, d := range []string{sbin, bin, wrap} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe := func(p string) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	exe(filepath.Join(sbin, "xtables-nft-multi"))
	exe(filepath.Join(sbin, "xtables-legacy-multi"))
	link("xtables-nft-multi", filepath.Join(sbin, "iptables-nft-restore"))
	link("xtables-legacy-multi", filepath.Join(sbin, "iptables-legacy-restore"))
	// The plain restore name points at the other flavour: never take it.
	link("xtables-legacy-multi", filepath.Join(sbin, "iptables-restore"))
	link("../sbin/xtables-nft-multi", filepath.Join(bin, "iptables"))
	link("xtables-legacy-multi", filepath.Join(sbin, "iptables"))
	// ip6tables: nft, only the plain restore name, same flavour.
	link("xtables-nft-multi", filepath.Join(sbin, "ip6tables"))
	link("xtables-nft-multi", filepath.Join(sbin, "ip6tables-restore"))
	exe(filepath.Join(wrap, "iptables"))
	exe(filepath.Join(wrap, "iptables-restore"))
	exe(filepath.Join(wrap, "ip6tables"))

	for _, tc := range []struct{ ipt, cmd, want string }{
		{filepath.Join(bin, "iptables"), "iptables", filepath.Join(sbin, "iptables-nft-restore")},
		{filepath.Join(sbin, "iptables"), "iptables", filepath.Join(sbin, "iptables-legacy-restore")},
		{filepath.Join(sbin, "ip6tables"), "ip6tables", filepath.Join(sbin, "ip6tables-restore")},
		{filepath.Join(wrap, "iptables"), "iptables", filepath.Join(wrap, "iptables-restore")},
		{filepath.Join(wrap, "ip6tables"), "ip6tables", ""},
	} {
		if got := findRestore(tc.ipt, tc.cmd); got != tc.want {
			t.Errorf("findRestore(%s) = %q, want %q", tc.ipt, got, tc.want)
		}
	}
}

func TestFailedLine(t *testing.T) {
	for msg, want := range map[string]int{
		"iptables-restore: line 8 failed\n":                                                                        8,
		"iptables-nft-restore: line 3 failed: Chain already exists.\n":                                             3,
		"iptables-nft-restore v1.8.9 (nf_tables): Chain 'X' does not exist\nError occurred at line: 12\n":          12,
		"iptables-nft-restore v1.8.9 (nf_tables): \nline 3: CHAIN_DEL failed (Device or resource busy): chain X\n": 3,
		"broken\n": 0,
	} {
		got, ok := (&restoreError{err: errors.New("exit status 1"), stderr: msg}).failedLine()
		if got != want || ok != (want != 0) {
			t.Errorf("%q: %d %v, want %d", msg, got, ok, want)
		}
	}
}

func TestRenderRestore(t *testing.T) {
	a := attachment{Network: "net1", ContainerID: "cid", IfName: "eth0"}
	c := naming.AttachmentChain("net1", "cid", "eth0")
	tag := naming.AttachmentTag("net1", "cid", "eth0")
	rules := map[string][][]string{
		"filter": {{"-s", "10.0.0.5/32", "-j", "ACCEPT"}},
		"raw":    {{"-i", "vx1", "!", "-s", "10.0.0.5/32", "-j", "DROP"}},
	}
	s := renderAdd(a, tablesWithRules(rules), rules, nil)
	want := strings.Join([]string{
		"*filter",
		"-C FORWARD -j VXVRF-FORWARD",
		"-N " + c,
		"-A " + c + " -s 10.0.0.5/32 -j ACCEPT",
		"-A VXVRF-FORWARD -m comment --comment " + tag + " -j " + c,
		"COMMIT",
		"*raw",
		"-C PREROUTING -j VXVRF-PREROUTING",
		"-N " + c,
		"-A " + c + " -i vx1 ! -s 10.0.0.5/32 -j DROP",
		"-A VXVRF-PREROUTING -m comment --comment " + tag + " -j " + c,
		"COMMIT",
	}, "\n") + "\n"
	if s.b.String() != want || s.unsafe {
		t.Fatalf("renderAdd:\n%s\nwant:\n%s", s.b.String(), want)
	}
	// Line 3 (-N in filter): nothing committed. Line 9 (-N in raw): filter committed.
	if info, committed, ok := s.at(3); !ok || info.kind != lineNew || info.table != "filter" || len(committed) != 0 {
		t.Fatalf("at(3) = %+v %v %v", info, committed, ok)
	}
	if info, committed, ok := s.at(9); !ok || info.kind != lineNew || info.table != "raw" || len(committed) != 1 || committed[0] != "filter" {
		t.Fatalf("at(9) = %+v %v %v", info, committed, ok)
	}
	if _, _, ok := s.at(13); ok {
		t.Fatal("at(13) beyond the script")
	}

	d := renderDel(a, []string{"filter", "nat"}, []string{"raw"})
	want = strings.Join([]string{
		"*nat",
		"-D VXVRF-POSTROUTING -m comment --comment " + tag + " -j " + c,
		"-F " + c,
		"-X " + c,
		"COMMIT",
		"*filter",
		"-D VXVRF-FORWARD -m comment --comment " + tag + " -j " + c,
		"-F " + c,
		"-X " + c,
		"COMMIT",
		"*raw",
		":" + c + " - [0:0]",
		"-X " + c,
		"COMMIT",
	}, "\n") + "\n"
	if d.b.String() != want {
		t.Fatalf("renderDel:\n%s\nwant:\n%s", d.b.String(), want)
	}

	// An interface name restore's parser would misread: per-rule path.
	q := attachment{Network: "net1", ContainerID: "cid", IfName: `e"th0`}
	if !renderDel(q, []string{"filter"}, nil).unsafe {
		t.Fatal("quote in ifname not flagged")
	}
}
