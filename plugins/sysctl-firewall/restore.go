package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/coreos/go-iptables/iptables"
)

// xtables is one family's iptables. Every change and every check is an
// `iptables-restore --noflush` batch (this file); go-iptables only finds
// the binary and its version and lists chains (iptables.go). go-iptables
// is created lazily because its New execs `iptables --version`, which the
// common path does not need.
type xtables struct {
	fam     Family
	path    string // iptables / ip6tables as go-iptables finds it ("" when absent)
	restore string // matching *-restore binary ("" when none)
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

// usable: the family has an iptables binary and a restore of its flavour.
func (x *xtables) usable() error {
	if x.path == "" {
		_, err := newIPTables(x.fam) // the error go-iptables gives for a missing binary
		if err == nil {
			err = fmt.Errorf("%s: %s not found", x.fam, command(x.fam))
		}
		return err
	}
	if x.restore == "" {
		return fmt.Errorf("%s: no %s-restore of the same flavour as %s", x.fam, command(x.fam), x.path)
	}
	return nil
}

// minRestore is the oldest iptables whose restore takes --wait.
var minRestore = [3]int{1, 6, 2}

// iptables returns the go-iptables handle (one `--version` exec the first
// time), refusing an iptables older than minRestore.
func (x *xtables) iptables() (*iptables.IPTables, error) {
	if x.ipt != nil {
		return x.ipt, nil
	}
	ipt, err := newIPTables(x.fam)
	if err != nil {
		return nil, err
	}
	v1, v2, v3 := ipt.GetIptablesVersion()
	if v := [3]int{v1, v2, v3}; versionLess(v, minRestore) {
		return nil, fmt.Errorf("%s: iptables %d.%d.%d: iptables-restore --wait needs %d.%d.%d or later",
			x.fam, v1, v2, v3, minRestore[0], minRestore[1], minRestore[2])
	}
	x.ipt = ipt
	return ipt, nil
}

func versionLess(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
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
// "" means none: the backend cannot work (STATUS says so).
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

// script is iptables-restore input: table sections of commands, each
// closed by COMMIT. restore commits section by section (legacy and nft
// alike), so a section is atomic, a script is not.
type script struct {
	b     strings.Builder
	table string // the open section
	err   error  // a token restore cannot carry
}

// cmd adds one command to table t's section (opening one if t is not the
// open section).
func (s *script) cmd(t string, args ...string) {
	if t != s.table {
		s.close()
		s.b.WriteString("*" + t + "\n")
		s.table = t
	}
	for i, a := range args {
		if i > 0 {
			s.b.WriteByte(' ')
		}
		s.b.WriteString(s.token(a))
	}
	s.b.WriteByte('\n')
}

func (s *script) close() {
	if s.table != "" {
		s.b.WriteString("COMMIT\n")
		s.table = ""
	}
}

// text is the whole input ("" when the script has no command).
func (s *script) text() string {
	s.close()
	return s.b.String()
}

// plainToken: restore reads the token as is. Anything else (interface
// names may hold quotes, backslashes, '#') is double-quoted with '\' and
// '"' escaped, which restore's parser undoes (legacy and nft alike).
func plainToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.,:/!+=@%[]", r)) {
			return false
		}
	}
	return true
}

func (s *script) token(a string) string {
	if plainToken(a) {
		return a
	}
	if strings.ContainsAny(a, "\n\r\x00") && s.err == nil {
		s.err = fmt.Errorf("%q cannot be passed to iptables-restore", a)
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
}

// restoreError is a failed restore run with its stderr, reported as is.
type restoreError struct {
	err    error
	stderr string
}

func (e *restoreError) Error() string {
	return fmt.Sprintf("iptables-restore: %v: %s", e.err, strings.TrimSpace(e.stderr))
}

func (e *restoreError) Unwrap() error { return e.err }

// run feeds s to `<restore> --noflush --wait`: the only way this backend
// changes or checks rules. Nothing is read from a failure but the fact.
func (x *xtables) run(s *script) error {
	if s.err != nil {
		return s.err
	}
	in := s.text()
	if in == "" {
		return nil
	}
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

func hookOf(table string) (hook, bool) {
	for _, h := range Hooks {
		if h.Table == table {
			return h, true
		}
	}
	return hook{}, false
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
