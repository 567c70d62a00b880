package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/pkg/cniutil"
	vlog "github.com/vxvrf/cni/pkg/log"
	"github.com/vxvrf/cni/pkg/naming"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/allocator"
	"github.com/vxvrf/cni/plugins/lockfile-ipam/store"
)

// Plugin-specific CNI error codes (spec: 100 and up belong to plugins).
const (
	ErrDuplicateAllocation uint = 100 // (containerID, ifname) already holds a lease
	ErrNoAddress           uint = 101 // a range set has no free address
	ErrRequestedIP         uint = 102 // a requested address cannot be given out
	ErrNoLease             uint = 103 // CHECK: no lease / prevResult lacks the leased addresses
)

// load is what ADD and CHECK start with: the command preamble
// (cniutil.Preamble: prevResult is parsed before anything is allocated, so
// a bad one leaks nothing). In delegated form prevResult is the calling
// stage's and none of lockfile-ipam's business: load returns none.
func load(args *skel.CmdArgs) (*NetConf, *current.Result, error) {
	conf, prev, err := cniutil.Preamble(args, func(stdin []byte) (*NetConf, error) { return parseConfig(stdin, args.Args) })
	if err != nil {
		return nil, nil, err
	}
	if !conf.Stage {
		prev = nil
	}
	return conf, prev, nil
}

// loadAdd is load plus the chain order: in stage form the addresses are
// for the stage that creates the pod interface, so that must come later.
func loadAdd(args *skel.CmdArgs) (*NetConf, *current.Result, error) {
	conf, prev, err := load(args)
	if err != nil {
		return nil, nil, err
	}
	if err := cniutil.BeforePod(prev, "lockfile-ipam", "veth-attach"); err != nil {
		return nil, nil, err
	}
	if err := checkOverlap(conf, types.ErrInvalidNetworkConfig); err != nil {
		return nil, nil, err
	}
	return conf, prev, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, prev, err := loadAdd(args)
	if err != nil {
		return err
	}
	var ips []*current.IPConfig
	vlog.Did("allocated")
	err = withStore(conf.DataDir, conf.Name, conf.Timeout, func(s *store.Store) (err error) {
		ips, err = s.Allocate(conf.Sets, args.ContainerID, args.IfName, conf.Requested)
		return err
	})
	if err != nil {
		return err
	}
	var addrs []string
	for _, ipc := range ips {
		addrs = append(addrs, ipc.Address.String())
	}
	vlog.Did("allocated", addrs...)
	return types.PrintResult(buildResult(conf, prev, ips), conf.CNIVersion)
}

// buildResult is the abbreviated IPAM result (delegated form) or prevResult
// with our ips (no interface index), routes and dns appended (stage form).
func buildResult(conf *NetConf, prev *current.Result, ips []*current.IPConfig) *current.Result {
	if !conf.Stage {
		prev = nil
	}
	res := cniutil.NewResult(prev)
	res.IPs = append(res.IPs, ips...)
	for _, r := range conf.IPAM.Routes {
		rc := *r
		res.Routes = append(res.Routes, &rc)
	}
	cniutil.MergeDNS(&res.DNS, conf.DNS)
	return res
}

// cmdDel releases the lease of (containerID, ifname). It reads only the
// network name and state location (parseTeardown): a config invalid or
// changed since ADD never keeps a lease.
func cmdDel(args *skel.CmdArgs) error {
	conf, err := cniutil.DelPreamble(args, parseTeardown)
	if err != nil {
		return err
	}
	vlog.Did("released")
	if !leasedHere(conf) {
		return nil
	}
	return withStore(conf.DataDir, conf.Name, conf.Timeout, func(s *store.Store) error {
		released, err := s.Release(args.ContainerID, args.IfName)
		vlog.Did("released", ipStrings(released)...)
		return err
	})
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, prev, err := load(args)
	if err != nil {
		return err
	}
	var leased []net.IP
	err = withState(conf.DataDir, conf.Name, conf.Timeout, func(st *allocator.State) (bool, error) {
		i := st.Find(args.ContainerID, args.IfName)
		if i < 0 {
			return false, cniutil.Errorf(ErrNoLease, "no lease for container %q ifname %q in network %q", args.ContainerID, args.IfName, conf.Name)
		}
		leased = st.Leases[i].IPs
		return false, nil
	})
	if err != nil {
		return err
	}
	return checkPrevResult(prev, leased)
}

// checkPrevResult verifies that every leased address is in prevResult.
func checkPrevResult(prev *current.Result, leased []net.IP) error {
	if prev == nil {
		return nil
	}
	for _, a := range leased {
		found := false
		for _, ipc := range prev.IPs {
			if ipc.Address.IP.Equal(a) {
				found = true
				break
			}
		}
		if !found {
			return cniutil.Errorf(ErrNoLease, "leased address %s is missing from prevResult", a)
		}
	}
	return nil
}

// cmdGC reads what cmdDel reads.
func cmdGC(args *skel.CmdArgs) error {
	conf, err := parseTeardown(args.StdinData)
	if err != nil {
		return err
	}
	valid, present, err := cniutil.ValidAttachments(args.StdinData)
	if err != nil {
		return err
	}
	if !present {
		fmt.Fprintf(os.Stderr, "%s: GC of network %q without cni.dev/valid-attachments: releasing nothing\n", pluginName, conf.Name)
		return nil
	}
	vlog.Did("released")
	if !leasedHere(conf) {
		return nil
	}
	return withState(conf.DataDir, conf.Name, conf.Timeout, func(st *allocator.State) (bool, error) {
		removed := st.Retain(func(cid, ifname string) bool {
			return valid[cniutil.Attachment{ContainerID: cid, IfName: ifname}]
		})
		for _, l := range removed {
			fmt.Fprintf(os.Stderr, "%s: GC released %v of container %q ifname %q\n", pluginName, l.IPs, l.ContainerID, l.IfName)
			vlog.Did("released", ipStrings(l.IPs)...)
			vlog.Did("leases_removed", l.ContainerID+"/"+l.IfName)
		}
		return len(removed) > 0, nil
	})
}

func cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	if err := naming.CheckAttachment(conf.Name, "", ""); err != nil {
		return cniutil.Errorf(types.ErrInvalidNetworkConfig, "network name: %v", err)
	}
	if err := checkOverlap(conf, cniutil.ErrPluginNotAvailable); err != nil {
		return err
	}
	exists, err := checkWritable(conf.DataDir)
	if err != nil {
		return cniutil.Errorf(cniutil.ErrPluginNotAvailable, "data dir %s is not writable: %v", conf.DataDir, err)
	}
	free := func(st *allocator.State) (bool, error) {
		for i, set := range conf.Sets {
			if st.Free(set).Sign() == 0 {
				return false, cniutil.Errorf(cniutil.ErrPluginNotAvailable, "no free address in range set %d (%s)", i, set)
			}
		}
		return false, nil
	}
	if !exists { // nothing leased yet; STATUS creates nothing
		_, err = free(allocator.NewState(conf.Name))
		return err
	}
	err = withState(conf.DataDir, conf.Name, conf.Timeout, free)
	// A state file that cannot be read means ADD cannot be served either.
	var cerr *types.Error
	if errors.As(err, &cerr) && cerr.Code == types.ErrIOFailure {
		return cniutil.Errorf(cniutil.ErrPluginNotAvailable, "%s", cerr.Msg)
	}
	return err
}

// checkWritable reports whether ADD could write dir, without changing the
// node: an existing dir gets a probe file (removed at once); for a missing
// one, its nearest existing ancestor must be a writable directory.
func checkWritable(dir string) (exists bool, err error) {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return true, fmt.Errorf("not a directory")
		}
		f, err := os.CreateTemp(dir, ".status-probe-*")
		if err != nil {
			return true, err
		}
		f.Close()
		return true, os.Remove(f.Name())
	}
	d := dir
	for {
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
		if fi, err := os.Stat(d); err == nil {
			if !fi.IsDir() {
				return false, fmt.Errorf("%s is not a directory", d)
			}
			break
		}
	}
	return false, unix.Access(d, unix.W_OK)
}

// leasedHere reports whether the network can hold leases in the teardown
// config's dataDir: it names a usable one, that directory exists, and the
// network name fits the state file names (ADD refuses one that does not).
func leasedHere(conf *teardownConf) bool {
	if conf.DataDir == "" || naming.CheckAttachment(conf.Name, "", "") != nil {
		return false
	}
	_, err := os.Lstat(conf.DataDir)
	return !errors.Is(err, os.ErrNotExist)
}

// withStore runs fn with the network's store open (its lock held). Lock
// timeout → 11; allocator errors → allocError's codes; I/O and corrupt
// state → 5. A call that leaves no state file leaves no lock file and no
// directory it created either (store.Close).
func withStore(dataDir, network string, timeout time.Duration, fn func(*store.Store) error) error {
	s, err := store.Open(dataDir, network, timeout)
	if errors.Is(err, store.ErrLockTimeout) {
		return cniutil.Errorf(types.ErrTryAgainLater, "%v", err)
	}
	if err != nil {
		return cniutil.Errorf(types.ErrIOFailure, "%v", err)
	}
	defer s.Close()
	err = fn(s)
	if err == nil {
		vlog.Set("state", s.Path())
		vlog.Set("leases", strconv.Itoa(s.Leases()))
		vlog.L().Debug("state", "file", s.Path(), "leases", s.Leases())
	}
	var cerr *types.Error
	switch {
	case err == nil || errors.As(err, &cerr):
		return err
	case isAllocError(err):
		return allocError(err)
	}
	return cniutil.Errorf(types.ErrIOFailure, "%v", err)
}

// withState runs fn on the network's decoded state and saves it when fn
// reports a change (store.Update); errors as withStore's.
func withState(dataDir, network string, timeout time.Duration, fn func(*allocator.State) (bool, error)) error {
	return withStore(dataDir, network, timeout, func(s *store.Store) error { return s.Update(fn) })
}

// isAllocError reports an error of Allocate's (not the store's).
func isAllocError(err error) bool {
	for _, e := range []error{allocator.ErrDuplicate, allocator.ErrExhausted, allocator.ErrRequested, allocator.ErrUnsatisfied} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// allocError maps allocator errors to CNI errors.
func allocError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, allocator.ErrDuplicate):
		return cniutil.Errorf(ErrDuplicateAllocation, "%v", err)
	case errors.Is(err, allocator.ErrExhausted):
		return cniutil.Errorf(ErrNoAddress, "%v", err)
	case errors.Is(err, allocator.ErrRequested), errors.Is(err, allocator.ErrUnsatisfied):
		return cniutil.Errorf(ErrRequestedIP, "%v", err)
	}
	return err
}
