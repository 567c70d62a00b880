package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// PreviousRelease is the commit of the project's previous release: the
// last one before shared objects carried ownership marks. Upgrade tests
// run its binaries on a node and today's after them.
const PreviousRelease = "5e65c9d"

// NftIndexRelease is v0.1.0, the last release whose nftables backend kept
// no attachment index (sysctl-firewall's set "attachments"), and whose
// single-key sets carry no key byte order.
const NftIndexRelease = "45d4098"

var releaseDirs = map[string]string{} // commit -> bin directory, guarded by mu

// PreviousPlugins returns a directory holding the previous release's
// plugin binaries: $VXVRF_PREV_BIN when set, else ReleasePlugins.
func PreviousPlugins(t testing.TB) string {
	t.Helper()
	cleanPreviousLock(t)
	if d := os.Getenv("VXVRF_PREV_BIN"); d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	return ReleasePlugins(t, PreviousRelease)
}

// ReleasePlugins returns a directory holding the plugin binaries of a
// release (commit), built once per test process from `git archive` of
// this checkout. Without git or that commit (a source tarball) the test
// skips, saying so.
func ReleasePlugins(t testing.TB, commit string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if d := releaseDirs[commit]; d != "" {
		return d
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		t.Skipf("release %s not available from git in %s (%v: %s)", commit, root, err, out)
	}
	work := filepath.Join(os.TempDir(), fmt.Sprintf("vxvrf-prev-%d", os.Getpid()), commit)
	src, bin := filepath.Join(work, "src"), filepath.Join(work, "bin")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v: %s", commit, err, out)
	}
	for _, p := range Plugins {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, p), "./plugins/"+p)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s of %s: %v: %s", p, commit, err, out)
		}
	}
	_ = os.RemoveAll(src)
	releaseDirs[commit] = bin
	return bin
}

// previousLockDir is where the previous release's sysctl-firewall kept its
// node lock, a hard-coded host path (today's uses an abstract socket).
const previousLockDir = "/run/vxvrf"

// cleanPreviousLock removes, when the test ends, the lock file the
// previous release's sysctl-firewall leaves in the host's /run/vxvrf, and
// the directory, when the test found no such directory.
func cleanPreviousLock(t testing.TB) {
	if _, err := os.Stat(previousLockDir); !os.IsNotExist(err) {
		return
	}
	t.Cleanup(func() {
		_ = os.Remove(filepath.Join(previousLockDir, "sysctl-firewall.lock"))
		_ = os.Remove(previousLockDir) // only when empty
	})
}
