package store

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"

	current "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
)

// ADD and DEL change one lease of a file that holds thousands. Decoding
// the whole file into a State, validating it and encoding it again made
// their cost grow by ~2.5 µs per lease; instead they edit the file's bytes
// (the edit type): the file is mapped, not read; the lease is found by a
// binary search over the sorted lease lines, an address's use by a byte
// search over them, and the new file is written from pieces of the old
// one around the inserted or cut line, with the cursors re-encoded. What
// still grows with the leases is the byte search and the kernel's copy of
// the file into the new one: memory-speed work, no decoding.
//
// Editing instead of decoding is sound only for a file that is exactly
// what Save or an edit wrote (sorted, validated, in the fast subset without
// escapes): the stamp says so. It is written into the lock file (under the
// lock, once the state file is in place) and names that file: device,
// inode, size, modification and change times. Every write replaces the
// file (a new inode) and any change to it moves its change time, which no
// one can set back; a state file that does not match the stamp (written by
// an earlier version, edited by hand, renamed into place by a writer
// killed before its stamp) takes the decoding path, which validates it and
// stamps what it saves. A missing, torn or stale stamp costs one slow
// command, never a wrong answer.

// stampMagic starts a stamp; stampLen is a stamp's fixed length.
const (
	stampMagic  = "vxvrf-ipam-state v1"
	stampFields = 7
	stampLen    = len(stampMagic) + stampFields*17 + 1
)

// stampOf is the stamp of the file st describes.
func stampOf(st *unix.Stat_t) []byte {
	b := []byte(stampMagic)
	for _, v := range [stampFields]uint64{st.Dev, st.Ino, uint64(st.Size),
		uint64(st.Mtim.Sec), uint64(st.Mtim.Nsec), uint64(st.Ctim.Sec), uint64(st.Ctim.Nsec)} {
		b = fmt.Appendf(b, " %016x", v)
	}
	return append(b, '\n')
}

// writeStamp records the state file now in place as trusted, or (trusted
// false, or when it cannot be stat'ed) that no file is. Failing is
// harmless: a stamp that does not match the state file only sends the
// next command down the decoding path.
func (s *Store) writeStamp(trusted bool) {
	b := bytes.Repeat([]byte{'-'}, stampLen) // never matches
	b[stampLen-1] = '\n'
	var st unix.Stat_t
	if trusted && unix.Fstatat(s.dirFD, naming.LeaseFile(s.network), &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		b = stampOf(&st)
	}
	_, _ = unix.Pwrite(s.lockFD, b, 0)
}

// mapTrusted maps the state file when it is the one the stamp names; ok
// is false for anything else (no file, no stamp, another file, a symlink
// or special file: the decoding path reports those). unmap releases the
// mapping.
func (s *Store) mapTrusted() (data []byte, unmap func(), ok bool) {
	stamp := make([]byte, stampLen)
	if n, err := unix.Pread(s.lockFD, stamp, 0); err != nil || n != stampLen || !bytes.HasPrefix(stamp, []byte(stampMagic)) {
		return nil, nil, false
	}
	fd, err := unix.Openat(s.dirFD, naming.LeaseFile(s.network), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG ||
		st.Size <= 0 || st.Size > MaxStateSize || !bytes.Equal(stamp, stampOf(&st)) {
		return nil, nil, false
	}
	data, err = unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, false
	}
	return data, func() { _ = unix.Munmap(data) }, true
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
	unmap  func()
	hs, te int
	last   map[string]net.IP
	asked  int                 // used's questions answered by a pass
	set    map[netip.Addr]bool // the leased addresses, once built
}

// lineStart begins every lease line.
const lineStart = "\n{\"containerID\":\""

// openEdit reads the state file for an edit; ok is false when it is not
// trusted or not in the expected shape (then the caller decodes).
func (s *Store) openEdit() (*edit, bool) {
	if !plainASCII(s.network) {
		return nil, false
	}
	data, unmap, ok := s.mapTrusted()
	if !ok {
		return nil, false
	}
	e := &edit{data: data, unmap: unmap}
	if !e.parse(s.network) {
		e.close()
		return nil, false
	}
	return e, true
}

// parse finds the parts of e.data.
func (e *edit) parse(network string) bool {
	data := e.data
	header := appendHeader(nil, allocator.StateVersion, network)
	tail := bytes.LastIndex(data, []byte(tailKey))
	if !bytes.HasPrefix(data, header) || tail < len(header) || !bytes.HasSuffix(data, []byte("}}\n")) {
		return false
	}
	e.hs, e.te = len(header), tail
	if tail > e.hs {
		e.te = tail - 1
		if data[e.te] != '\n' || !bytes.HasPrefix(data[e.hs:], []byte(lineStart)) {
			return false
		}
	}
	m := data[tail+len(tailKey) : len(data)-2]
	p := &parser{d: m, s: string(m)}
	e.last = p.ipMap()
	return !p.bad && p.i == len(m)
}

// close releases the mapping.
func (e *edit) close() {
	if e.unmap != nil {
		e.unmap()
	}
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

// used reports whether a is leased. Allocation after the round-robin
// cursor usually asks about one address per range set, so the first
// questions are each one pass over the leases' "ips" arrays; past
// allocator.ScanLimit of them (a run of leased addresses after the cursor,
// a nearly full range), one pass collects every leased address into a set
// that answers the rest, so an ADD never costs more than a few passes.
func (e *edit) used(a net.IP) bool {
	addr, ok := netip.AddrFromSlice(a)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	if e.set == nil && e.asked < allocator.ScanLimit {
		e.asked++
		text := addr.AppendTo(make([]byte, 0, 48))
		found := false
		e.eachIP(func(b []byte) bool {
			found = bytes.Equal(b, text)
			return !found
		})
		return found
	}
	if e.set == nil {
		e.set = map[netip.Addr]bool{}
		e.eachIP(func(b []byte) bool {
			if a, err := netip.ParseAddr(string(b)); err == nil {
				e.set[a.Unmap()] = true
			}
			return true
		})
	}
	return e.set[addr]
}

// eachIP calls fn with the text of every element of the leases' "ips"
// arrays (found by each line's '['), until fn returns false.
func (e *edit) eachIP(fn func([]byte) bool) {
	r := e.region()
	for {
		i := bytes.IndexByte(r, '[')
		if i < 0 {
			return
		}
		r = r[i+1:]
		for len(r) > 0 && r[0] == '"' { // an element: "text"
			j := bytes.IndexByte(r[1:], '"')
			if j < 0 {
				return
			}
			if !fn(r[1 : 1+j]) {
				return
			}
			r = r[j+2:]
			if len(r) == 0 || r[0] != ',' {
				break
			}
			r = r[1:]
		}
	}
}

// insert is the new file's pieces with line (appendLease's) at p.
func (e *edit) insert(p int, line []byte) [][]byte {
	r := e.region()
	tail, _ := appendTail([]byte("\n"), e.last, true)
	switch {
	case len(r) == 0:
		return [][]byte{e.data[:e.hs], line, tail}
	case p == len(r):
		return [][]byte{e.data[:e.te], []byte(","), line, tail}
	default:
		return [][]byte{e.data[:e.hs+p], line, []byte(","), e.data[e.hs+p : e.te], tail}
	}
}

// remove is the new file's pieces without the line at p.
func (e *edit) remove(p int) [][]byte {
	r, end := e.region(), e.lineEnd(p)
	switch {
	case p == 0 && end == len(r): // the only lease
		return [][]byte{e.data[:e.hs], e.data[e.te+1:]}
	case end == len(r): // the last: the comma before it goes too
		return [][]byte{e.data[:e.hs+p-1], e.data[e.te:]}
	default: // its own comma goes with it
		return [][]byte{e.data[:e.hs+p], e.data[e.hs+end:]}
	}
}

// Allocate is Load, State.Allocate and Save in one: on a stamped state
// file by an edit, on any other by decoding. Errors are Load's, Allocate's
// (allocator's sentinels) or the save's ("save state: ...").
func (s *Store) Allocate(sets []allocator.RangeSet, containerID, ifName string, requested []net.IP) (ips []*current.IPConfig, err error) {
	done, err := s.withEdit(containerID, ifName, func(e *edit, at int, found bool) error {
		if found {
			return allocator.DuplicateError(containerID, ifName, e.ipsAt(at))
		}
		picked, err := allocator.Pick(sets, e.last, e.used, requested)
		if err != nil {
			return err
		}
		allocator.Advance(sets, e.last, picked)
		line, ok := appendLease(nil, allocator.Lease{ContainerID: containerID, IfName: ifName, IPs: picked}, true)
		if !ok {
			return fmt.Errorf("save state: an address has no text form: %v", picked)
		}
		if err := s.write(true, e.insert(at, line)...); err != nil {
			return fmt.Errorf("save state: %w", err)
		}
		ips = allocator.IPConfigs(sets, picked)
		s.leases++
		return nil
	})
	if done {
		return ips, err
	}
	err = s.Update(func(st *allocator.State) (bool, error) {
		ips, err = st.Allocate(sets, containerID, ifName, requested)
		return err == nil, err
	})
	return ips, err
}

// Release is Load, State.Release and (when there was a lease) Save in
// one, like Allocate.
// released are the addresses of the lease released (nil when there was
// none).
func (s *Store) Release(containerID, ifName string) (released []net.IP, err error) {
	done, err := s.withEdit(containerID, ifName, func(e *edit, at int, found bool) error {
		if !found {
			return nil
		}
		ips := e.ipsAt(at)
		if err := s.write(true, e.remove(at)...); err != nil {
			return fmt.Errorf("save state: %w", err)
		}
		released = ips
		s.leases--
		return nil
	})
	if done {
		return released, err
	}
	err = s.Update(func(st *allocator.State) (bool, error) {
		if i := st.Find(containerID, ifName); i >= 0 {
			released = st.Leases[i].IPs
		}
		return st.Release(containerID, ifName), nil
	})
	return released, err
}

// Update is the decoding path: Load, fn, and Save when fn reports a
// change. Errors are Load's, fn's or the save's ("save state: ...").
func (s *Store) Update(fn func(*allocator.State) (changed bool, err error)) error {
	st, err := s.Load()
	if err != nil {
		return err
	}
	changed, err := fn(st)
	s.leases = len(st.Leases)
	if err != nil || !changed {
		return err
	}
	if err := s.Save(st); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// withEdit runs fn on the stamped state file, with where the lease of
// (containerID, ifName) is or would go; done is false (and fn not run)
// when the file is not stamped or not as expected: then the caller
// decodes it. A fault reading the mapping (the file truncated under the
// lock's back) is an error, not a crash.
func (s *Store) withEdit(containerID, ifName string, fn func(e *edit, at int, found bool) error) (done bool, err error) {
	s.edited = false
	if !plainASCII(containerID) || !plainASCII(ifName) {
		return false, nil
	}
	e, ok := s.openEdit()
	if !ok {
		return false, nil
	}
	defer e.close()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			done, err = true, fmt.Errorf("read state %s: %v", s.Path(), r)
		}
	}()
	at, found, ok := e.find(containerID, ifName)
	s.leases = bytes.Count(e.region(), []byte(lineStart))
	if !ok {
		return false, nil
	}
	s.edited = true
	return true, fn(e, at, found)
}
