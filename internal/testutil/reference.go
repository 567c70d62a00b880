package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ReferenceVersion is the containernetworking/plugins release the swap
// tests and benchmarks run against (scripts/install-deps.sh installs it).
const ReferenceVersion = "v1.9.1"

// referencePackages maps a reference plugin to its package under
// github.com/containernetworking/plugins/plugins.
var referencePackages = map[string]string{
	"host-local": "ipam/host-local",
	"bridge":     "main/bridge",
	"loopback":   "main/loopback",
	"tuning":     "meta/tuning",
	"firewall":   "meta/firewall",
	"portmap":    "meta/portmap",
	"bandwidth":  "meta/bandwidth",
}

var refDir string // this process's build directory, guarded by mu

// ReferencePlugins returns a directory holding every named reference
// plugin (ReferencePluginDir), failing the test when there is none.
func ReferencePlugins(t testing.TB, names ...string) string {
	t.Helper()
	d, err := ReferencePluginDir(names...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// ReferencePluginDir returns a directory holding every named reference
// plugin: $VXVRF_REF_BIN when it has them all (make test points it at
// .tools/cni), else the checkout's .tools/cni (scripts/install-deps.sh),
// else a per-process directory they are built into with
// `go install ...@ReferenceVersion`.
func ReferencePluginDir(names ...string) (string, error) {
	has := func(dir string) bool {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
				return false
			}
		}
		return dir != ""
	}
	if d := os.Getenv("VXVRF_REF_BIN"); has(d) {
		return filepath.Abs(d)
	}
	if root, err := RepoRoot(); err == nil && has(filepath.Join(root, ".tools", "cni")) {
		return filepath.Join(root, ".tools", "cni"), nil
	}
	mu.Lock()
	defer mu.Unlock()
	if refDir == "" {
		d := filepath.Join(os.TempDir(), fmt.Sprintf("vxvrf-ref-%d", os.Getpid()))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
		refDir = d
	}
	if has(refDir) {
		return refDir, nil
	}
	args := []string{"install"}
	for _, n := range names {
		pkg, ok := referencePackages[n]
		if !ok {
			return "", fmt.Errorf("unknown reference plugin %q", n)
		}
		args = append(args, "github.com/containernetworking/plugins/plugins/"+pkg+"@"+ReferenceVersion)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = os.TempDir() // outside this module: a plain versioned install
	cmd.Env = append(os.Environ(), "GOBIN="+refDir, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build reference plugins %v: %w: %s", names, err, out)
	}
	return refDir, nil
}
