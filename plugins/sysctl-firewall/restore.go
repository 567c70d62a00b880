package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/coreos/go-iptables/iptables"

	"github.com/vxvrf/cni/pkg/naming"
)

// xtables is one family's access to the kernel rules: the batch path
// (`iptables-restore --noflush`, one exec for a whole attachment) and
// go-iptables for everything else (project chains, CHECK, GC listing,
// tolerant deletion). go-iptables is created lazily because its New
// execs `iptables --version`, which the common path does not need.
type xtables struct {
	fam     Family
	path    string // iptables / ip6tables as go-iptables finds it ("" when absent)
	restore string // matching *-restore binary ("" when none: per-rule path)
	ipt     *iptables.IPTables
}

func newXtables(f Family) *xtables {
	x := &xtables{fam: f}
	if p, err := exec.LookPath(command(f)); err == nil {
		x.path = p
		x.restore = findRestore(p, command(f))
	}
	return x
}

// command is the binary go-iptables runs for the family.
func command(f Family) string {
	if f == V6 {
		return "ip6tables"
	}
	return "iptables"
}

// iptables returns the go-iptables handle (one `--version` exec the first time).
func (x *xtables) iptables() (*iptables.IPTables, error) {
	if x.ipt != nil {
		return x.ipt, nil
	}
	ipt, err := newIPTables(x.fam)
	if err != nil {
		return nil, err
	}
	x.ipt = ipt
	return ipt, nil
}

// findRestore picks the restore binary of the same flavour as ipt (the
// path exec.LookPath gave for cmd, as go-iptables resolves it):
//   - ipt resolves to xtables-nft-multi / xtables-legacy-multi: the first of
//     <cmd>-nft-restore / <cmd>-legacy-restore (in ipt's directory, then
//     in the multi binary's), or <cmd>-restore next to ipt, that resolves
//     to the very same multi binary (so nft and legacy never mix);
//   - otherwise (a wrapper script, an old single binary): <cmd>-restore in
//     ipt's directory.
//
// "" means none: the plugin then uses go-iptables rule by rule.
func findRestore(ipt, cmd string) string {
	dir := filepath.Dir(ipt)
	sibling := filepath.Join(dir, cmd+"-restore")
	target, err := filepath.EvalSymlinks(ipt)
	if err != nil {
		return ""
	}
	flavour := ""
	switch filepath.Base(target) {
	case "xtables-nft-multi":
		flavour = "-nft"
	case "xtables-legacy-multi":
		flavour = "-legacy"
	}
	if flavour == "" {
		if executable(sibling) {
			return sibling
		}
		return ""
	}
	for _, c := range []string{
		filepath.Join(dir, cmd+flavour+"-restore"),
		filepath.Join(filepath.Dir(target), cmd+flavour+"-restore"),
		sibling,
	} {
		if r, err := filepath.EvalSymlinks(c); err == nil && r == target && executable(c) {
			return c
		}
	}
	return ""
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Kinds of restore input lines, to tell from "line N failed" what failed.
type lineKind int

const (
	lineTable  lineKind = iota // *table
	lineHook                   // -C <builtin> -j <project>: project chain hooked in
	lineNew                    // -N <attachment chain>
	lineRule                   // a rule of the attachment chain
	lineJump                   // -A/-D <project> <tagged jump>
	lineFlush                  // -F / -X of the attachment chain
	lineCommit                 // COMMIT
	lineZone                   // -C of a network-wide zone rule or its hook
)

// script is restore input with what each line is, by table.
type script struct {
	b      strings.Builder
	lines  []lineInfo
	unsafe bool // a token restore's parser could split or misread
}

type lineInfo struct {
	table string
	kind  lineKind
}

// safeToken: restore splits lines on whitespace and interprets quotes,
// backslashes and a leading '#'. Interface names may contain quotes, so
// such a token sends the attachment down the per-rule path instead.
func safeToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t\n\r\v\f\"'\\#")
}

func (s *script) line(table string, kind lineKind, args ...string) {
	for _, a := range args {
		if !safeToken(a) {
			s.unsafe = true
		}
	}
	s.b.WriteString(strings.Join(args, " "))
	s.b.WriteByte('\n')
	s.lines = append(s.lines, lineInfo{table, kind})
}

// at returns the failing line's info and the tables of the script that
// were committed before it: iptables-restore (legacy and nft alike)
// commits table by table, so the tables whose COMMIT came before the
// failing line are in the kernel, the failing table and later ones not.
func (s *script) at(n int) (lineInfo, []string, bool) {
	if n < 1 || n > len(s.lines) {
		return lineInfo{}, nil, false
	}
	var committed []string
	for i := 0; i < n-1; i++ {
		if s.lines[i].kind == lineCommit {
			committed = append(committed, s.lines[i].table)
		}
	}
	return s.lines[n-1], committed, true
}

// renderAdd is the restore input that creates an attachment's chain in
// each of tables that has rules (in script order: filter first, so a
// repeated ADD fails at its first command before anything is committed),
// fills it and appends the tagged jump. Each such table first checks (-C)
// that its project chain is hooked into the built-in chain: the cheap
// "ensured once" test, with no extra exec. -N (not ":chain") makes an
// existing chain an error. Tables with zone rules (raw, mangle) also check
// (-C) the network's zone rules and their hook, before the -N.
func renderAdd(a attachment, tables []string, rules, zone map[string][][]string) *script {
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	s := &script{}
	for _, t := range tables {
		s.line(t, lineTable, "*"+t)
		if len(rules[t]) > 0 {
			s.checkHook(t)
		}
		s.zoneChecks(t, zone[t])
		if len(rules[t]) > 0 {
			s.line(t, lineNew, "-N", chain)
			s.chainRules(t, "-A", chain, rules[t])
			s.jump(t, "-A", a)
		}
		s.line(t, lineCommit, "COMMIT")
	}
	return s
}

// checkHook adds the -C that table t's project chain is hooked into its
// built-in chain.
func (s *script) checkHook(t string) {
	h := hookOf(t)
	s.line(t, lineHook, append([]string{"-C", h.Builtin}, projectJump(h)...)...)
}

// jump adds op (-A or -C) of the attachment's tagged jump in table t's
// project chain.
func (s *script) jump(t, op string, a attachment) {
	s.line(t, lineJump, append([]string{op, hookOf(t).Project}, attachmentJump(a.Network, a.ContainerID, a.IfName)...)...)
}

// chainRules adds op (-A or -C) of every rule of chain.
func (s *script) chainRules(t, op, chain string, rules [][]string) {
	for _, r := range rules {
		s.line(t, lineRule, append([]string{op, chain}, r...)...)
	}
}

// zoneChecks adds the -C lines of a table's zone rules: the hook of the
// zone chain and every rule in it.
func (s *script) zoneChecks(t string, specs [][]string) {
	if len(specs) == 0 {
		return
	}
	h := zoneHookOf(t)
	s.line(t, lineZone, append([]string{"-C", h.Builtin}, projectJump(h)...)...)
	for _, r := range specs {
		s.line(t, lineZone, append([]string{"-C", h.Project}, r...)...)
	}
}

// renderDel deletes the tagged jump, flushes and deletes the chain in each
// of tables (reverse Hooks order, so the filter chain goes last and stays
// the marker a repeated ADD trips on). Then, for each of others (tables the
// config gives no rules in, which an ADD with another config may have
// used), it deletes the chain if it is there and unreferenced
// (":C - [0:0]" creates or flushes it, "-X" deletes it); a chain still
// jumped to makes -X fail, and the caller's fallback deletes jump and
// chain. Those go last, so a family the attachment never used fails at its
// first -D before anything is committed.
func renderDel(a attachment, tables, others []string) *script {
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	s := &script{}
	for _, t := range reversed(sortTables(tables)) {
		h := hookOf(t)
		s.line(t, lineTable, "*"+t)
		s.line(t, lineJump, append([]string{"-D", h.Project}, attachmentJump(a.Network, a.ContainerID, a.IfName)...)...)
		s.line(t, lineFlush, "-F", chain)
		s.line(t, lineFlush, "-X", chain)
		s.line(t, lineCommit, "COMMIT")
	}
	for _, t := range reversed(sortTables(others)) {
		s.line(t, lineTable, "*"+t)
		s.line(t, lineFlush, ":"+chain, "-", "[0:0]")
		s.line(t, lineFlush, "-X", chain)
		s.line(t, lineCommit, "COMMIT")
	}
	return s
}

// renderCheck is restore input of only -C commands: the hook of each
// table with rules, the tagged jump and every rule of the chain, and the
// zone rules with their hooks. Nothing in it changes anything (legacy
// skips the commit of an unchanged table, nft commits an empty batch).
func renderCheck(a attachment, tables []string, rules, zone map[string][][]string) *script {
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	s := &script{}
	for _, t := range tables {
		s.line(t, lineTable, "*"+t)
		if len(rules[t]) > 0 {
			s.checkHook(t)
			s.jump(t, "-C", a)
			s.chainRules(t, "-C", chain, rules[t])
		}
		s.zoneChecks(t, zone[t])
		s.line(t, lineCommit, "COMMIT")
	}
	return s
}

// restoreError is a failed restore run with its stderr.
type restoreError struct {
	err    error
	stderr string
}

func (e *restoreError) Error() string {
	return fmt.Sprintf("iptables-restore: %v: %s", e.err, strings.TrimSpace(e.stderr))
}

func (e *restoreError) Unwrap() error { return e.err }

// failedLineRe matches the ways restore names the failing line: "line N
// failed" (a command failed), "line N: CHAIN_DEL failed (...)" (iptables-nft,
// kernel refused at commit) and "Error occurred at line: N" (a parameter
// problem; iptables-nft reports some, e.g. a jump to a missing chain, only
// at the table's COMMIT line).
var failedLineRe = regexp.MustCompile(`line:? (\d+)`)

// failedLine is the number of the line restore failed at.
func (e *restoreError) failedLine() (int, bool) {
	m := failedLineRe.FindStringSubmatch(e.stderr)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// usage: the binary refused its arguments (exit 2 without a failing
// line, e.g. an iptables-restore older than 1.6.2 without --wait), so it
// read no input and changed nothing.
func (e *restoreError) usage() bool {
	var ee *exec.ExitError
	if errors.As(e.err, &ee) {
		_, lined := e.failedLine()
		return ee.ExitCode() == 2 && !lined
	}
	return true // not run at all (exec failed)
}

func (x *xtables) runRestore(in string) error {
	cmd := exec.Command(x.restore, "--noflush", "--wait", strconv.Itoa(iptablesWait))
	cmd.Stdin = strings.NewReader(in)
	// The restore dies with us: a plugin SIGKILLed mid-ADD (a runtime's
	// timeout) must not leave a child that commits the attachment's rules
	// after the runtime's recovery DEL has removed them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return &restoreError{err: err, stderr: stderr.String()}
	}
	return nil
}

func hookOf(table string) hook {
	for _, h := range Hooks {
		if h.Table == table {
			return h
		}
	}
	panic("no hook for table " + table)
}

// scriptTables lists the tables that have attachment or zone rules, in
// script order: the attachment tables (Hooks order, filter first), then
// mangle.
func scriptTables(rules, zone map[string][][]string) []string {
	var out []string
	for _, t := range []string{"filter", "nat", "raw", "mangle"} {
		if len(rules[t]) > 0 || len(zone[t]) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// tablesWithRules lists the tables that have rules, in Hooks order.
func tablesWithRules(rules map[string][][]string) []string {
	var out []string
	for _, h := range Hooks {
		if len(rules[h.Table]) > 0 {
			out = append(out, h.Table)
		}
	}
	return out
}

func reversed(in []string) []string {
	out := make([]string, 0, len(in))
	for i := len(in) - 1; i >= 0; i-- {
		out = append(out, in[i])
	}
	return out
}

func without(list, drop []string) []string {
	var out []string
	for _, t := range list {
		if !contains(drop, t) {
			out = append(out, t)
		}
	}
	return out
}

// add installs one family's rules of an attachment and checks the
// network's zone rules: normally one restore. When it fails other than at
// -N (typically at a project-chain or zone line: the first ADD on the node
// for that table or network), the project chains and zone rules of the
// uncommitted tables are ensured (go-iptables, under the lock) and those
// tables restored again, once. created lists the tables whose attachment
// chain this call made, for rollback (zone rules are the network's and
// stay).
func (x *xtables) add(a attachment, rules, zone map[string][][]string) (created []string, err error) {
	todo := scriptTables(rules, zone)
	if len(todo) == 0 {
		return nil, nil
	}
	if x.path == "" {
		_, err := x.iptables() // the error go-iptables gives for a missing binary
		return nil, err
	}
	if x.restore == "" {
		return x.addPerRule(a, rules, zone)
	}
	chain := naming.AttachmentChain(a.Network, a.ContainerID, a.IfName)
	ensured := false
	made := func(tables []string) {
		for _, t := range tables {
			if len(rules[t]) > 0 {
				created = append(created, t)
			}
		}
	}
	for len(todo) > 0 {
		s := renderAdd(a, todo, rules, zone)
		if s.unsafe {
			return x.addPerRule(a, rules, zone)
		}
		err := x.runRestore(s.b.String())
		if err == nil {
			made(todo)
			return created, nil
		}
		var re *restoreError
		if !errors.As(err, &re) {
			return created, err
		}
		n, ok := re.failedLine()
		if !ok {
			if re.usage() && len(created) == 0 {
				return x.addPerRule(a, rules, zone)
			}
			return created, err
		}
		info, committed, ok := s.at(n)
		if !ok {
			return created, err
		}
		made(committed)
		todo = todo[len(committed):]
		// The failing table and the ones after it were not committed.
		// -N failed: the chain exists (a repeated ADD; filter comes first,
		// so then nothing was committed). Anything else is most likely a
		// missing project chain, hook or zone rule (-C, -A into it, or the
		// same reported at COMMIT by iptables-nft): ensure those once and
		// retry.
		switch {
		case info.kind == lineNew:
			return created, fmt.Errorf("%s/%s: %w", info.table, chain, errAttachmentExists)
		case !ensured:
			ipt, err := x.iptables()
			if err != nil {
				return created, err
			}
			for _, t := range todo {
				if len(rules[t]) > 0 {
					if err := ensureProject(ipt, hookOf(t)); err != nil {
						return created, err
					}
				}
				if len(zone[t]) > 0 {
					if err := ensureZone(ipt, a.Network, t, zone[t]); err != nil {
						return created, fmt.Errorf("%s conntrack zone: %w", x.fam, err)
					}
				}
			}
			ensured = true
		default:
			return created, fmt.Errorf("%s table %s: %w", x.fam, info.table, err)
		}
	}
	return created, nil
}

// addPerRule is the go-iptables path (no restore binary, or names the
// restore parser cannot carry): one exec per operation.
func (x *xtables) addPerRule(a attachment, rules, zone map[string][][]string) ([]string, error) {
	ipt, err := x.iptables()
	if err != nil {
		return nil, err
	}
	if err := ensureZones(ipt, a.Network, zone); err != nil {
		return nil, fmt.Errorf("%s conntrack zone: %w", x.fam, err)
	}
	return ensureAttachment(ipt, a, rules)
}

// del removes an attachment's jumps and chains with one restore: jump and
// chain in tables, and with all also a leftover chain in the other tables
// (see renderDel). If that fails (something already gone: a repeated DEL,
// a family the attachment never used, partial state, a chain still jumped
// to), go-iptables' tolerant deletion handles the tables the restore did
// not commit (of tables, or of every table with all). No iptables binary
// for the family: nothing to do.
func (x *xtables) del(a attachment, tables []string, all bool) error {
	if x.path == "" {
		return nil
	}
	fallback := tables
	var others []string
	if all {
		fallback = hookTables()
		others = without(fallback, tables)
	}
	if x.restore != "" && len(tables) > 0 {
		s := renderDel(a, tables, others)
		if !s.unsafe {
			err := x.runRestore(s.b.String())
			if err == nil {
				return nil
			}
			var re *restoreError
			if errors.As(err, &re) {
				if n, ok := re.failedLine(); ok {
					if _, committed, ok := s.at(n); ok {
						fallback = without(fallback, committed)
					}
				}
			}
		}
	}
	if len(fallback) == 0 {
		return nil
	}
	ipt, err := x.iptables()
	if err != nil {
		return nil // the binary does not run: ADD cannot have made rules with it
	}
	return deleteAttachment(ipt, a, fallback)
}

// check is CHECK's fast path: true when one restore of -C commands
// passes, i.e. everything is there. false (something missing, no restore,
// an unsafe token) sends CHECK to go-iptables, which names what is missing.
func (x *xtables) check(a attachment, rules, zone map[string][][]string) bool {
	if x.restore == "" {
		return false
	}
	s := renderCheck(a, scriptTables(rules, zone), rules, zone)
	return !s.unsafe && x.runRestore(s.b.String()) == nil
}

func hookTables() []string {
	out := make([]string, 0, len(Hooks))
	for _, h := range Hooks {
		out = append(out, h.Table)
	}
	return out
}

// sortTables puts tables in Hooks order.
func sortTables(tables []string) []string {
	var out []string
	for _, t := range hookTables() {
		if contains(tables, t) {
			out = append(out, t)
		}
	}
	return out
}
