package store

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"

	current "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

// ADD and DEL change one lease of a file that holds thousands. Decoding
// the whole file into a State, validating it and encoding it again made
// their cost grow by ~2.5 µs per lease; instead they edit the file's bytes
// (the edit type): the lease is found by a binary search over the sorted
// lease lines, an address's use by a byte search over them, and the new
// file is the old one with one line inserted or cut out and the cursors
// re-encoded. What is left that grows with the leases is copying bytes
// (read, checksum, write), ~10 GB/s work.
//
// Editing instead of decoding is sound only for a file that is exactly
// what Save or an edit wrote (sorted, validated, in the fast subset without
// escapes): the stamp says so. It is written into the lock file (under the
// lock, after the state file is in place) and holds the state file's size
// and CRC-32C; a state file that does not match it (written by an earlier
// version, edited by hand, or renamed into place by a writer killed before
// its stamp) takes the decoding path, which validates it and stamps what
// it saves. A missing, torn or stale stamp costs one slow command, never a
// wrong answer.

// stampMagic starts a stamp; stampLen is a stamp's fixed length.
const (
	stampMagic = "vxvrf-ipam-state v1 "
	stampLen   = len(stampMagic) + 16 + 1 + 8 + 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// stampOf is the stamp of a state file's content.
func stampOf(data []byte) []byte {
	return fmt.Appendf(nil, "%s%016x %08x\n", stampMagic, len(data), crc32.Checksum(data, castagnoli))
}

// writeStamp records data as the state file's trusted content, or (data
// nil) that there is none. Failing is harmless: a stamp that does not
// match the state file only sends the next command down the decoding
// path.
func (s *Store) writeStamp(data []byte) {
	st := bytes.Repeat([]byte{'-'}, stampLen) // never matches
	st[stampLen-1] = '\n'
	if data != nil {
		st = stampOf(data)
	}
	_, _ = unix.Pwrite(s.lockFD, st, 0)
}

// readTrusted returns the state file's content when it matches the stamp;
// ok is false for anything else (no file, no stamp, another content, a
// symlink or special file: the decoding path reports those).
func (s *Store) readTrusted() (data []byte, ok bool) {
	stamp := make([]byte, stampLen)
	if n, err := unix.Pread(s.lockFD, stamp, 0); err != nil || n != stampLen || !bytes.HasPrefix(stamp, []byte(stampMagic)) {
		return nil, false
	}
	fd, err := unix.Openat(s.dirFD, naming.LeaseFile(s.network), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	f := os.NewFile(uintptr(fd), s.Path())
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > MaxStateSize {
		return nil, false
	}
	data = make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, false
	}
	if !bytes.Equal(stamp, stampOf(data)) {
		return nil, false
	}
	return data, true
}

// stampable reports whether Save's encoding of st may be stamped: every
// string is written without escapes (the edits read strings by their
// quotes).
func stampable(st *allocator.State) bool {
	if !plainASCII(st.Network) {
		return false
	}
	for _, l := range st.Leases {
		if !plainASCII(l.ContainerID) || !plainASCII(l.IfName) {
			return false
		}
	}
	for k := range st.LastReserved {
		if !plainASCII(k) {
			return false
		}
	}
	return true
}

// edit is a trusted state file, taken apart without decoding its leases:
//
//	data[:hs]      the header, up to the leases' '['
//	data[hs:te]    the leases region: "\n{lease}," per lease, the last
//	               without its comma; empty without leases
//	data[te:]      "\n" (with leases) and the tail: lastReserved
type edit struct {
	data   []byte
	hs, te int
	last   map[string]net.IP
}

// lineStart begins every lease line.
const lineStart = "\n{\"containerID\":\""

// openEdit reads the state file for an edit; ok is false when it is not
// trusted or not in the expected shape (then the caller decodes).
func (s *Store) openEdit() (*edit, bool) {
	if !plainASCII(s.network) {
		return nil, false
	}
	data, ok := s.readTrusted()
	if !ok {
		return nil, false
	}
	header := appendHeader(nil, allocator.StateVersion, s.network)
	tail := bytes.LastIndex(data, []byte(tailKey))
	if !bytes.HasPrefix(data, header) || tail < len(header) || !bytes.HasSuffix(data, []byte("}}\n")) {
		return nil, false
	}
	e := &edit{data: data, hs: len(header), te: tail}
	if tail > e.hs {
		e.te = tail - 1
		if data[e.te] != '\n' || !bytes.HasPrefix(data[e.hs:], []byte(lineStart)) {
			return nil, false
		}
	}
	m := data[tail+len(tailKey) : len(data)-2]
	p := &parser{d: m, s: string(m)}
	e.last = p.ipMap()
	if p.bad || p.i != len(m) {
		return nil, false
	}
	return e, true
}

// region is the leases' lines.
func (e *edit) region() []byte { return e.data[e.hs:e.te] }

// keyAt is the attachment of the line starting at p (a '\n' of the
// region); ok is false when the line is not one Save writes.
func (e *edit) keyAt(p int) (cid, ifname string, ok bool) {
	r := e.region()[p:]
	if !bytes.HasPrefix(r, []byte(lineStart)) {
		return "", "", false
	}
	r = r[len(lineStart):]
	i := bytes.IndexByte(r, '"')
	const mid = `","ifname":"`
	if i < 0 || !bytes.HasPrefix(r[i:], []byte(mid)) {
		return "", "", false
	}
	cid, r = string(r[:i]), r[i+len(mid):]
	j := bytes.IndexByte(r, '"')
	if j < 0 {
		return "", "", false
	}
	return cid, string(r[:j]), true
}

// nextLine is the start of the first line at or after off, or the
// region's end.
func (e *edit) nextLine(off int) int {
	r := e.region()
	if i := bytes.IndexByte(r[off:], '\n'); i >= 0 {
		return off + i
	}
	return len(r)
}

// find is where the lease of (cid, ifname) is or would go: the start of
// the first line whose attachment is not before it (or the region's end),
// by a binary search over byte offsets; found says whether that line is
// the attachment's.
func (e *edit) find(cid, ifname string) (at int, found, ok bool) {
	key := allocator.Lease{ContainerID: cid, IfName: ifname}
	lo, hi := 0, len(e.region())
	// notBefore(x): the first line at or after x is the end or not before
	// the key; false for every x up to the last line before the key.
	notBefore := func(x int) (bool, bool) {
		p := e.nextLine(x)
		if p == len(e.region()) {
			return true, true
		}
		c, i, ok := e.keyAt(p)
		return compareKeys(c, i, key) >= 0, ok
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		nb, ok := notBefore(mid)
		if !ok {
			return 0, false, false
		}
		if nb {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	at = e.nextLine(lo)
	if at == len(e.region()) {
		return at, false, true
	}
	c, i, ok := e.keyAt(at)
	return at, ok && c == cid && i == ifname, ok
}

func compareKeys(cid, ifname string, l allocator.Lease) int {
	if c := strings.Compare(cid, l.ContainerID); c != 0 {
		return c
	}
	return strings.Compare(ifname, l.IfName)
}

// lineEnd is the end of the line starting at p (the next line's start or
// the region's end).
func (e *edit) lineEnd(p int) int { return e.nextLine(p + 1) }

// ipsAt decodes the addresses of the line at p (for a message).
func (e *edit) ipsAt(p int) []net.IP {
	line := bytes.TrimSuffix(e.region()[p+1:e.lineEnd(p)], []byte(","))
	ps := &parser{d: line, s: string(line)}
	l := ps.lease()
	if ps.bad {
		return nil
	}
	return l.IPs
}

// used reports whether a is leased: its text, quoted, as an element of a
// lease's "ips", which comes after '[' or ','. (A container ID or ifname
// of the same text comes after ':'; what else follows a ',' is a key.)
// The search starts at the rare '[' or ',' of the pattern, so it skips
// through the region line by line, not quote by quote.
func (e *edit) used(a net.IP) bool {
	addr, ok := netip.AddrFromSlice(a)
	if !ok {
		return false
	}
	pat := fmt.Appendf(nil, `["%s"`, addr.Unmap())
	if bytes.Contains(e.region(), pat) {
		return true
	}
	pat[0] = ','
	return bytes.Contains(e.region(), pat)
}

// withTail is data[:end] followed by add, and the tail with last's
// cursors.
func (e *edit) withTail(end int, add ...[]byte) ([]byte, bool) {
	n := end + 64 + 48*len(e.last)
	for _, a := range add {
		n += len(a)
	}
	b := append(make([]byte, 0, n), e.data[:end]...)
	for _, a := range add {
		b = append(b, a...)
	}
	return appendTail(b, e.last, true)
}

// insert is the file with line (appendLease's) at p.
func (e *edit) insert(p int, line []byte) ([]byte, bool) {
	r := e.region()
	switch {
	case len(r) == 0:
		return e.withTail(e.hs, line, []byte("\n"))
	case p == len(r):
		return e.withTail(e.te, []byte(","), line, []byte("\n"))
	default:
		return e.withTail(e.hs+p, line, []byte(","), r[p:], []byte("\n"))
	}
}

// remove is the file without the line at p.
func (e *edit) remove(p int) ([]byte, bool) {
	r, end := e.region(), e.lineEnd(p)
	switch {
	case p == 0 && end == len(r): // the only lease
		return e.withTail(e.hs)
	case end == len(r): // the last: the comma before it goes too
		return e.withTail(e.hs+p-1, []byte("\n"))
	default: // its own comma goes with it
		return e.withTail(e.hs+p, r[end:], []byte("\n"))
	}
}

// Allocate is Load, State.Allocate and Save in one: on a stamped state
// file by an edit, on any other by decoding. Errors are Load's, Allocate's
// (allocator's sentinels) or the save's ("save state: ...").
func (s *Store) Allocate(sets []allocator.RangeSet, containerID, ifName string, requested []net.IP) ([]*current.IPConfig, error) {
	if e, ok := s.openEdit(); ok && plainASCII(containerID) && plainASCII(ifName) {
		at, found, ok := e.find(containerID, ifName)
		if ok && found {
			return nil, allocator.DuplicateError(containerID, ifName, e.ipsAt(at))
		}
		if ok {
			s.edited = true
			picked, err := allocator.Pick(sets, e.last, e.used, requested)
			if err != nil {
				return nil, err
			}
			allocator.Advance(sets, e.last, picked)
			line, ok := appendLease(nil, allocator.Lease{ContainerID: containerID, IfName: ifName, IPs: picked}, true)
			data, tailOK := e.insert(at, line)
			if !ok || !tailOK {
				return nil, fmt.Errorf("save state: an address has no text form: %v", picked)
			}
			if err := s.write(data, true); err != nil {
				return nil, fmt.Errorf("save state: %w", err)
			}
			return allocator.IPConfigs(sets, picked), nil
		}
	}
	s.edited = false
	st, err := s.Load()
	if err != nil {
		return nil, err
	}
	ips, err := st.Allocate(sets, containerID, ifName, requested)
	if err != nil {
		return nil, err
	}
	if err := s.Save(st); err != nil {
		return nil, fmt.Errorf("save state: %w", err)
	}
	return ips, nil
}

// Release is Load, State.Release and (when there was a lease) Save in
// one, like Allocate.
func (s *Store) Release(containerID, ifName string) (bool, error) {
	if e, ok := s.openEdit(); ok && plainASCII(containerID) && plainASCII(ifName) {
		at, found, ok := e.find(containerID, ifName)
		if ok {
			s.edited = true
			if !found {
				return false, nil
			}
			data, _ := e.remove(at)
			if err := s.write(data, true); err != nil {
				return false, fmt.Errorf("save state: %w", err)
			}
			return true, nil
		}
	}
	s.edited = false
	st, err := s.Load()
	if err != nil {
		return false, err
	}
	if !st.Release(containerID, ifName) {
		return false, nil
	}
	if err := s.Save(st); err != nil {
		return false, fmt.Errorf("save state: %w", err)
	}
	return true, nil
}
