package testutil

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
)

// Tool returns the vxvrf node tool next to the plugins in PluginDir: from
// $VXVRF_BIN when set, else built once per test process from ./cmd/vxvrf.
func Tool(t testing.TB) string {
	t.Helper()
	dir := PluginDir(t)
	mu.Lock()
	defer mu.Unlock()
	if !built["vxvrf"] && os.Getenv("VXVRF_BIN") == "" {
		root, err := RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "vxvrf"), "./cmd/vxvrf")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build vxvrf: %v: %s", err, out)
		}
		built["vxvrf"] = true
	}
	return filepath.Join(dir, "vxvrf")
}

// RunTool runs the vxvrf tool with args inside the namespace in (a node)
// and returns stdout, stderr and the exit code.
func RunTool(t testing.TB, in ns.NetNS, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin := Tool(t)
	err := in.Do(func(ns.NetNS) error {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		stdout, stderr = o.String(), e.String()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			code = exit.ExitCode()
		case err != nil:
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("run vxvrf %v: %v", args, err)
	}
	return stdout, stderr, code
}

// FindTool finds an external tool the tests use (cnitool, …): on PATH
// (make puts .tools/bin first), else in the checkout's .tools/bin
// (scripts/install-deps.sh); "" when neither has it.
func FindTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if root, err := RepoRoot(); err == nil {
		p := filepath.Join(root, ".tools", "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}
