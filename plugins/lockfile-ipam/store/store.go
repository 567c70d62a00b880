// Package store persists lockfile-ipam's per-network state: one JSON file
// <dataDir>/naming.LeaseFile(network), guarded by a gofrs/flock lock on
// <dataDir>/naming.LockFile(network). The lock is held from Open to Close,
// across the whole read-modify-write; writes are atomic (temp file in the
// same directory, fsync, rename, fsync of the directory). The lock file is
// never removed.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"

	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

// RetryDelay is how often a waiting Open retries the lock.
const RetryDelay = 5 * time.Millisecond

// ErrLockTimeout is returned by Open when the lock was not acquired in time.
var ErrLockTimeout = errors.New("timed out waiting for the state lock")

// ErrCorrupt is returned by Load when the state file cannot be trusted.
var ErrCorrupt = errors.New("corrupt state file")

// Store is one network's locked state file.
type Store struct {
	dir     string
	network string
	lock    *flock.Flock
}

// Paths returns the state and lock file paths of network under dataDir.
func Paths(dataDir, network string) (state, lock string) {
	return filepath.Join(dataDir, naming.LeaseFile(network)), filepath.Join(dataDir, naming.LockFile(network))
}

// Open creates dataDir if needed and takes the network's lock, waiting at
// most timeout. Close releases it.
func Open(dataDir, network string, timeout time.Duration) (*Store, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	_, lockPath := Paths(dataDir, network)
	l := flock.New(lockPath, flock.SetPermissions(0o600))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ok, err := l.TryLockContext(ctx, RetryDelay)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		l.Close()
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	if !ok {
		l.Close()
		return nil, fmt.Errorf("%w: %s held for more than %s", ErrLockTimeout, lockPath, timeout)
	}
	return &Store{dir: dataDir, network: network, lock: l}, nil
}

// Close releases the lock (the lock file stays).
func (s *Store) Close() error {
	if err := s.lock.Unlock(); err != nil {
		s.lock.Close()
		return err
	}
	return s.lock.Close()
}

// Path is the state file.
func (s *Store) Path() string {
	p, _ := Paths(s.dir, s.network)
	return p
}

// Load reads the state; a missing file is an empty state. A file that does
// not decode or validate is ErrCorrupt and is left as it is.
func (s *Store) Load() (*allocator.State, error) {
	data, err := os.ReadFile(s.Path())
	if errors.Is(err, os.ErrNotExist) {
		return allocator.NewState(s.network), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", s.Path(), err)
	}
	st, err := Decode(data, s.network)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v (fix or remove it; it is not overwritten)", ErrCorrupt, s.Path(), err)
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

// Save writes the state atomically: temp file in the data dir, write,
// fsync, rename over the state file, fsync the directory. Temp files left
// by a crashed writer are removed first (the lock makes them stale).
func (s *Store) Save(st *allocator.State) error {
	data, err := Encode(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	pattern := "." + naming.LeaseFile(s.network) + ".tmp-"
	if stale, _ := filepath.Glob(filepath.Join(s.dir, pattern+"*")); len(stale) > 0 {
		for _, f := range stale {
			os.Remove(f)
		}
	}
	tmp, err := os.CreateTemp(s.dir, pattern+"*")
	if err != nil {
		return fmt.Errorf("create temp state: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("chmod temp state: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write temp state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync temp state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close temp state: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.Path()); err != nil {
		return fmt.Errorf("rename state into place: %w", err)
	}
	done = true
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("open data dir for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync data dir: %w", err)
	}
	return nil
}
