// Whole-chain benchmarks: the cost of one pod's ADD and DEL through libcni,
// for our default conflist and for the reference chain of DESIGN.md §2
// ("Cost model": bridge+host-local, tuning, firewall, portmap), measured in
// the same run on the same machine. Root only; `go test` without -bench
// does not run them.
//
//	go test -run '^$' -bench 'ChainAddDel' -benchtime 20x ./integration/
//
// Each benchmark builds one lab with one node, attaches and detaches one
// warm-up pod (untimed: it creates the network-wide objects, the bridge and
// the shared iptables chains, so the loop measures the steady state; its
// cost is reported as ms/first-add), then for b.N iterations: create a pod
// namespace (untimed), ADD (timed), DEL (timed), remove the namespace
// (untimed). ms/add and ms/del are the mean wall time of one ADD and one
// DEL; ns/op is their sum.

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/vxvrf/cni/internal/chain"
	"github.com/vxvrf/cni/internal/netsim"
	"github.com/vxvrf/cni/internal/testutil"
)

// BenchmarkChainAddDel: our default conflist/vxvrf.conflist (dual-stack,
// masquerade, anti-spoofing, a pod sysctl), state dirs under a temp dir.
func BenchmarkChainAddDel(b *testing.B) {
	testutil.RequireRoot(b)
	bin := testutil.PluginDir(b, testutil.Plugins...)
	state := b.TempDir()
	conf, err := chain.SetStateDirs(testutil.DefaultConflist(b), state)
	if err != nil {
		b.Fatal(err)
	}
	benchAddDel(b, "bn-ours", conf, []string{bin}, nil, state)
}

// BenchmarkReferenceChainAddDel: the reference plugins v1.9.1
// bridge(+host-local) -> tuning -> firewall -> portmap, with one hostPort
// per pod.
//
//   - design: the conflist of the measurement behind DESIGN.md §2
//     (shared/reference/runtimes/demo-reference-chain.sh: IPv4 only,
//     tuning mtu 1400 + one sysctl, firewall, portmap with snat).
//   - dualstack: the same with an IPv6 range and route as well, so it
//     assigns the same address families as our chain.
func BenchmarkReferenceChainAddDel(b *testing.B) {
	testutil.RequireRoot(b)
	for _, c := range []struct {
		name, lab string
		ranges    []any
		routes    []any
	}{
		{"design", "bn-ref4",
			[]any{[]any{map[string]any{"subnet": "10.231.0.0/24"}}},
			[]any{map[string]any{"dst": "0.0.0.0/0"}}},
		{"dualstack", "bn-ref6",
			[]any{[]any{map[string]any{"subnet": "10.231.0.0/24"}}, []any{map[string]any{"subnet": "fd00:231::/64"}}},
			[]any{map[string]any{"dst": "0.0.0.0/0"}, map[string]any{"dst": "::/0"}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			ref := testutil.ReferencePlugins(b, "bridge", "host-local", "tuning", "firewall", "portmap")
			state := b.TempDir()
			conf := mustJSON(b, map[string]any{
				"cniVersion": "1.1.0",
				"name":       "bnref",
				"plugins": []any{
					map[string]any{
						"type": "bridge", "bridge": "bnref0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
						"ipam": map[string]any{
							"type": "host-local", "ranges": c.ranges, "routes": c.routes,
							"dataDir": filepath.Join(state, "ipam"),
						},
					},
					map[string]any{"type": "tuning", "mtu": 1400, "dataDir": filepath.Join(state, "tuning"),
						"sysctl": map[string]any{"net.ipv4.conf.eth0.rp_filter": "0"}},
					map[string]any{"type": "firewall", "backend": "iptables"},
					map[string]any{"type": "portmap", "backend": "iptables", "snat": true,
						"capabilities": map[string]any{"portMappings": true}},
				},
			})
			capArgs := map[string]any{"portMappings": []map[string]any{
				{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
			}}
			benchAddDel(b, c.lab, conf, []string{ref}, capArgs, state)
		})
	}
}

// benchAddDel runs the warm-up attachment and the timed loop for one
// conflist in a fresh lab named labName.
func benchAddDel(b *testing.B, labName string, conf []byte, cniPath []string, capArgs map[string]any, state string) {
	b.Helper()
	lab, node := testutil.NewNode(b, labName)
	list, err := chain.Parse(conf)
	if err != nil {
		b.Fatal(err)
	}
	c, err := chain.New(list, cniPath, filepath.Join(state, "cache"), node.NetNS)
	if err != nil {
		b.Fatal(err)
	}

	// one attachment: returns the wall time of its ADD and DEL.
	one := func(role string) (add, del time.Duration) {
		b.StopTimer()
		p, err := lab.AddNS(role)
		if err != nil {
			b.Fatal(err)
		}
		rt := chain.RuntimeConf{ContainerID: lab.Name + "-" + role, NetNS: p.Path, IfName: "eth0", CapabilityArgs: capArgs}
		ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
		defer cancel()

		b.StartTimer()
		start := time.Now()
		res, err := c.AddCurrent(ctx, rt)
		add = time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatalf("ADD %s: %v", rt.ContainerID, err)
		}
		if len(chain.PodIPs(res, rt.NetNS, rt.IfName)) == 0 {
			b.Fatalf("ADD %s: no address on the pod interface in %s", rt.ContainerID, jsonOf(res))
		}

		b.StartTimer()
		start = time.Now()
		err = c.Del(ctx, rt)
		del = time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatalf("DEL %s: %v", rt.ContainerID, err)
		}
		if err := lab.Remove(p); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		return add, del
	}

	first, _ := one("w")
	// What is left after a complete ADD+DEL: every later DEL must come back
	// to exactly this (no veth, no per-pod link left behind).
	base := benchLinks(b, node)
	b.ResetTimer()
	adds := make([]time.Duration, 0, b.N)
	dels := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		a, d := one(fmt.Sprintf("p%d", i))
		adds = append(adds, a)
		dels = append(dels, d)
	}
	b.StopTimer()
	if after := benchLinks(b, node); after != base {
		b.Errorf("links in the node after %d ADD+DEL differ from after the warm-up:\nbefore %s\nafter  %s", b.N, base, after)
	}
	b.ReportMetric(ms(mean(adds)), "ms/add")
	b.ReportMetric(ms(mean(dels)), "ms/del")
	b.ReportMetric(ms(median(adds)), "ms/add-median")
	b.ReportMetric(ms(median(dels)), "ms/del-median")
	b.ReportMetric(ms(first), "ms/first-add")
}

// benchLinks is the sorted list of link names in the node.
func benchLinks(b *testing.B, node *netsim.Node) string {
	b.Helper()
	l, err := chain.Links(node.NetNS)
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Sprint(names)
}

func mean(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return sum / time.Duration(len(d))
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mustJSON(b *testing.B, v any) []byte {
	b.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return out
}
