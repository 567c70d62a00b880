package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// opTimeout bounds one chain ADD or DEL.
const opTimeout = 2 * time.Minute

// chainSpec is one chain under measurement.
type chainSpec struct {
	Name, Desc string
	conf       []byte
	path       []string
	// portMapping gives pod i a hostPort (the reference portmap); false: none.
	portMapping bool
	// firewallBackend is sysctl-firewall's "backend" in this chain ("" for
	// the reference chains).
	firewallBackend string
}

// benchSubnets leave room for 250 pods, 100 concurrent ones and the probes.
const (
	oursV4, oursV6 = "10.244.0.0/22", "fd00:10:244::/64"
	refV4, refV6   = "10.231.0.0/22", "fd00:231::/64"
)

// specs builds the four chains; state lives under root.
func specs(bin, ref, root string) ([]*chainSpec, error) {
	def, err := os.ReadFile(filepath.Join(repoRoot(), "conflist", "vxvrf.conflist"))
	if err != nil {
		return nil, err
	}
	ours := func(name, backend string) (*chainSpec, error) {
		conf, err := chain.SetStateDirs(def, filepath.Join(root, name))
		if err != nil {
			return nil, err
		}
		conf, err = chain.Edit(conf, func(_ map[string]any, plugins []map[string]any) error {
			ipam, _ := chain.Plugin(plugins, "lockfile-ipam")["ipam"].(map[string]any)
			if ipam == nil {
				return errors.New("conflist: no lockfile-ipam stage")
			}
			ipam["ranges"] = []any{[]any{map[string]any{"subnet": oursV4}}, []any{map[string]any{"subnet": oursV6}}}
			fw := chain.Plugin(plugins, "sysctl-firewall")
			if fw == nil {
				return errors.New("conflist: no sysctl-firewall stage")
			}
			fw["backend"] = backend
			return nil
		})
		if err != nil {
			return nil, err
		}
		return &chainSpec{Name: name, Desc: "conflist/vxvrf.conflist, sysctl-firewall backend " + backend,
			conf: conf, path: []string{bin}, firewallBackend: backend}, nil
	}
	refConf := func(name string, full bool) []byte {
		state := filepath.Join(root, name)
		plugins := []any{map[string]any{
			"type": "bridge", "bridge": "bnref0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  []any{[]any{map[string]any{"subnet": refV4}}, []any{map[string]any{"subnet": refV6}}},
				"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}, map[string]any{"dst": "::/0"}},
				"dataDir": filepath.Join(state, "ipam"),
			},
		}}
		if full {
			plugins = append(plugins,
				map[string]any{"type": "tuning", "mtu": 1400, "dataDir": filepath.Join(state, "tuning"),
					"sysctl": map[string]any{"net.ipv4.conf.eth0.rp_filter": "0"}},
				map[string]any{"type": "firewall", "backend": "iptables"},
				map[string]any{"type": "portmap", "backend": "iptables", "snat": true,
					"capabilities": map[string]any{"portMappings": true}})
		}
		b, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "bnref", "plugins": plugins})
		return b
	}
	nft, err := ours("ours-nft", "nftables")
	if err != nil {
		return nil, err
	}
	ipt, err := ours("ours-ipt", "iptables")
	if err != nil {
		return nil, err
	}
	return []*chainSpec{nft, ipt,
		{Name: "ref-full", Desc: "reference bridge+host-local → tuning → firewall → portmap (one hostPort)",
			conf: refConf("ref-full", true), path: []string{ref}, portMapping: true},
		{Name: "ref-bare", Desc: "reference bridge+host-local",
			conf: refConf("ref-bare", false), path: []string{ref}},
	}, nil
}

// repoRoot is the module root (go.mod), or "." when go is not on PATH.
func repoRoot() string {
	if r, err := testutil.RepoRoot(); err == nil {
		return r
	}
	return "."
}

// stageTimes records the wall time of each plugin exec, per plugin and
// CNI command, while on.
type stageTimes struct {
	invoke.Exec
	mu  sync.Mutex
	on  bool
	rec map[[2]string][]time.Duration // {plugin, command}
}

func newStageTimes() *stageTimes {
	return &stageTimes{
		Exec: &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}},
		rec:  map[[2]string][]time.Duration{},
	}
}

// ExecPlugin times one exec of a plugin (libcni calls it once per plugin
// and verb).
func (s *stageTimes) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	start := time.Now()
	out, err := s.Exec.ExecPlugin(ctx, pluginPath, stdin, environ)
	d := time.Since(start)
	cmd := ""
	for _, e := range environ {
		if v, ok := strings.CutPrefix(e, "CNI_COMMAND="); ok {
			cmd = v
		}
	}
	s.mu.Lock()
	if s.on {
		k := [2]string{filepath.Base(pluginPath), cmd}
		s.rec[k] = append(s.rec[k], d)
	}
	s.mu.Unlock()
	return out, err
}

func (s *stageTimes) record(on bool) {
	s.mu.Lock()
	s.on = on
	s.mu.Unlock()
}

// reset forgets what was recorded.
func (s *stageTimes) reset() {
	s.mu.Lock()
	s.rec = map[[2]string][]time.Duration{}
	s.mu.Unlock()
}

// live is a chain bound to its node, with its attached pods.
type live struct {
	spec   *chainSpec
	lab    *netsim.Lab
	node   *netsim.Node
	c      *chain.Chain
	stages *stageTimes
	res    *ChainResult
	pods   []*netsim.NS // attached, never detached (the node filling up)
	seq    int
}

// newPod creates an empty pod namespace.
func (l *live) newPod() (*netsim.NS, chain.RuntimeConf, error) {
	l.seq++
	role := fmt.Sprintf("%s-%d", shortName(l.spec.Name), l.seq)
	p, err := l.lab.AddNS(role)
	if err != nil {
		return nil, chain.RuntimeConf{}, err
	}
	rt := chain.RuntimeConf{ContainerID: l.lab.Name + "-" + role, NetNS: p.Path, IfName: "eth0"}
	if l.spec.portMapping {
		rt.CapabilityArgs = map[string]any{"portMappings": []map[string]any{
			{"hostPort": 20000 + l.seq, "containerPort": 80, "protocol": "tcp"},
		}}
	}
	return p, rt, nil
}

// shortName keeps namespace names short: "ours-nft" → "on".
func shortName(s string) string {
	a, b, _ := strings.Cut(s, "-")
	return a[:1] + b[:1]
}

// add runs ADD and checks that the pod got an address.
func (l *live) add(ctx context.Context, rt chain.RuntimeConf) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	start := time.Now()
	res, err := l.c.AddCurrent(ctx, rt)
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s: ADD %s: %w", l.spec.Name, rt.ContainerID, err)
	}
	if len(chain.PodIPs(res, rt.NetNS, rt.IfName)) == 0 {
		return d, fmt.Errorf("%s: ADD %s: no address on the pod interface", l.spec.Name, rt.ContainerID)
	}
	return d, nil
}

func (l *live) del(ctx context.Context, rt chain.RuntimeConf) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	start := time.Now()
	err := l.c.Del(ctx, rt)
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s: DEL %s: %w", l.spec.Name, rt.ContainerID, err)
	}
	return d, nil
}

// cycle is one timed ADD and DEL of a fresh pod, its namespace made and
// removed untimed.
func (l *live) cycle(ctx context.Context) (add, del time.Duration, err error) {
	p, rt, err := l.newPod()
	if err != nil {
		return 0, 0, err
	}
	defer l.lab.Remove(p)
	if add, err = l.add(ctx, rt); err != nil {
		return add, 0, err
	}
	del, err = l.del(ctx, rt)
	return add, del, err
}

// fill attaches pods until n are attached (untimed).
func (l *live) fill(ctx context.Context, n int) error {
	for len(l.pods) < n {
		p, rt, err := l.newPod()
		if err != nil {
			return err
		}
		if _, err := l.add(ctx, rt); err != nil {
			return err
		}
		l.pods = append(l.pods, p)
	}
	return nil
}

// concurrent creates n pods, ADDs them all at once, then DELs them all at
// once; it returns both wall times.
func (l *live) concurrent(ctx context.Context, n int) (add, del time.Duration, err error) {
	type pod struct {
		ns *netsim.NS
		rt chain.RuntimeConf
	}
	pods := make([]pod, n)
	defer func() {
		for _, p := range pods {
			if p.ns != nil {
				l.lab.Remove(p.ns)
			}
		}
	}()
	for i := range pods {
		ns, rt, err := l.newPod()
		if err != nil {
			return 0, 0, err
		}
		pods[i] = pod{ns, rt}
	}
	all := func(f func(chain.RuntimeConf) error) (time.Duration, error) {
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range pods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = f(pods[i].rt)
			}()
		}
		wg.Wait()
		return time.Since(start), errors.Join(errs...)
	}
	if add, err = all(func(rt chain.RuntimeConf) error { _, err := l.add(ctx, rt); return err }); err != nil {
		return add, 0, err
	}
	del, err = all(func(rt chain.RuntimeConf) error { _, err := l.del(ctx, rt); return err })
	return add, del, err
}

// stageStats turns the recorded exec times into per-stage statistics, in
// the conflist's order.
func (l *live) stageStats() []StageResult {
	var names []string
	for _, p := range l.c.List.Plugins {
		names = append(names, p.Network.Type)
	}
	l.stages.mu.Lock()
	defer l.stages.mu.Unlock()
	var out []StageResult
	for _, n := range names {
		out = append(out, StageResult{Plugin: n,
			Add: stats(l.stages.rec[[2]string{n, "ADD"}]),
			Del: stats(l.stages.rec[[2]string{n, "DEL"}])})
	}
	return out
}

// stats summarizes durations in milliseconds.
func stats(d []time.Duration) Stats {
	if len(d) == 0 {
		return Stats{}
	}
	s := make([]float64, len(d))
	for i, x := range d {
		s[i] = float64(x) / float64(time.Millisecond)
	}
	sort.Float64s(s)
	q := func(p float64) float64 { // linear interpolation between ranks
		x := p * float64(len(s)-1)
		i := int(x)
		if i+1 >= len(s) {
			return s[len(s)-1]
		}
		return s[i] + (x-float64(i))*(s[i+1]-s[i])
	}
	return Stats{N: len(s), Median: q(0.5), P10: q(0.1), P90: q(0.9)}
}
