// Package sysctl reads and writes network sysctls of the calling thread's
// network namespace. Keys are limited to the net.* tree: a key that does not
// resolve to a path below /proc/sys/net is refused.
//
// Not containernetworking/plugins/pkg/utils/sysctl: that one joins any key
// to /proc/sys, so "net/../../kernel/x" reaches outside net.*; keys here
// come from users' configs (sysctl-firewall's sysctls), so they are
// confined to net.* and the path is checked element by element.
package sysctl

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

const root = "/proc/sys/net"

// Path validates key and returns its file under /proc/sys/net. key may use
// dots ("net.ipv4.ip_forward") or slashes ("net/ipv4/conf/eth0.100/rp_filter",
// needed when an interface name contains a dot).
func Path(key string) (string, error) {
	k := key
	if !strings.Contains(k, "/") {
		k = strings.ReplaceAll(k, ".", "/")
	}
	if !strings.HasPrefix(k, "net/") {
		return "", fmt.Errorf("sysctl %q: only net.* keys are allowed", key)
	}
	for _, part := range strings.Split(k, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("sysctl %q: invalid path element %q", key, part)
		}
	}
	p := filepath.Join("/proc/sys", k)
	if !strings.HasPrefix(p, root+"/") {
		return "", fmt.Errorf("sysctl %q leaves %s", key, root)
	}
	return p, nil
}

// Get returns the value of key, trimmed.
func Get(key string) (string, error) {
	p, err := Path(key)
	if err != nil {
		return "", err
	}
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", key, err)
	}
	defer f.Close()
	return (&File{key: key, f: f}).Get()
}

// Set writes value to key and reads it back, through one open of its file.
func Set(key, value string) error {
	p, err := Path(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("write sysctl %s=%s: %w", key, value, err)
	}
	s := &File{key: key, f: f}
	defer s.Close()
	return s.Set(value)
}

// Check returns an error unless key currently holds value.
func Check(key, value string) error {
	got, err := Get(key)
	if err != nil {
		return err
	}
	if got != strings.TrimSpace(value) {
		return fmt.Errorf("sysctl %s is %q, want %q", key, got, value)
	}
	return nil
}

// Exists reports whether key names an existing sysctl (a kernel feature probe).
func Exists(key string) bool {
	p, err := Path(key)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// File is one sysctl opened once (Opener.Open): Get and Set go through
// the same file descriptor, so a read-then-write costs one open.
type File struct {
	key string
	f   *os.File
}

// Opener opens sysctls walking each directory once. Under /proc/sys/net a
// walk of a per-namespace directory (net/ipv4, net/ipv6) compares the
// cached entries of every network namespace that looked there since this
// one did (one dentry per namespace on one hash chain): on a node with
// hundreds of pods that is about a millisecond per walk. An Opener keeps
// each directory it walked open (os.Root) and opens keys relative to it.
// Its directories belong to the network namespace of the thread that
// opened them: use one Opener per namespace.
type Opener struct {
	dirs map[string]*os.Root
}

// NewOpener returns an Opener with no directory open yet.
func NewOpener() *Opener { return &Opener{dirs: map[string]*os.Root{}} }

// Open opens key for reading and writing. A key the kernel does not have
// is an error wrapping fs.ErrNotExist.
func (o *Opener) Open(key string) (*File, error) {
	p, err := Path(key)
	if err != nil {
		return nil, err
	}
	dir, name := filepath.Split(p)
	root := o.dirs[dir]
	if root == nil {
		if root, err = os.OpenRoot(dir); err != nil {
			return nil, fmt.Errorf("open sysctl %s: %w", key, err)
		}
		o.dirs[dir] = root
	}
	f, err := root.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open sysctl %s: %w", key, err)
	}
	return &File{key: key, f: f}, nil
}

// Close closes the directories.
func (o *Opener) Close() {
	for _, r := range o.dirs {
		_ = r.Close()
	}
}

// Get returns the whole value, trimmed. It is read in one pread at
// offset 0 into a buffer larger than any sysctl value: some handlers
// (bitmaps, lists) do not continue a read at another offset.
func (s *File) Get() (string, error) {
	buf := make([]byte, 64<<10)
	n, err := s.f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read sysctl %s: %w", s.key, err)
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

// Set writes value at offset 0 (a sysctl ignores a write elsewhere) and
// reads it back.
func (s *File) Set(value string) error {
	if _, err := s.f.WriteAt([]byte(value), 0); err != nil {
		return fmt.Errorf("write sysctl %s=%s: %w", s.key, value, err)
	}
	got, err := s.Get()
	if err != nil {
		return err
	}
	if got != strings.TrimSpace(value) {
		return fmt.Errorf("sysctl %s reads %q after writing %q", s.key, got, value)
	}
	return nil
}

// Close closes the file.
func (s *File) Close() error { return s.f.Close() }
