package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// Results is everything one run measured (results.json).
type Results struct {
	Date       string        `json:"date"`
	Machine    Machine       `json:"machine"`
	Quick      bool          `json:"quick"`
	Iterations int           `json:"iterations"`
	Levels     []int         `json:"levels"`
	Concurrent int           `json:"concurrent"`
	Chains     []ChainResult `json:"chains"`
	IPAM       []IPAMResult  `json:"ipam"`
	Seconds    float64       `json:"seconds"` // the whole run
	// StateFS is the file system the plugins' state and IPAM data lived on.
	StateFS string `json:"stateFS"`
}

// Machine is where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPU        string `json:"cpu"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	LoadBefore string `json:"loadBefore"` // /proc/loadavg, 1/5/15 min
	LoadAfter  string `json:"loadAfter"`
}

// Stats are milliseconds.
type Stats struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	P10    float64 `json:"p10"`
	P90    float64 `json:"p90"`
}

// ChainResult is one chain's measurements.
type ChainResult struct {
	Name string `json:"name"`
	Desc string `json:"desc"`
	// NA says why the chain could not be measured ("" when it was).
	NA string `json:"na,omitempty"`
	// Note qualifies what was measured.
	Note     string        `json:"note,omitempty"`
	FirstAdd float64       `json:"firstAdd"` // ms, the node's first ADD (network-wide objects made)
	Levels   []LevelResult `json:"levels"`
	// ConcurrentAdd/Del: wall time (ms) of Concurrent ADDs, then DELs, at once.
	ConcurrentAdd float64       `json:"concurrentAdd"`
	ConcurrentDel float64       `json:"concurrentDel"`
	Stages        []StageResult `json:"stages"`               // at the first level
	StagesFull    []StageResult `json:"stagesFull,omitempty"` // at the last level
}

// LevelResult is ADD and DEL with Pods pods already attached to the node.
type LevelResult struct {
	Pods int   `json:"pods"`
	Add  Stats `json:"add"`
	Del  Stats `json:"del"`
}

// StageResult is one plugin exec of the chain.
type StageResult struct {
	Plugin string `json:"plugin"`
	Add    Stats  `json:"add"`
	Del    Stats  `json:"del"`
}

// IPAMResult is one IPAM plugin exec'd alone holding Leases leases.
type IPAMResult struct {
	Plugin string `json:"plugin"`
	Leases int    `json:"leases"`
	Add    Stats  `json:"add"`
	Del    Stats  `json:"del"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: loadavg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// measure builds the lab, measures, and removes everything it made.
func measure(ctx context.Context, o options) (*Results, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("needs root: it creates network namespaces")
	}
	start := time.Now()
	res := &Results{Date: start.UTC().Format("2006-01-02 15:04 UTC"), Machine: machine(), Quick: o.quick,
		Iterations: o.iterations, Levels: o.levels, Concurrent: o.concurrent}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return nil, err
	}
	for _, p := range testutil.Plugins {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			return nil, fmt.Errorf("%s: %w (run make build first, or pass -bin)", p, err)
		}
	}
	ref := o.ref
	if ref == "" {
		if ref, err = testutil.ReferencePluginDir("bridge", "host-local", "tuning", "firewall", "portmap"); err != nil {
			return nil, err
		}
	}
	root, fs, err := stateRoot(o.state)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)
	res.StateFS = fs
	lab, err := netsim.New("bn")
	if err != nil {
		return nil, err
	}
	defer lab.Close()

	if o.only != "ipam" {
		if err := measureChains(ctx, o, res, lab, bin, ref, root); err != nil {
			return nil, err
		}
	}
	if o.only != "chains" {
		logf("IPAM: lockfile-ipam and host-local holding %v leases", o.leases)
		node, err := lab.AddNode("ipam")
		if err != nil {
			return nil, err
		}
		if res.IPAM, err = ipamCurve(ctx, lab, node, bin, ref, filepath.Join(root, "ipam"), o.leases, o.iterations); err != nil {
			return nil, err
		}
	}
	res.Machine.LoadAfter = loadavg()
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// measureChains fills res.Chains.
func measureChains(ctx context.Context, o options, res *Results, lab *netsim.Lab, bin, ref, root string) error {
	sp, err := specs(bin, ref, root)
	if err != nil {
		return err
	}
	res.Chains = make([]ChainResult, len(sp))
	var chains []*live
	for i, s := range sp {
		l, err := setUp(lab, s, root)
		if err != nil {
			return err
		}
		res.Chains[i] = ChainResult{Name: s.Name, Desc: s.Desc}
		l.res = &res.Chains[i] // res.Chains never grows: the pointer stays valid
		chains = append(chains, l)
	}
	for _, l := range chains {
		if err := l.warmUp(ctx); err != nil {
			return err
		}
	}
	var ok []*live
	for _, l := range chains {
		if l.res.NA == "" {
			ok = append(ok, l)
		}
	}

	logf("concurrency: %d ADDs, then %d DELs, at once", o.concurrent, o.concurrent)
	for _, l := range ok {
		a, d, err := l.concurrent(ctx, o.concurrent)
		if err != nil {
			return err
		}
		l.res.ConcurrentAdd, l.res.ConcurrentDel = ms(a), ms(d)
	}

	for li, level := range o.levels {
		logf("level %d pods: filling", level)
		for _, l := range ok {
			if err := l.fill(ctx, level); err != nil {
				return err
			}
		}
		// Per-stage times at the first and the last level: which stage
		// grows as the node fills.
		rec := li == 0 || li == len(o.levels)-1
		for _, l := range ok {
			l.stages.record(rec)
		}
		logf("level %d pods: %d × ADD+DEL per chain", level, o.iterations)
		adds := make([][]time.Duration, len(ok))
		dels := make([][]time.Duration, len(ok))
		for i := 0; i < o.iterations; i++ {
			// Each iteration starts with another chain, so no chain is
			// always the one right after a given other.
			for k := range ok {
				j := (i + k) % len(ok)
				a, d, err := ok[j].cycle(ctx)
				if err != nil {
					return err
				}
				adds[j] = append(adds[j], a)
				dels[j] = append(dels[j], d)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		for j, l := range ok {
			l.res.Levels = append(l.res.Levels, LevelResult{Pods: level, Add: stats(adds[j]), Del: stats(dels[j])})
			if rec {
				l.stages.record(false)
				st := l.stageStats()
				l.stages.reset()
				if li == 0 {
					l.res.Stages = st
				} else {
					l.res.StagesFull = st
				}
			}
		}
	}

	return nil
}

// setUp gives the chain its node and a libcni config whose execs are timed.
func setUp(lab *netsim.Lab, s *chainSpec, root string) (*live, error) {
	node, err := lab.AddNode(shortName(s.Name))
	if err != nil {
		return nil, err
	}
	list, err := chain.Parse(s.conf)
	if err != nil {
		return nil, err
	}
	st := newStageTimes()
	c, err := chain.NewWithExec(list, s.path, filepath.Join(root, s.Name, "cache"), node.NetNS, st)
	if err != nil {
		return nil, err
	}
	return &live{spec: s, lab: lab, node: node, c: c, stages: st}, nil
}

// noSuchBackend is a backend name no sysctl-firewall knows.
const noSuchBackend = "bench-probe-no-such-backend"

// warmUp attaches and detaches a first pod (this makes the network-wide
// objects, so the timed loop measures the steady state). For our chains it
// first finds out whether this sysctl-firewall knows the "backend" key at
// all: when it accepts a backend that does not exist, it ignores the key.
func (l *live) warmUp(ctx context.Context) error {
	if b := l.spec.firewallBackend; b != "" {
		known, err := l.backendKeyKnown(ctx)
		if err != nil {
			return err
		}
		switch {
		case !known && b == "nftables":
			l.res.NA = "n/a (backend not available: this sysctl-firewall ignores the \"backend\" key)"
			return nil
		case !known:
			l.res.Note = "this sysctl-firewall has no \"backend\" key: its only (iptables) path"
		}
	}
	p, rt, err := l.newPod()
	if err != nil {
		return err
	}
	defer l.lab.Remove(p)
	d, err := l.add(ctx, rt)
	if err != nil {
		if l.spec.firewallBackend == "nftables" {
			l.res.NA = "n/a (backend not available: " + oneLine(err.Error()) + ")"
			_, _ = l.del(ctx, rt)
			return nil
		}
		return err
	}
	l.res.FirstAdd = ms(d)
	_, err = l.del(ctx, rt)
	return err
}

// backendKeyKnown runs one ADD with a backend that does not exist: refused
// means the key is read.
func (l *live) backendKeyKnown(ctx context.Context) (bool, error) {
	conf, err := chain.Edit(l.spec.conf, func(_ map[string]any, plugins []map[string]any) error {
		chain.Plugin(plugins, "sysctl-firewall")["backend"] = noSuchBackend
		return nil
	})
	if err != nil {
		return false, err
	}
	list, err := chain.Parse(conf)
	if err != nil {
		return false, err
	}
	probe := *l
	if probe.c, err = chain.NewWithExec(list, l.spec.path, l.c.CacheDir, l.node.NetNS, newStageTimes()); err != nil {
		return false, err
	}
	p, rt, err := l.newPod()
	if err != nil {
		return false, err
	}
	defer l.lab.Remove(p)
	_, addErr := probe.add(ctx, rt)
	// Clean up with the chain's own config: a sysctl-firewall that reads
	// the key may refuse the probe's backend on DEL too.
	if _, err := l.del(ctx, rt); err != nil {
		return false, err
	}
	return addErr != nil, nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func readResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// stateRoot is a fresh directory for every state and IPAM data dir: under
// dir when given, else under /dev/shm when it is a tmpfs (a node's /run,
// where conflist/vxvrf.conflist keeps its state, is one), else under the
// temp dir. fs names the file system.
func stateRoot(dir string) (root, fs string, err error) {
	if dir == "" {
		dir = os.TempDir()
		var st unix.Statfs_t
		if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC {
			dir = "/dev/shm"
		}
	}
	if root, err = os.MkdirTemp(dir, "vxvrf-bench-"); err != nil {
		return "", "", err
	}
	fs = "unknown"
	var st unix.Statfs_t
	if unix.Statfs(root, &st) == nil {
		switch st.Type {
		case unix.TMPFS_MAGIC:
			fs = "tmpfs"
		case unix.EXT4_SUPER_MAGIC:
			fs = "ext4"
		case unix.XFS_SUPER_MAGIC:
			fs = "xfs"
		case unix.BTRFS_SUPER_MAGIC:
			fs = "btrfs"
		case unix.OVERLAYFS_SUPER_MAGIC:
			fs = "overlayfs"
		default:
			fs = fmt.Sprintf("0x%x", st.Type)
		}
	}
	return root, fmt.Sprintf("%s (%s)", fs, dir), nil
}
