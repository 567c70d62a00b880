// Package store persists lockfile-ipam's per-network state: one JSON file
// <dataDir>/naming.LeaseFile(network), guarded by a flock(2) lock on
// <dataDir>/naming.LockFile(network). The lock is held from Open to Close,
// across the whole read-modify-write; writes are atomic (temp file in the
// same directory, fsync, rename, fsync of the directory).
//
// Files are opened safely: the data directory is opened once with
// O_NOFOLLOW (a symlink in its place is refused; its parent directories
// are the operator's and are followed), and the lock, state and temp files
// are opened relative to it (openat) with O_NOFOLLOW, so a symlink planted
// in the data directory is never followed, dangling or not. The state and
// lock files are created with mode 0600 (the state lists container IDs);
// a state file that is not a regular file, or larger than MaxStateSize,
// is refused.
//
// Allocate and Release, ADD's and DEL's path, edit a file this package
// wrote without decoding it, trusted through a stamp kept in the lock file
// (edit.go); anything else is decoded and validated first.
//
// The lock file exists only next to a state file: Close removes it (and
// the directories its Open created) when the network has no state file,
// so a failed first ADD leaves nothing behind. A waiter that locked a lock
// file removed meanwhile notices (the path no longer names the inode it
// holds) and opens the new one.
package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

// RetryDelay is how often a waiting Open retries the lock.
const RetryDelay = 5 * time.Millisecond

// MaxStateSize bounds the state file Load reads.
const MaxStateSize = 256 << 20

// ErrLockTimeout is returned by Open when the lock was not acquired in time.
var ErrLockTimeout = errors.New("timed out waiting for the state lock")

// ErrCorrupt is returned by Load when the state file cannot be trusted.
var ErrCorrupt = errors.New("corrupt state file")

// Store is one network's locked state file.
type Store struct {
	dir     string
	network string
	dirFD   int
	lockFD  int
	created []string // directories this Open created, outermost first
	edited  bool     // the last Allocate or Release edited a stamped file
	leases  int      // leases in the state after the last Allocate, Release or Update
}

// Leases is the number of leases the state holds after the last Allocate,
// Release or Update (for the verb's log line).
func (s *Store) Leases() int { return s.leases }

// Paths returns the state and lock file paths of network under dataDir.
func Paths(dataDir, network string) (state, lock string) {
	return filepath.Join(dataDir, naming.LeaseFile(network)), filepath.Join(dataDir, naming.LockFile(network))
}

// Open creates dataDir if needed (mode 0755) and takes the network's
// lock, waiting at most timeout. Close releases it.
func Open(dataDir, network string, timeout time.Duration) (*Store, error) {
	deadline := time.Now().Add(timeout)
	for {
		s := &Store{dir: dataDir, network: network, dirFD: -1, lockFD: -1}
		err := s.open(deadline)
		if err == nil {
			return s, nil
		}
		s.closeFDs()
		// ENOENT: another Close removed the directory between our mkdir
		// and our open; start again.
		if !errors.Is(err, unix.ENOENT) || time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(RetryDelay)
	}
}

func (s *Store) open(deadline time.Time) error {
	if err := s.mkdirs(); err != nil {
		return err
	}
	fd, err := unix.Open(s.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return fmt.Errorf("data dir %s is a symlink or not a directory; refusing to follow it: %w", s.dir, err)
		}
		return fmt.Errorf("open data dir %s: %w", s.dir, err)
	}
	s.dirFD = fd
	_, lockPath := Paths(s.dir, s.network)
	lockName := naming.LockFile(s.network)
	for {
		fd, err := unix.Openat(s.dirFD, lockName, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("open lock %s: %w", lockPath, err)
		}
		s.lockFD = fd
		if err := s.lock(lockPath, deadline); err != nil {
			return err
		}
		// The lock file may have been removed (Close) while we waited:
		// a lock on a removed inode protects nothing.
		var held, now unix.Stat_t
		if err := unix.Fstat(s.lockFD, &held); err != nil {
			return fmt.Errorf("stat lock %s: %w", lockPath, err)
		}
		if held.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("lock %s is not a regular file", lockPath)
		}
		err = unix.Fstatat(s.dirFD, lockName, &now, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && held.Dev == now.Dev && held.Ino == now.Ino {
			// Only the lock holder writes the temp file: one found now was
			// left by a writer killed inside Save. It lists every lease
			// (container IDs), so it goes at once, not at the next Save:
			// a DEL that finds no lease saves nothing.
			_ = unix.Unlinkat(s.dirFD, tempName(s.network), 0)
			return nil
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("stat lock %s: %w", lockPath, err)
		}
		unix.Close(s.lockFD)
		s.lockFD = -1
	}
}

// mkdirs creates the data directory and its missing parents (0755),
// remembering which it created.
func (s *Store) mkdirs() error {
	var missing []string
	for d := s.dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		err := unix.Mkdir(missing[i], 0o755)
		if err == nil {
			s.created = append(s.created, missing[i])
		} else if !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create data dir %s: %w", missing[i], err)
		}
	}
	return nil
}

// lock takes the flock on lockFD, retrying until deadline.
func (s *Store) lock(lockPath string, deadline time.Time) error {
	start := time.Now()
	for {
		err := unix.Flock(s.lockFD, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("lock %s: %w", lockPath, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s held for more than %s", ErrLockTimeout, lockPath, time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(RetryDelay)
	}
}

func (s *Store) closeFDs() {
	if s.lockFD >= 0 {
		unix.Close(s.lockFD) // the last close releases the flock
		s.lockFD = -1
	}
	if s.dirFD >= 0 {
		unix.Close(s.dirFD)
		s.dirFD = -1
	}
}

// Close releases the lock. When the network has no state file (nothing
// was ever saved: a failed first ADD, a DEL or STATUS of an unused
// network) it first removes the lock file, and the directories this Open
// created when they are empty, so such a call leaves nothing behind.
func (s *Store) Close() error {
	defer s.closeFDs()
	var st unix.Stat_t
	if err := unix.Fstatat(s.dirFD, naming.LeaseFile(s.network), &st, unix.AT_SYMLINK_NOFOLLOW); !errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err := unix.Unlinkat(s.dirFD, naming.LockFile(s.network), 0); err != nil {
		return nil
	}
	for i := len(s.created) - 1; i >= 0; i-- {
		if unix.Rmdir(s.created[i]) != nil { // not empty: another network's files
			break
		}
	}
	return nil
}

// Path is the state file.
func (s *Store) Path() string {
	p, _ := Paths(s.dir, s.network)
	return p
}

// Load reads the state; a missing file is an empty state. A file that does
// not decode or validate, is not a regular file or is larger than
// MaxStateSize is ErrCorrupt and is left as it is.
func (s *Store) Load() (*allocator.State, error) {
	fd, err := unix.Openat(s.dirFD, naming.LeaseFile(s.network), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return allocator.NewState(s.network), nil
	}
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%w %s: a symlink; refusing to follow it", ErrCorrupt, s.Path())
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", s.Path(), err)
	}
	f := os.NewFile(uintptr(fd), s.Path())
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", s.Path(), err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w %s: not a regular file (%s)", ErrCorrupt, s.Path(), fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", s.Path(), err)
	}
	if len(data) > MaxStateSize {
		return nil, fmt.Errorf("%w %s: larger than %d bytes", ErrCorrupt, s.Path(), MaxStateSize)
	}
	st, err := Decode(data, s.network)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w (fix or remove it; it is not overwritten)", ErrCorrupt, s.Path(), err)
	}
	return st, nil
}

// Decode parses and validates a state file's content.
// A file in the subset parseState reads (what Encode writes) skips
// encoding/json; any other is decoded by it.
func Decode(data []byte, network string) (*allocator.State, error) {
	st, ok := parseState(data)
	if !ok {
		var err error
		if st, err = decodeJSON(data); err != nil {
			return nil, err
		}
	}
	if err := st.Validate(network); err != nil {
		return nil, err
	}
	st.Normalize()
	return st, nil
}

// decodeJSON is the reference decoding: encoding/json, unknown keys and
// trailing data refused.
func decodeJSON(data []byte) (*allocator.State, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var st allocator.State
	if err := dec.Decode(&st); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the state object")
	}
	return &st, nil
}

// Encode renders a state the way Save writes it.
func Encode(st *allocator.State) ([]byte, error) {
	st.Normalize()
	if data, ok := appendState(make([]byte, 0, 64+160*len(st.Leases)), st); ok {
		return data, nil
	}
	return json.Marshal(st) // only to report the address it cannot encode
}

// tempName is the state file's temp file. One name per network is
// enough: only the lock holder writes it.
func tempName(network string) string { return "." + naming.LeaseFile(network) + ".tmp" }

// Save writes the state atomically: temp file (0600) in the data dir,
// write, fsync, rename over the state file, fsync the directory. A temp
// file left by a crashed writer is removed first (the lock makes it
// stale); so are the randomly named ones earlier versions left. Not
// google/renameio: every step here goes through the data directory's file
// descriptor (openat with O_NOFOLLOW, renameat, fsync of that descriptor),
// so a symlink swapped into the path cannot redirect the write; renameio
// works on path names.
func (s *Store) Save(st *allocator.State) error {
	data, err := Encode(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return s.write(stampable(st), data)
}

// write puts the concatenated pieces in place as the state file (Save's
// steps) and then stamps it (trusted: it is what Encode writes for a
// validated state without escapes) or clears the stamp.
func (s *Store) write(trusted bool, pieces ...[]byte) error {
	tmp := tempName(s.network)
	s.removeStaleTemps(tmp)
	fd, err := unix.Openat(s.dirFD, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create temp state %s: %w", filepath.Join(s.dir, tmp), err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(s.dir, tmp))
	done := false
	defer func() {
		if !done {
			f.Close()
			_ = unix.Unlinkat(s.dirFD, tmp, 0)
		}
	}()
	if err := f.Chmod(0o600); err != nil { // the umask may have kept bits off; never on
		return fmt.Errorf("chmod temp state: %w", err)
	}
	for _, p := range pieces {
		if _, err := f.Write(p); err != nil {
			return fmt.Errorf("write temp state: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync temp state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close temp state: %w", err)
	}
	s.writeStamp(false) // from here on the state file may be either
	if err := unix.Renameat(s.dirFD, tmp, s.dirFD, naming.LeaseFile(s.network)); err != nil {
		_ = unix.Unlinkat(s.dirFD, tmp, 0)
		done = true
		return fmt.Errorf("rename state into place: %w", err)
	}
	done = true
	if err := unix.Fsync(s.dirFD); err != nil {
		return fmt.Errorf("fsync data dir: %w", err)
	}
	s.writeStamp(trusted)
	return nil
}

// removeStaleTemps unlinks tmp and the ".<lease file>.tmp-*" files of
// earlier versions (never following anything: unlink removes a link).
func (s *Store) removeStaleTemps(tmp string) {
	_ = unix.Unlinkat(s.dirFD, tmp, 0)
	fd, err := unix.Openat(s.dirFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	d := os.NewFile(uintptr(fd), s.dir)
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		if strings.HasPrefix(n, tmp+"-") {
			_ = unix.Unlinkat(s.dirFD, n, 0)
		}
	}
}
