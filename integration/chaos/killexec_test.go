package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// killExec is the invoke.Exec libcni runs the chain through: it execs each
// plugin like invoke.RawExec does and, when an attachment is armed for one
// (stage, verb), sends that plugin process SIGKILL after a random delay.
// The delay is a uniform fraction of a run time drawn from the last 64
// unkilled runs of that stage and verb (40ms before there are any), so
// kills spread over the whole operation as it really runs, loaded or not. Whether a kill landed is read from the exit
// status: only a process that died of SIGKILL counts; one that had already
// finished when the timer fired is a miss.
type killExec struct {
	invoke.DefaultExec

	mu    sync.Mutex
	rng   *rand.Rand
	armed map[string]*plan // by container ID
	stats map[string]*killStat
}

type plan struct {
	stage, verb string
	fired       bool
	landed      bool
	// onChild, when set, replaces the timer: the kill waits until the
	// plugin has a child whose command line contains onChild, stops that
	// child (SIGSTOP), kills the plugin and sends the child's pid here.
	onChild string
	child   chan int
}

// killStat counts the kills of one "stage VERB".
type killStat struct {
	Armed       int     // a kill was scheduled for the plugin process
	Landed      int     // the process died of SIGKILL
	AfterOutput int     // of Landed: it had already written to stdout
	Missed      int     // the process finished before the kill fired
	MeanMs      float64 // running mean of unkilled run times
	Runs        int     // unkilled runs measured
	DelaysMs    []float64
	recent      []float64 // the last 64 unkilled run times, ms
}

func newKillExec(seed int64) *killExec {
	return &killExec{
		DefaultExec: invoke.DefaultExec{RawExec: &invoke.RawExec{}, PluginDecoder: version.PluginDecoder{}},
		rng:         rand.New(rand.NewSource(seed)),
		armed:       map[string]*plan{},
		stats:       map[string]*killStat{},
	}
}

// arm schedules a kill of stage's next verb for container cid.
func (k *killExec) arm(cid, stage, verb string) *plan {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := &plan{stage: stage, verb: verb}
	k.armed[cid] = p
	return p
}

func (k *killExec) disarm(cid string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.armed, cid)
}

func (k *killExec) stat(stage, verb string) *killStat {
	key := stage + " " + verb
	s := k.stats[key]
	if s == nil {
		s = &killStat{}
		k.stats[key] = s
	}
	return s
}

func envOf(environ []string, key string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// ExecPlugin runs the plugin, killing it when armed. It is called in the
// goroutine (and so the node-namespace thread) libcni runs in.
func (k *killExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	stage, verb, cid := filepath.Base(pluginPath), envOf(environ, "CNI_COMMAND"), envOf(environ, "CNI_CONTAINERID")
	var p *plan
	var delay time.Duration
	k.mu.Lock()
	if a := k.armed[cid]; a != nil && !a.fired && a.stage == stage && a.verb == verb {
		p, a.fired = a, true
		s := k.stat(stage, verb)
		run := 40.0
		if len(s.recent) > 0 {
			run = s.recent[k.rng.Intn(len(s.recent))]
		}
		ms := k.rng.Float64() * run
		delay = time.Duration(ms * float64(time.Millisecond))
		s.Armed++
		s.DelaysMs = append(s.DelaysMs, ms)
	}
	k.mu.Unlock()

	cmd := exec.CommandContext(ctx, pluginPath)
	cmd.Env = environ
	cmd.Stdin = bytes.NewReader(stdinData)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", stage, err)
	}
	var timer *time.Timer
	if p != nil && p.onChild != "" {
		go stopChildThenKill(cmd.Process.Pid, p)
	} else if p != nil {
		proc := cmd.Process
		timer = time.AfterFunc(delay, func() { _ = proc.Signal(syscall.SIGKILL) })
	}
	err := cmd.Wait()
	took := time.Since(start)
	if timer != nil {
		timer.Stop()
	}
	killed := false
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			killed = true
		}
	}
	k.mu.Lock()
	s := k.stat(stage, verb)
	switch {
	case p != nil && killed:
		s.Landed++
		p.landed = true
		if stdout.Len() > 0 {
			s.AfterOutput++
		}
	case p != nil:
		s.Missed++
	case err == nil:
		s.Runs++
		ms := float64(took.Microseconds()) / 1000
		s.MeanMs += (ms - s.MeanMs) / float64(s.Runs)
		if s.recent = append(s.recent, ms); len(s.recent) > 64 {
			s.recent = s.recent[1:]
		}
	}
	k.mu.Unlock()
	if err != nil {
		return nil, pluginError(stage, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// stopChildThenKill waits for a child of pid whose command line contains
// p.onChild, stops it, gives the plugin 50ms to finish writing the child's
// stdin, kills the plugin and reports the child. It gives up when pid exits.
func stopChildThenKill(pid int, p *plan) {
	for {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		if err != nil || len(tasks) == 0 {
			close(p.child)
			return
		}
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				child, _ := strconv.Atoi(f)
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
				if child > 0 && strings.Contains(string(cmdline), p.onChild) {
					_ = syscall.Kill(child, syscall.SIGSTOP)
					time.Sleep(50 * time.Millisecond)
					_ = syscall.Kill(pid, syscall.SIGKILL)
					p.child <- child
					return
				}
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// pluginError is what invoke.RawExec returns for a failed plugin: the CNI
// error it printed, else an error quoting stderr.
func pluginError(stage string, err error, stdout, stderr []byte) error {
	var e types.Error
	if len(stdout) > 0 && json.Unmarshal(stdout, &e) == nil && e.Code != 0 {
		return &e
	}
	return fmt.Errorf("%s: %w (stdout %q, stderr %q)", stage, err, stdout, stderr)
}

// report renders the kill counts, one line per stage and verb.
func (k *killExec) report() (string, map[string]killStat) {
	k.mu.Lock()
	defer k.mu.Unlock()
	keys := make([]string, 0, len(k.stats))
	out := map[string]killStat{}
	for key, s := range k.stats {
		if s.Armed > 0 {
			keys = append(keys, key)
			c := *s
			c.DelaysMs = nil
			out[key] = c
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%-24s %6s %7s %8s %7s %9s %9s\n", "stage verb", "armed", "landed", "afterOut", "missed", "meanRunMs", "maxDelay")
	for _, key := range keys {
		s := k.stats[key]
		maxDelay := 0.0
		for _, d := range s.DelaysMs {
			maxDelay = max(maxDelay, d)
		}
		fmt.Fprintf(&b, "%-24s %6d %7d %8d %7d %9.1f %9.1f\n", key, s.Armed, s.Landed, s.AfterOutput, s.Missed, s.MeanMs, maxDelay)
	}
	return b.String(), out
}
