package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxvrf/cni/internal/testutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// TestLegacyFlavour: with iptables resolving to xtables-legacy-multi (as
// after update-alternatives --set iptables iptables-legacy), the batch path
// uses the legacy restore too: the rules land in the legacy tables, none in
// nf_tables, and ADD, repeated ADD (changes nothing), CHECK, DEL, DEL
// behave as with nft.
func TestLegacyFlavour(t *testing.T) {
	dir, env := legacyPath(t)
	for _, cmd := range []string{"iptables", "ip6tables"} {
		// The plugin must pick <cmd>-legacy-restore, not <cmd>-restore
		// (the nft alternative on this machine).
		if got := findRestore(filepath.Join(dir, cmd), cmd); filepath.Base(got) != cmd+"-legacy-restore" {
			t.Fatalf("findRestore(%s) = %q", cmd, got)
		}
	}
	n := newNode(t, "sf-leg")
	p := n.addPod(t, "p", "sfh-leg", "10.66.0.60/24")
	cid := "sf-leg"
	chain := naming.AttachmentChain(testNet, cid, "eth0")
	conf := config(t, "1.1.0", map[string]any{"masquerade": true, "antiSpoofing": true}, p.prevResult(t))
	n.stage(env).Add(t, cid, p.NS, conf).OK(t)
	save := n.sh(t, "iptables-legacy-save")
	for _, want := range []string{
		"-A FORWARD -j VXVRF-FORWARD",
		"-A POSTROUTING -j VXVRF-POSTROUTING",
		"-A PREROUTING -j VXVRF-PREROUTING",
		"-A " + chain + " -s 10.66.0.60/32 -j ACCEPT",
		"-A " + chain + " -s 10.66.0.60/32 ! -d 10.66.0.0/24 ! -o " + bridge + " -j MASQUERADE",
		"-A " + chain + " ! -s 10.66.0.60/32 -m physdev --physdev-in sfh-leg -j DROP",
	} {
		if !strings.Contains(save, want) {
			t.Fatalf("iptables-legacy-save lacks %q:\n%s", want, save)
		}
	}
	if s := n.sh(t, "iptables-nft-save"); strings.Contains(s, "VXVRF") {
		t.Fatalf("rules in nf_tables too:\n%s", s)
	}
	n.stage(env).Check(t, cid, p.NS, conf).OK(t)
	n.stage(env).Add(t, cid, p.NS, conf).OK(t)
	if after := n.sh(t, "iptables-legacy-save"); stripSaveComments(after) != stripSaveComments(save) {
		t.Fatalf("repeated ADD changed the rules:\nbefore:\n%s\nafter:\n%s", save, after)
	}
	n.stage(env).Check(t, cid, p.NS, conf).OK(t)
	n.stage(env).Del(t, cid, p.NS, conf).OK(t)
	if s := n.sh(t, "iptables-legacy-save"); strings.Contains(s, chain) {
		t.Fatalf("DEL left %s:\n%s", chain, s)
	}
	n.stage(env).Del(t, cid, nil, config(t, "1.1.0", nil, nil)).OK(t)
}

// TestOddNames: a host veth name with a quote, a backslash and a '#'
// goes through iptables-restore like any other (quoted in the batch): ADD
// is one restore exec and no other iptables exec (before, such a name took
// a rule-by-rule path of go-iptables execs), and CHECK, repeated ADD and
// DEL behave as for any name.
func TestOddNames(t *testing.T) {
	testutil.RequireRoot(t)
	n := newNode(t, "sf-odd")
	veth := `sfh"o\d#`
	p := n.addPod(t, "p", veth, "10.66.0.61/24")
	cid := "sf-odd"
	chain := naming.AttachmentChain(testNet, cid, "eth0")
	conf := config(t, "1.1.0", map[string]any{"antiSpoofing": true}, p.prevResult(t))
	// Warm the project chains, as on a node with pods.
	n.stage().Add(t, "sf-odd-warm", p.NS, conf).OK(t)
	n.stage().Del(t, "sf-odd-warm", p.NS, conf).OK(t)
	env, execs := countExecs(t)
	n.stage(env).Add(t, cid, p.NS, conf).OK(t)
	if got := execs(); len(got) != 1 || !strings.HasPrefix(got[0], "iptables-restore ") {
		t.Fatalf("ADD with an odd veth name: iptables execs %q, want one iptables-restore", got)
	}
	if s := n.save(t); !strings.Contains(s, "-A "+chain+` ! -s 10.66.0.61/32 -m physdev --physdev-in "sfh\"o\\d#" -j DROP`) &&
		!strings.Contains(s, "-A "+chain+" ! -s 10.66.0.61/32 -m physdev --physdev-in "+veth+" -j DROP") {
		t.Fatalf("no anti-spoofing rule for the odd veth:\n%s", s)
	}
	n.stage(env).Check(t, cid, p.NS, conf).OK(t)
	if got := execs(); len(got) != 1 {
		t.Fatalf("CHECK with an odd veth name: iptables execs %q, want one iptables-restore", got)
	}
	n.stage().Add(t, cid, p.NS, conf).OK(t)
	n.stage().Check(t, cid, p.NS, conf).OK(t)
	n.stage().Del(t, cid, p.NS, conf).OK(t)
	if s := n.save(t); strings.Contains(s, chain) {
		t.Fatalf("DEL left %s:\n%s", chain, s)
	}
}
