// Package log is the plugins' logging: log/slog lines to a file shared by
// every plugin process of the node, rotated by size, plus errors on stderr.
//
// Configuration, per plugin (the "log" key of its config):
//
//	"log": {"file": "/var/log/vxvrf/cni.log", "level": "info", "maxSizeMB": 10, "maxBackups": 5}
//
// Without "file" a plugin logs errors only, to stderr (as before this
// package). stdout is never written: it carries the CNI result.
//
// Many plugin processes append to the same file at once. Each record is
// one write(2) of a whole line on an O_APPEND descriptor, so lines never
// interleave. Rotation (by gopkg.in/natefinch/lumberjack.v2: the file is
// renamed to name-<timestamp>.ext and a new one created) happens only under
// an exclusive flock on "<file>.lock", after re-checking the size, so two
// processes never rotate the same file twice; a process reopens the file
// under the same lock when it sees it was rotated. A line written by a
// process that still held the old descriptor lands in the newest backup,
// never lost.
package log

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"gopkg.in/natefinch/lumberjack.v2"
)

// Defaults of Config.
const (
	DefaultLevel      = "info"
	DefaultMaxSizeMB  = 10
	DefaultMaxBackups = 5
)

// Config is the "log" section of a plugin's configuration.
type Config struct {
	// File is the log file; empty: errors only, to stderr.
	File string `json:"file,omitempty"`
	// Level is debug, info, warn or error (default info).
	Level string `json:"level,omitempty"`
	// MaxSizeMB rotates the file when it grows past this size (default 10).
	MaxSizeMB int `json:"maxSizeMB,omitempty"`
	// MaxBackups is how many rotated files are kept (default 5).
	MaxBackups int `json:"maxBackups,omitempty"`
}

// Validate checks the values (the strict config decoder calls it).
func (c Config) Validate() error {
	if c.File != "" && !filepath.IsAbs(c.File) {
		return fmt.Errorf("file %q must be an absolute path", c.File)
	}
	if _, err := parseLevel(c.Level); err != nil {
		return err
	}
	if c.MaxSizeMB < 0 {
		return fmt.Errorf("maxSizeMB %d must be positive", c.MaxSizeMB)
	}
	if c.MaxBackups < 0 {
		return fmt.Errorf("maxBackups %d must be 0 or more", c.MaxBackups)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("level %q: must be debug, info, warn or error", s)
}

// New returns a logger for cfg and a function that closes its file. Errors
// always go to stderr too. A file that cannot be opened is reported on
// stderr and the logger falls back to stderr only: logging never fails a
// verb.
func New(cfg Config, stderr io.Writer) (*slog.Logger, func()) {
	errOut := slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})
	if cfg.File == "" {
		return slog.New(errOut), func() {}
	}
	level, err := parseLevel(cfg.Level)
	if err != nil {
		level = slog.LevelInfo
	}
	maxMB := cfg.MaxSizeMB
	if maxMB == 0 {
		maxMB = DefaultMaxSizeMB
	}
	backups := cfg.MaxBackups
	if backups == 0 {
		backups = DefaultMaxBackups
	}
	w := &File{Path: cfg.File, MaxBytes: int64(maxMB) << 20, MaxBackups: backups}
	if err := w.open(); err != nil {
		fmt.Fprintf(stderr, "vxvrf log: %v; logging to stderr only\n", err)
		return slog.New(errOut), func() {}
	}
	fileOut := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(fanout{fileOut, errOut}), func() { _ = w.Close() }
}

// fanout sends each record to every handler that wants its level.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (f fanout) WithAttrs(a []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(a)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}

// File is an io.Writer appending whole lines to Path, shared safely with
// other processes, rotated when it exceeds MaxBytes (keeping MaxBackups
// rotated files).
type File struct {
	Path       string
	MaxBytes   int64
	MaxBackups int

	mu sync.Mutex
	f  *os.File
}

func (w *File) lock() (*flock.Flock, error) {
	l := flock.New(w.Path + ".lock")
	if err := l.Lock(); err != nil {
		return nil, fmt.Errorf("lock %s: %w", l.Path(), err)
	}
	return l, nil
}

// open (re)opens Path for appending, under the rotation lock so it never
// opens a file lumberjack is about to truncate.
func (w *File) open() error {
	if err := os.MkdirAll(filepath.Dir(w.Path), 0o755); err != nil {
		return err
	}
	l, err := w.lock()
	if err != nil {
		return err
	}
	defer l.Unlock()
	f, err := os.OpenFile(w.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	if w.f != nil {
		_ = w.f.Close()
	}
	w.f = f
	return nil
}

// rotated reports whether Path no longer names the file w.f is open on.
func (w *File) rotated() bool {
	a, err1 := w.f.Stat()
	b, err2 := os.Stat(w.Path)
	return err1 != nil || err2 != nil || !os.SameFile(a, b)
}

// Write appends p (one whole record) with a single write(2), then rotates
// if the file grew past MaxBytes.
func (w *File) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil || w.rotated() {
		if err := w.open(); err != nil {
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	if err != nil {
		return n, err
	}
	if st, err := w.f.Stat(); err == nil && st.Size() > w.MaxBytes {
		if err := w.rotate(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// rotate moves the file aside under the lock, unless another process did
// already (the size is checked again under the lock).
func (w *File) rotate() error {
	l, err := w.lock()
	if err != nil {
		return err
	}
	defer l.Unlock()
	st, err := os.Stat(w.Path)
	if err != nil || st.Size() <= w.MaxBytes {
		return nil
	}
	// lumberjack names the backup by the millisecond; two rotations in
	// one millisecond would overwrite the first backup.
	for {
		if _, err := os.Stat(w.backupName(time.Now())); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	lj := &lumberjack.Logger{Filename: w.Path}
	if err := lj.Rotate(); err != nil {
		return err
	}
	_ = lj.Close()
	f, err := os.OpenFile(w.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	_ = w.f.Close()
	w.f = f
	return w.prune()
}

// backupTimeFormat is lumberjack's timestamp in backup names.
const backupTimeFormat = "2006-01-02T15-04-05.000"

// backupName is the name lumberjack gives a backup made at t.
func (w *File) backupName(t time.Time) string {
	ext := filepath.Ext(w.Path)
	return strings.TrimSuffix(w.Path, ext) + "-" + t.UTC().Format(backupTimeFormat) + ext
}

// Backups lists the rotated files of Path, oldest first.
func (w *File) Backups() ([]string, error) {
	ext := filepath.Ext(w.Path)
	prefix := strings.TrimSuffix(w.Path, ext) + "-"
	all, err := filepath.Glob(prefix + "*" + ext)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range all {
		ts := strings.TrimSuffix(strings.TrimPrefix(p, prefix), ext)
		if _, err := time.Parse(backupTimeFormat, ts); err == nil {
			out = append(out, p)
		}
	}
	sort.Strings(out) // lumberjack's timestamp format sorts by time
	return out, nil
}

// prune removes the oldest backups beyond MaxBackups (done here, under the
// lock and synchronously: lumberjack's own cleanup runs in a goroutine a
// short-lived plugin process may not wait for).
func (w *File) prune() error {
	b, err := w.Backups()
	if err != nil || len(b) <= w.MaxBackups {
		return err
	}
	for _, p := range b[:len(b)-w.MaxBackups] {
		if err := os.Remove(p); err != nil && !errors.Is(err, syscall.ENOENT) {
			return err
		}
	}
	return nil
}

// Close closes the file.
func (w *File) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
