package main

import (
	"os"
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
	testutil.RequireRoot(t)
	legacy, err := findBin("iptables-legacy")
	if err != nil {
		t.Skip(err)
	}
	multi, err := filepath.EvalSymlinks(legacy)
	if err != nil || filepath.Base(multi) != "xtables-legacy-multi" {
		t.Skipf("iptables-legacy is not xtables-legacy-multi: %s %v", multi, err)
	}
	dir := t.TempDir()
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if err := os.Symlink(multi, filepath.Join(dir, cmd)); err != nil {
			t.Fatal(err)
		}
		// The plugin must pick <cmd>-legacy-restore, not <cmd>-restore
		// (the nft alternative on this machine).
		if got := findRestore(filepath.Join(dir, cmd), cmd); filepath.Base(got) != cmd+"-legacy-restore" {
			t.Fatalf("findRestore(%s) = %q", cmd, got)
		}
	}
	env := "PATH=" + dir + ":" + os.Getenv("PATH")
	n := newNode(t, "sf-leg")
	p := n.addPod(t, "p", "sfh-leg", "10.66.0.60/24")
	cid := "sf-leg"
	chain := naming.AttachmentChain(testNet, cid, "eth0")
	conf := config(t, "1.1.0", map[string]any{"masquerade": true, "antiSpoofing": true}, p.prevResult(t))
	n.mustRun(t, "ADD", cid, p, conf, env)
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
	n.mustRun(t, "CHECK", cid, p, conf, env)
	n.mustRun(t, "ADD", cid, p, conf, env)
	if after := n.sh(t, "iptables-legacy-save"); stripSaveComments(after) != stripSaveComments(save) {
		t.Fatalf("repeated ADD changed the rules:\nbefore:\n%s\nafter:\n%s", save, after)
	}
	n.mustRun(t, "CHECK", cid, p, conf, env)
	n.mustRun(t, "DEL", cid, p, conf, env)
	if s := n.sh(t, "iptables-legacy-save"); strings.Contains(s, chain) {
		t.Fatalf("DEL left %s:\n%s", chain, s)
	}
	n.mustRun(t, "DEL", cid, nil, config(t, "1.1.0", nil, nil), env)
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
	n.mustRun(t, "ADD", "sf-odd-warm", p, conf)
	n.mustRun(t, "DEL", "sf-odd-warm", p, conf)
	env, execs := countExecs(t)
	n.mustRun(t, "ADD", cid, p, conf, env)
	if got := execs(); len(got) != 1 || !strings.HasPrefix(got[0], "iptables-restore ") {
		t.Fatalf("ADD with an odd veth name: iptables execs %q, want one iptables-restore", got)
	}
	if s := n.save(t); !strings.Contains(s, "-A "+chain+` ! -s 10.66.0.61/32 -m physdev --physdev-in "sfh\"o\\d#" -j DROP`) &&
		!strings.Contains(s, "-A "+chain+" ! -s 10.66.0.61/32 -m physdev --physdev-in "+veth+" -j DROP") {
		t.Fatalf("no anti-spoofing rule for the odd veth:\n%s", s)
	}
	n.mustRun(t, "CHECK", cid, p, conf, env)
	if got := execs(); len(got) != 1 {
		t.Fatalf("CHECK with an odd veth name: iptables execs %q, want one iptables-restore", got)
	}
	n.mustRun(t, "ADD", cid, p, conf)
	n.mustRun(t, "CHECK", cid, p, conf)
	n.mustRun(t, "DEL", cid, p, conf)
	if s := n.save(t); strings.Contains(s, chain) {
		t.Fatalf("DEL left %s:\n%s", chain, s)
	}
}
