// Package testutil holds what the privileged tests share: building the
// plugin binaries once, a lab node per test (NewNode, AddNS), driving a
// stage binary inside it the way a runtime does (Stage, over Run) and
// building its configs (Conf). docs/development.md shows a stage test.
package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/pkg/naming"
)

// Plugins are the project's binaries, in chain order (naming.Stages).
var Plugins = naming.Stages()

// RequireRoot skips the test unless it runs as root (it creates namespaces).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

// RepoRoot is the directory holding go.mod.
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

var (
	mu     sync.Mutex
	binDir string
	built  = map[string]bool{}
)

// PluginDir returns the directory of plugin binaries (CNI_PATH for the
// tests) after making sure the named plugins are in it. It uses $VXVRF_BIN
// when set (make test points it at bin/); otherwise it builds each named
// plugin once per test process from this checkout.
func PluginDir(t testing.TB, plugins ...string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if binDir == "" {
		if d := os.Getenv("VXVRF_BIN"); d != "" {
			abs, err := filepath.Abs(d)
			if err != nil {
				t.Fatalf("VXVRF_BIN: %v", err)
			}
			binDir = abs
			for _, p := range Plugins {
				built[p] = true
			}
		} else {
			d, err := processBinDir()
			if err != nil {
				t.Fatalf("bin dir: %v", err)
			}
			binDir = d
		}
	}
	root := ""
	for _, p := range plugins {
		if built[p] {
			continue
		}
		if root == "" {
			r, err := RepoRoot()
			if err != nil {
				t.Fatal(err)
			}
			root = r
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, p), "./plugins/"+p)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v: %s", p, err, out)
		}
		built[p] = true
	}
	return binDir
}

// processBinDir returns a fresh directory for this test process's binaries,
// "vxvrf-bin-<pid>" under the temp dir, and removes those of processes that
// have exited (a test binary has no hook to remove its own).
func processBinDir() (string, error) {
	tmp := os.TempDir()
	bins, _ := filepath.Glob(filepath.Join(tmp, "vxvrf-bin-*"))
	refs, _ := filepath.Glob(filepath.Join(tmp, "vxvrf-ref-*"))
	prevs, _ := filepath.Glob(filepath.Join(tmp, "vxvrf-prev-*"))
	for _, d := range append(append(bins, refs...), prevs...) {
		_, pid, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "vxvrf-"), "-")
		if _, err := os.Stat(filepath.Join("/proc", pid)); os.IsNotExist(err) {
			_ = os.RemoveAll(d)
		}
	}
	d := filepath.Join(tmp, fmt.Sprintf("vxvrf-bin-%d", os.Getpid()))
	return d, os.MkdirAll(d, 0o755)
}

// NewLab creates a lab of namespaces removed when the test ends.
func NewLab(t testing.TB, name string) *netsim.Lab {
	t.Helper()
	RequireRoot(t)
	lab, err := netsim.New(name)
	if err != nil {
		t.Fatalf("lab %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return lab
}

// Invocation is one exec of a plugin binary.
type Invocation struct {
	Plugin      string // binary name in PluginDir
	Command     string // ADD, DEL, CHECK, STATUS, GC, VERSION
	ContainerID string
	NetNS       string // CNI_NETNS
	IfName      string
	Args        string // CNI_ARGS
	Config      []byte // stdin
	Env         []string
	Dir         string // where the binary is: PluginDir when empty
	User        uint32 // not 0: run as this uid and gid, without capabilities
}

// Outcome is what the plugin printed and how it exited.
type Outcome struct {
	Stdout []byte
	Stderr []byte
	Err    error  // non-nil when the exit code was not 0
	what   string // "plugin COMMAND container", for OK's message
}

// CNIError decodes stdout as a CNI error; it fails the test if stdout is not one.
func (o Outcome) CNIError(t testing.TB) *types.Error {
	t.Helper()
	if o.Err == nil {
		t.Fatalf("expected the plugin to fail, it printed %s", o.Stdout)
	}
	var e types.Error
	if err := json.Unmarshal(o.Stdout, &e); err != nil || e.Code == 0 {
		t.Fatalf("stdout is not a CNI error (%v): %q (stderr %q)", err, o.Stdout, o.Stderr)
	}
	return &e
}

// Run executes the plugin inside the namespace in (the node; nil: this
// process's namespace), as a runtime would, with CNI_PATH set to inv.Dir
// (default PluginDir). A plugin that delegates (to IPAM) needs its delegate
// built first: call PluginDir(t, "lockfile-ipam"). Stage is the shorter way
// to drive one stage.
func Run(t testing.TB, in ns.NetNS, inv Invocation) Outcome {
	t.Helper()
	dir := inv.Dir
	if dir == "" {
		dir = PluginDir(t, inv.Plugin)
	}
	out := Outcome{what: strings.TrimSpace(inv.Plugin + " " + inv.Command + " " + inv.ContainerID)}
	do := func(ns.NetNS) error {
		cmd := exec.Command(filepath.Join(dir, inv.Plugin))
		cmd.Env = append([]string{
			"CNI_COMMAND=" + inv.Command,
			"CNI_CONTAINERID=" + inv.ContainerID,
			"CNI_NETNS=" + inv.NetNS,
			"CNI_IFNAME=" + inv.IfName,
			"CNI_ARGS=" + inv.Args,
			"CNI_PATH=" + dir,
			"PATH=" + os.Getenv("PATH"),
		}, inv.Env...)
		cmd.Stdin = bytes.NewReader(inv.Config)
		if inv.User != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: inv.User, Gid: inv.User}}
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		out.Err = cmd.Run()
		out.Stdout, out.Stderr = stdout.Bytes(), stderr.Bytes()
		return nil
	}
	if in == nil {
		_ = do(nil)
		return out
	}
	if err := in.Do(do); err != nil {
		t.Fatalf("enter namespace: %v", err)
	}
	return out
}

// MustRun is Run that fails the test unless the plugin exits 0.
func MustRun(t testing.TB, in ns.NetNS, inv Invocation) []byte {
	t.Helper()
	return Run(t, in, inv).OK(t)
}
