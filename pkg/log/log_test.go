package log

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The child mode of TestConcurrentWriters: one writer process.
func TestMain(m *testing.M) {
	if id := os.Getenv("VXVRF_LOG_CHILD"); id != "" {
		os.Exit(child(id))
	}
	os.Exit(m.Run())
}

const (
	writers    = 6
	perWriter  = 1500
	childBytes = 32 << 10
)

func child(id string) int {
	backups, _ := strconv.Atoi(os.Getenv("VXVRF_LOG_MAXBACKUPS"))
	w := &File{Path: os.Getenv("VXVRF_LOG_FILE"), MaxBytes: childBytes, MaxBackups: backups}
	pad := strings.Repeat("x", 60)
	for i := 0; i < perWriter; i++ {
		if _, err := fmt.Fprintf(w, "begin %s %d %s end\n", id, i, pad); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// runWriters starts writer processes appending to path at once.
func runWriters(t *testing.T, path string, maxBackups int) {
	t.Helper()
	var cmds []*exec.Cmd
	for i := 0; i < writers; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "VXVRF_LOG_CHILD="+strconv.Itoa(i), "VXVRF_LOG_FILE="+path, "VXVRF_LOG_MAXBACKUPS="+strconv.Itoa(maxBackups))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
}

// TestConcurrentWriters: processes appending to one file while it rotates
// lose no line and tear none, and every file stays near the size limit.
func TestConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cni.log")
	runWriters(t, path, 1000)
	w := &File{Path: path}
	backups, err := w.Backups()
	if err != nil {
		t.Fatal(err)
	}
	// 6*1500 lines of ~80 bytes is ~700 KiB: about 20 rotations at 32 KiB.
	if len(backups) < 10 {
		t.Fatalf("only %d rotations: %v", len(backups), backups)
	}
	seen := map[string]bool{}
	for _, f := range append(backups, path) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A file may exceed the limit only by lines of writers that had it
		// open while it was rotated.
		if len(b) > childBytes+writers*200 {
			t.Errorf("%s: %d bytes, limit %d", f, len(b), childBytes)
		}
		name := filepath.Base(f)
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 5 || f[0] != "begin" || f[4] != "end" {
				t.Fatalf("torn line in %s: %q", name, sc.Text())
			}
			key := f[1] + "/" + f[2]
			if seen[key] {
				t.Errorf("line %s twice", key)
			}
			seen[key] = true
		}
	}
	if len(seen) != writers*perWriter {
		t.Errorf("%d lines in the files, %d written", len(seen), writers*perWriter)
	}
}

// TestPrune: rotation keeps MaxBackups rotated files.
func TestPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cni.log")
	runWriters(t, path, 3)
	backups, err := (&File{Path: path}).Backups()
	if err != nil {
		t.Fatal(err)
	}
	if len(backups) != 3 {
		t.Errorf("%d backups, want 3: %v", len(backups), backups)
	}
	if _, err := os.Stat(path); err != nil {
		t.Error(err)
	}
}

// TestNewDefault: without a file only errors are logged, to stderr.
func TestNewDefault(t *testing.T) {
	var stderr bytes.Buffer
	l, done := New(Config{}, &stderr)
	l.Info("hidden")
	l.Error("shown", "k", "v")
	done()
	if s := stderr.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "msg=shown k=v") {
		t.Errorf("stderr: %q", s)
	}
}

// TestNewFile: the level applies to the file; errors also reach stderr.
func TestNewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "cni.log")
	var stderr bytes.Buffer
	l, done := New(Config{File: path, Level: "warn"}, &stderr)
	l.Info("skipped")
	l.Warn("kept")
	l.Error("bad")
	done()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); strings.Contains(s, "skipped") || !strings.Contains(s, "msg=kept") || !strings.Contains(s, "msg=bad") {
		t.Errorf("file: %q", s)
	}
	if s := stderr.String(); strings.Contains(s, "kept") || !strings.Contains(s, "msg=bad") {
		t.Errorf("stderr: %q", s)
	}
}
