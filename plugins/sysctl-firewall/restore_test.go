package main

import (
	"os"
	"path/filepath"
	"regexp"
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

func TestRenderRestore(t *testing.T) {
	a := attachment{Network: "net1", ContainerID: "cid", IfName: "eth0"}
	c := naming.AttachmentChain("net1", "cid", "eth0")
	tag := naming.AttachmentTag("net1", "cid", "eth0")
	rules := map[string][][]string{
		"filter": {{"-s", "10.0.0.5/32", "-j", "ACCEPT"}},
		"raw":    {{"-i", "vx1", "!", "-s", "10.0.0.5/32", "-j", "DROP"}},
	}
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
	if got := renderAdd(a, rules, nil).text(); got != want {
		t.Fatalf("renderAdd:\n%s\nwant:\n%s", got, want)
	}

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
	if got := renderDel(a, []string{"filter", "nat"}, []string{"raw"}).text(); got != want {
		t.Fatalf("renderDel:\n%s\nwant:\n%s", got, want)
	}

	// A repeated ADD whose config dropped antiSpoofing, on a node missing
	// the nat project chain: the filter chain is flushed and refilled (its
	// jump is there), nat's project chain and hook are created, the raw
	// chain and jump go.
	rules["nat"] = [][]string{{"-s", "10.0.0.5/32", "-j", "MASQUERADE"}}
	delete(rules, "raw")
	st := map[string]*tableState{
		"filter": {chain: true, jump: true, project: true, hooked: map[string]bool{"VXVRF-FORWARD": true}},
		"nat":    {hooked: map[string]bool{}},
		"raw":    {chain: true, jump: true},
	}
	want = strings.Join([]string{
		"*filter",
		":" + c + " - [0:0]",
		"-A " + c + " -s 10.0.0.5/32 -j ACCEPT",
		"COMMIT",
		"*nat",
		":VXVRF-POSTROUTING - [0:0]",
		"-I POSTROUTING 1 -j VXVRF-POSTROUTING",
		":" + c + " - [0:0]",
		"-A " + c + " -s 10.0.0.5/32 -j MASQUERADE",
		"-A VXVRF-POSTROUTING -m comment --comment " + tag + " -j " + c,
		"COMMIT",
		"*raw",
		"-D VXVRF-PREROUTING -m comment --comment " + tag + " -j " + c,
		"-F " + c,
		"-X " + c,
		"COMMIT",
	}, "\n") + "\n"
	if got := renderConverge(a, rules, nil, st).text(); got != want {
		t.Fatalf("renderConverge:\n%s\nwant:\n%s", got, want)
	}
	// DEL of what is listed: only the tables that have the chain.
	want = strings.Join([]string{
		"*raw",
		"-D VXVRF-PREROUTING -m comment --comment " + tag + " -j " + c,
		"-F " + c,
		"-X " + c,
		"COMMIT",
		"*filter",
		"-F " + c,
		"-X " + c,
		"COMMIT",
	}, "\n") + "\n"
	st["filter"].jump = false
	if got := renderDelFound(a, st).text(); got != want {
		t.Fatalf("renderDelFound:\n%s\nwant:\n%s", got, want)
	}
}

// TestQuoting: a token restore's parser would split or misread (an
// interface name may hold quotes, backslashes, '#', spaces are refused by
// the kernel) is double-quoted with '\' and '"' escaped; one that cannot
// be carried at all (a newline) is an error, not a broken batch.
func TestQuoting(t *testing.T) {
	s := &script{}
	s.cmd("raw", "-A", "C", "-i", `ve"th\#1`, "-m", "comment", "--comment", "vxvrf:n:c:eth'0", "-j", "DROP")
	want := "*raw\n-A C -i \"ve\\\"th\\\\#1\" -m comment --comment \"vxvrf:n:c:eth'0\" -j DROP\nCOMMIT\n"
	if got := s.text(); got != want || s.err != nil {
		t.Fatalf("got %q (%v), want %q", got, s.err, want)
	}
	bad := &script{}
	bad.cmd("raw", "-A", "C", "-i", "a\nb")
	if bad.err == nil {
		t.Fatal("a newline in a token was not refused")
	}
	if err := (&xtables{restore: "/nonexistent"}).run(bad); err == nil || !strings.Contains(err.Error(), "cannot be passed") {
		t.Fatalf("run of a refused script: %v", err)
	}
}

// TestOneMechanism: the backend never reads restore's error output to
// choose what to do: no code of the package (tests aside) refers to a
// failing line, and go-iptables is only used to find the binary and list
// chains (no call that changes rules).
func TestOneMechanism(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	changing := regexp.MustCompile(`\bipt\.(Append|AppendUnique|Insert|InsertUnique|Delete|DeleteIfExists|DeleteById|NewChain|ClearChain|ClearAndDeleteChain|DeleteChain|RenameChain|Replace|ChangePolicy|ClearAll|DeleteAll|Exists)\(`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		for _, bad := range []string{"failedLine", "line:?", "Error occurred at line"} {
			if strings.Contains(src, bad) {
				t.Errorf("%s reads restore's error output (%q)", f, bad)
			}
		}
		if m := changing.FindString(src); m != "" {
			t.Errorf("%s changes or checks rules through go-iptables: %s", f, m)
		}
	}
}
