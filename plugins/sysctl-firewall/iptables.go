package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"

	"github.com/vxvrf/cni/pkg/cniutil"
	"github.com/vxvrf/cni/pkg/naming"
)

// The iptables backend's verbs for one family. Each has one code path:
// an iptables-restore batch rendered for the state the common case
// assumes (ADD: the network-wide objects there, the attachment absent;
// DEL: the attachment complete as the config says; CHECK: all there).
// When restore refuses it, the backend does not ask restore why: it lists
// what is there (go-iptables `-S`) and runs the batch rendered for that
// state (ADD, DEL), or names the first probe that fails alone (CHECK).

// lockName serialises the slow paths that create node-wide objects
// (the project chains and their jumps, the nftables tables, the zone
// rules), so concurrent first ADDs do not create them twice. The fast path
// (they exist) takes no lock. The lock belongs to the node's network
// namespace (cniutil.NetNSLock), not to a file: no path to configure or to
// be redirected through a symlink.
const lockName = "sysctl-firewall"

// iptablesWait is passed as --wait: seconds to wait for the xtables lock.
const iptablesWait = 30

func newIPTables(f Family) (*iptables.IPTables, error) {
	proto := iptables.ProtocolIPv4
	if f == V6 {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Timeout(iptablesWait))
	if err != nil {
		return nil, fmt.Errorf("%s iptables: %w", f, err)
	}
	return ipt, nil
}

// withLock runs fn holding the node's lockName (code 11 when it is not
// acquired within iptablesWait seconds). Not reentrant.
func withLock(fn func() error) error {
	return cniutil.NetNSLock(lockName, iptablesWait*time.Second, fn)
}

// listChain returns the rules of chain in table (the "-A" lines of `-S`)
// and whether the chain exists: exit status 1 is "no such chain", as for
// go-iptables' ChainExists (iptables-legacy's "No chain/target/match",
// iptables-nft's "incompatible" for a chain of a table it never made).
func listChain(ipt *iptables.IPTables, table, chain string) ([]string, bool, error) {
	lines, err := ipt.List(table, chain)
	var e *iptables.Error
	if errors.As(err, &e) && e.ExitStatus() == 1 {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("list %s/%s: %w", table, chain, err)
	}
	var rules []string
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") {
			rules = append(rules, l)
		}
	}
	return rules, true, nil
}

// jumpsOf are the chains the rules jump to unconditionally ("-A X -j Y").
func jumpsOf(rules []string) map[string]bool {
	out := map[string]bool{}
	for _, r := range rules {
		if f := strings.Fields(r); len(f) == 4 && f[2] == "-j" {
			out[f[3]] = true
		}
	}
	return out
}

// tableState is what one table holds of an attachment and, when listed
// in full, of the network-wide objects its policy needs.
type tableState struct {
	chain     bool            // the attachment's chain exists
	jump      bool            // the project chain holds the attachment's tagged jump
	project   bool            // the table's project chain exists (full)
	hooked    map[string]bool // chains the built-in chains jump to (full)
	zoneChain bool            // naming.ZoneChain exists (full, raw and mangle)
	zone      []string        // its rules, in order (full)
}

// listTable lists table: the attachment's chain and jump (tables of
// Hooks) and, with full, the built-in chains' jumps, the project chain
// and the zone chain's rules. Per table 1 to 4 `-S` execs.
func listTable(ipt *iptables.IPTables, a attachment, table string, full bool) (*tableState, error) {
	st := &tableState{hooked: map[string]bool{}}
	var builtins []string
	if h, ok := hookOf(table); ok {
		chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
		var err error
		if st.chain, err = ipt.ChainExists(table, chain); err != nil {
			return nil, fmt.Errorf("look up %s/%s: %w", table, chain, err)
		}
		if st.chain || full {
			rules, ok, err := listChain(ipt, table, h.Project)
			if err != nil {
				return nil, err
			}
			st.project = ok
			tag := naming.AttachmentTag(a.Network, a.ContainerID, a.IfName)
			for _, r := range rules {
				st.jump = st.jump || specTag(strings.Fields(r)) == tag
			}
		}
		builtins = append(builtins, h.Builtin)
	}
	if !full {
		return st, nil
	}
	if h, ok := zoneHookOf(table); ok {
		var err error
		if st.zone, st.zoneChain, err = listChain(ipt, table, h.Project); err != nil {
			return nil, err
		}
		if !contains(builtins, h.Builtin) {
			builtins = append(builtins, h.Builtin)
		}
	}
	for _, b := range builtins {
		rules, _, err := listChain(ipt, table, b)
		if err != nil {
			return nil, err
		}
		for c := range jumpsOf(rules) {
			st.hooked[c] = true
		}
	}
	return st, nil
}

// probe is one -C command of a family's check, with what it checks.
type probe struct {
	table   string
	args    []string // "-C", chain, spec...
	what    string   // "rule", "conntrack zone rule"
	network bool     // a network-wide object (hook, zone rule), not the attachment's
}

// probesOf lists every piece of the attachment's policy in one family, in
// script order (filter, nat, raw, mangle): per table with rules the hook
// of the project chain, the tagged jump and each rule of the attachment's
// chain; per table with zone rules the zone chain's hook and each rule.
func probesOf(a attachment, rules, zone map[string][][]string) []probe {
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	var out []probe
	add := func(t, what string, network bool, chain string, spec ...string) {
		out = append(out, probe{table: t, args: append([]string{"-C", chain}, spec...), what: what, network: network})
	}
	for _, t := range scriptTables(rules, zone) {
		h, ok := hookOf(t)
		if ok && len(rules[t]) > 0 {
			add(t, "rule", true, h.Builtin, projectJump(h)...)
		}
		if zh, ok := zoneHookOf(t); ok && len(zone[t]) > 0 {
			add(t, "conntrack zone rule", true, zh.Builtin, projectJump(zh)...)
			for _, sp := range zone[t] {
				add(t, "conntrack zone rule", true, zh.Project, sp...)
			}
		}
		if ok && len(rules[t]) > 0 {
			add(t, "rule", false, h.Project, attachmentJump(a.Network, a.ContainerID, a.IfName)...)
			for _, r := range rules[t] {
				add(t, "rule", false, chain, r...)
			}
		}
	}
	return out
}

// renderAdd is ADD's batch for the common case: per table, the -C probes
// of the network-wide objects (the project chain's hook, the network's
// zone rules), then -N of the attachment's chain (fails if it exists), its
// rules and its tagged jump. Filter comes first, so the common refusals
// (a missing hook, a repeated ADD) come before anything is committed.
func renderAdd(a attachment, rules, zone map[string][][]string) *script {
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	probes := probesOf(a, rules, zone)
	s := &script{}
	for _, t := range scriptTables(rules, zone) {
		for _, p := range probes {
			if p.table == t && p.network {
				s.cmd(t, p.args...)
			}
		}
		h, ok := hookOf(t)
		if !ok || len(rules[t]) == 0 {
			continue // a section of probes only (mangle: zone rules)
		}
		s.cmd(t, "-N", chain)
		for _, r := range rules[t] {
			s.cmd(t, append([]string{"-A", chain}, r...)...)
		}
		s.cmd(t, append([]string{"-A", h.Project}, attachmentJump(a.Network, a.ContainerID, a.IfName)...)...)
	}
	return s
}

// renderConverge is ADD's batch for the listed state st: it makes the
// family hold what the policy wants whatever was there. The project
// chains and their hooks where missing; the network's zone rules and the
// node-wide restore rule replaced as a set (convergeZone); the
// attachment's chain created or flushed (":C - [0:0]"), filled, and its
// tagged jump appended where missing; its chain and jump removed from
// tables the policy has no rules in (an earlier ADD with another config).
func renderConverge(a attachment, rules, zone map[string][][]string, st map[string]*tableState) *script {
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	s := &script{}
	for _, t := range []string{"filter", "nat", "raw", "mangle"} {
		ts := st[t]
		if ts == nil {
			continue
		}
		h, isHook := hookOf(t)
		mine := isHook && len(rules[t]) > 0
		if mine {
			if !ts.project {
				s.cmd(t, ":"+h.Project, "-", "[0:0]")
			}
			if !ts.hooked[h.Project] {
				s.cmd(t, append([]string{"-I", h.Builtin, "1"}, projectJump(h)...)...)
			}
		}
		if len(zone[t]) > 0 {
			convergeZone(s, t, zone[t], ts)
		}
		switch {
		case mine:
			s.cmd(t, ":"+chain, "-", "[0:0]")
			for _, r := range rules[t] {
				s.cmd(t, append([]string{"-A", chain}, r...)...)
			}
			if !ts.jump {
				s.cmd(t, append([]string{"-A", h.Project}, attachmentJump(a.Network, a.ContainerID, a.IfName)...)...)
			}
		case ts.chain:
			delAttachment(s, t, a, ts.jump)
		}
	}
	return s
}

// delAttachment adds the deletion of the attachment's jump (when jumped)
// and chain in table t.
func delAttachment(s *script, t string, a attachment, jumped bool) {
	h, _ := hookOf(t)
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	if jumped {
		s.cmd(t, append([]string{"-D", h.Project}, attachmentJump(a.Network, a.ContainerID, a.IfName)...)...)
	}
	s.cmd(t, "-F", chain)
	s.cmd(t, "-X", chain)
}

// renderDel is DEL's batch for the common case: for each of tables (the
// config's, reverse Hooks order so filter goes last) -D of the tagged
// jump, -F and -X of the chain; then for each of others (tables an ADD
// with another config may have used) ":C - [0:0]" and -X, which deletes a
// leftover chain and is a no-op otherwise.
func renderDel(a attachment, tables, others []string) *script {
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	s := &script{}
	for _, t := range reversed(sortTables(tables)) {
		delAttachment(s, t, a, true)
	}
	for _, t := range reversed(sortTables(others)) {
		s.cmd(t, ":"+chain, "-", "[0:0]")
		s.cmd(t, "-X", chain)
	}
	return s
}

// renderDelFound is DEL's batch for the listed state: the jump and chain
// of every table that has them.
func renderDelFound(a attachment, st map[string]*tableState) *script {
	s := &script{}
	for _, t := range reversed(hookTables()) {
		if ts := st[t]; ts != nil && ts.chain {
			delAttachment(s, t, a, ts.jump)
		}
	}
	return s
}

// add installs one family's part of the policy. The common case is one
// restore (renderAdd). When restore refuses it, what it assumed is not so
// (the first ADD of the node, table or network; a piece removed by hand;
// a repeated or half-done earlier ADD) or the kernel refuses a rule: under
// the node lock the family is listed and converged in one restore
// (renderConverge), whose failure is the answer. So ADD is idempotent.
func (x *xtables) add(a attachment, rules, zone map[string][][]string) error {
	if len(scriptTables(rules, zone)) == 0 {
		return nil
	}
	if err := x.usable(); err != nil {
		return err
	}
	if x.run(renderAdd(a, rules, zone)) == nil {
		return nil
	}
	ipt, err := x.iptables()
	if err != nil {
		return err
	}
	return withLock(func() error {
		st := map[string]*tableState{}
		for _, t := range []string{"filter", "nat", "raw", "mangle"} {
			full := len(rules[t]) > 0 || len(zone[t]) > 0
			if _, isHook := hookOf(t); !isHook && !full {
				continue
			}
			ts, err := listTable(ipt, a, t, full)
			if err != nil {
				return err
			}
			st[t] = ts
		}
		return x.run(renderConverge(a, rules, zone, st))
	})
}

// del removes the attachment's jumps and chains from tables (the ones
// the config gives rules in) and a leftover chain from the other tables:
// one restore when they are all there (renderDel). Otherwise (a second
// DEL, a family the attachment never used, partial state, a leftover
// chain still jumped to) every table is listed and what is found is
// deleted in one restore; a concurrent deleter (DEL and GC of the same
// attachment) can make that restore fail, so it is listed again, up to
// three times. Absent is success. No iptables binary for the family:
// nothing to do.
func (x *xtables) del(a attachment, tables []string) error {
	if x.path == "" {
		return nil
	}
	if x.restore != "" && len(tables) > 0 && x.run(renderDel(a, tables, without(hookTables(), tables))) == nil {
		return nil
	}
	ipt, err := x.iptables()
	if err != nil {
		return nil // the binary does not run: ADD cannot have made rules with it
	}
	var last error
	for try := 0; try < 3; try++ {
		st := map[string]*tableState{}
		for _, t := range hookTables() {
			ts, err := listTable(ipt, a, t, false)
			if err != nil {
				return err
			}
			st[t] = ts
		}
		s := renderDelFound(a, st)
		if s.b.Len() == 0 {
			return nil
		}
		if err := x.usable(); err != nil {
			return err
		}
		if last = x.run(s); last == nil {
			return nil
		}
	}
	return last
}

// check is CHECK for one family: one restore of every probe. If restore
// refuses it, each probe runs alone to name the first missing piece.
func (x *xtables) check(probes []probe) error {
	all := &script{}
	for _, p := range probes {
		all.cmd(p.table, p.args...)
	}
	err := x.run(all)
	if err == nil {
		return nil
	}
	for _, p := range probes {
		one := &script{}
		one.cmd(p.table, p.args...)
		if x.run(one) != nil {
			return fmt.Errorf("%s %s missing in %s/%s: %s", x.fam, p.what, p.table, p.args[1], strings.Join(p.args[2:], " "))
		}
	}
	return fmt.Errorf("%s: %w", x.fam, err)
}

// listAttachments returns the attachments of network that have a jump in
// any project chain of this family, with the tables where they do.
func listAttachments(ipt *iptables.IPTables, network string) (map[cniutil.Attachment][]string, error) {
	found := map[cniutil.Attachment][]string{}
	var errs []error
	for _, h := range Hooks {
		lines, _, err := listChain(ipt, h.Table, h.Project)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, a := range parseTags(lines, network) {
			if !contains(found[a], h.Table) {
				found[a] = append(found[a], h.Table)
			}
		}
	}
	return found, errors.Join(errs...)
}

// parseTags extracts the attachments of network from `iptables -S` lines
// of a project chain: the value of --comment, optionally quoted, must start
// with naming.NetworkTag(network) and carry "<containerID>:<ifname>" after it.
func parseTags(lines []string, network string) []cniutil.Attachment {
	var out []cniutil.Attachment
	for _, line := range lines {
		if cid, ifName, ok := naming.ParseAttachmentTag(network, specTag(strings.Fields(line))); ok {
			out = append(out, cniutil.Attachment{ContainerID: cid, IfName: ifName})
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
