// Package install puts the plugin binaries and this node's conflist on a
// node: copied and rendered atomically, idempotently, under a DESTDIR-style
// root. The DaemonSet's installer and `make install` both use it.
package install

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tempMarker is part of every temporary file name: ".<name>.vxvrf-tmp-<random>".
// Runtimes never pick such a file up: it is hidden, and its extension is not
// .conf, .conflist or .json (libcni's ConfFiles filter), and no CNI type names it.
const tempMarker = ".vxvrf-tmp-"

// WriteFileAtomic makes path hold data with the given mode. A reader sees the
// old content or the new one, never a mix: the data goes to a temporary file
// in the same directory, is fsynced, chmodded and renamed over path, and the
// directory is fsynced. A file that already holds data with mode is left
// alone (same inode, same mtime); changed reports whether anything was written.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode) (changed bool, err error) {
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Mode().Perm() == mode.Perm() && st.Size() == int64(len(data)) {
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			return false, nil
		}
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+tempMarker+"*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return false, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Chmod(mode.Perm()); err != nil {
		return false, fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return false, fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return false, fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		// Make the rename itself durable; a failure here does not undo it.
		_ = d.Sync()
		d.Close()
	}
	return true, nil
}

// RemoveStaleTemps deletes the temporary files a killed installer may have left
// in dir (only names WriteFileAtomic makes). It returns what it removed.
func RemoveStaleTemps(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var removed []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, ".") || !strings.Contains(n, tempMarker) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, n)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("remove stale %s: %w", p, err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}
