package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A throwaway module whose tests pass, skip or fail as -run picks them,
// so report reads what `go test -json` really writes.
const sample = `package sample

import "testing"

func TestPass(t *testing.T) {}

func TestSkip(t *testing.T) { t.Skip("runtime not installed") }

func TestFail(t *testing.T) { t.Fatal("broken") }
`

func goTestJSON(t *testing.T, dir, run string) []byte {
	t.Helper()
	cmd := exec.Command("go", "test", "-json", "-count=1", "-run", run, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false")
	out, err := cmd.Output()
	// go test exits 1 when a test failed; that run is meant to.
	var exit *exec.ExitError
	if err != nil && (!errors.As(err, &exit) || !strings.Contains(run, "Fail")) {
		t.Fatalf("go test -run %s: %v\n%s", run, err, out)
	}
	return out
}

func TestReportStrict(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go on PATH")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module sample\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sample_test.go"), []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, run      string
		code, strictly int
		says           string
	}{
		{"all passed", "^TestPass$", 0, 0, "1 passed, 0 failed, 0 skipped"},
		{"a test skipped", "^(TestPass|TestSkip)$", 0, 1, "SKIP sample.TestSkip: sample_test.go:7: runtime not installed"},
		{"no test ran", "^NoSuchTest$", 0, 1, "0 passed, 0 failed, 0 skipped"},
		{"a test failed", "^(TestPass|TestFail)$", 1, 1, "--- FAIL sample.TestFail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := goTestJSON(t, dir, tc.run)
			for _, strict := range []bool{false, true} {
				var out bytes.Buffer
				code := report(bytes.NewReader(in), &out, strict)
				want := tc.code
				if strict {
					want = tc.strictly
				}
				if code != want {
					t.Errorf("strict=%v: exit %d, want %d\n%s", strict, code, want, out.String())
				}
				if !strings.Contains(out.String(), tc.says) {
					t.Errorf("strict=%v: report lacks %q:\n%s", strict, tc.says, out.String())
				}
				if strict && want == 1 && tc.code == 0 && !strings.Contains(out.String(), "-strict") {
					t.Errorf("a strict failure does not say why:\n%s", out.String())
				}
			}
		})
	}
}
