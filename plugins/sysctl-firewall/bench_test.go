package main

import (
	"testing"

	"github.com/vxvrf/cni/pkg/testutil"
)

// BenchmarkAddDel times one ADD and one DEL (with prevResult) of an IPv4
// pod with masquerade and anti-spoofing through the plugin binary, on a
// node whose project chains already exist. The cost model (DESIGN §2)
// allows one or two iptables execs per ADD and per DEL; at 5-10 ms an exec,
// ADD+DEL should stay well under ~25 ms here.
func BenchmarkAddDel(b *testing.B) {
	testutil.RequireRoot(b)
	n := newNode(b, "sf-bench")
	p := n.addPod(b, "p", "sfh-bench", "10.66.0.50/24")
	testutil.PluginDir(b, plugin)
	for _, bc := range []struct {
		name  string
		extra map[string]any
	}{
		{"filter", nil},
		{"masquerade+antiSpoofing", map[string]any{"masquerade": true, "antiSpoofing": true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conf := config(b, "1.1.0", bc.extra, p.prevResult(b))
			// Warm: the project chains exist, as on a node with pods.
			n.mustRun(b, "ADD", "sf-bench-warm", p, conf)
			n.mustRun(b, "DEL", "sf-bench-warm", p, conf)
			b.ResetTimer()
			for b.Loop() {
				n.mustRun(b, "ADD", "sf-bench", p, conf)
				n.mustRun(b, "DEL", "sf-bench", p, conf)
			}
		})
	}
}
