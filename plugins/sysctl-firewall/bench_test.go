package main

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/vxvrf/cni/internal/testutil"
)

// BenchmarkAddDel times one ADD and one DEL (with prevResult) of an IPv4
// pod with masquerade and anti-spoofing through the plugin binary, on a
// node whose node-wide objects already exist, per backend.
func BenchmarkAddDel(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.PluginDir(b, plugin)
	for _, be := range backends {
		for _, bc := range []struct {
			name  string
			extra map[string]any
		}{
			{"filter", nil},
			{"masquerade+antiSpoofing", map[string]any{"masquerade": true, "antiSpoofing": true}},
		} {
			b.Run(be+"/"+bc.name, func(b *testing.B) {
				n := newNode(b, labFor("sf-bench", be))
				p := n.addPod(b, "p", "sfh-bench", "10.66.0.50/24")
				conf := config(b, "1.1.0", with(be, bc.extra), p.prevResult(b))
				// Warm: the node-wide objects exist, as on a node with pods.
				n.stage().Add(b, "sf-bench-warm", p.NS, conf).OK(b)
				n.stage().Del(b, "sf-bench-warm", p.NS, conf).OK(b)
				b.ResetTimer()
				for b.Loop() {
					n.stage().Add(b, "sf-bench", p.NS, conf).OK(b)
					n.stage().Del(b, "sf-bench", p.NS, conf).OK(b)
				}
			})
		}
	}
}

// BenchmarkScale times ADD and DEL (masquerade + anti-spoofing, IPv4)
// with 1, 50, 100 and 250 other attachments of the network on the node,
// per backend: ms/add and ms/del are the medians over the loop. The other
// attachments are real ADDs (masquerade) of one background pod under up
// to 250 container IDs, each with its own address in prevResult.
func BenchmarkScale(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.PluginDir(b, plugin)
	for _, be := range backends {
		b.Run(be, func(b *testing.B) {
			n := newNode(b, labFor("sf-scale", be))
			bg := n.addPod(b, "bg", "sfh-bg", "10.66.0.2/24")
			p := n.addPod(b, "p", "sfh-scale", "10.66.0.3/24")
			conf := config(b, "1.1.0", with(be, map[string]any{"masquerade": true, "antiSpoofing": true}), p.prevResult(b))
			filled := 0
			fill := func(to int) {
				for ; filled < to; filled++ {
					prev := bg.prevResult(b)
					prev.IPs[0].Address.IP = net.IPv4(10, 66, byte(1+filled/200), byte(10+filled%200))
					c := config(b, "1.1.0", with(be, map[string]any{"masquerade": true}), prev)
					n.stage().Add(b, fmt.Sprintf("bg-%d", filled), bg.NS, c).OK(b)
				}
			}
			for _, pods := range []int{1, 50, 100, 250} {
				b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
					fill(pods)
					var add, del []time.Duration
					for b.Loop() {
						t0 := time.Now()
						n.stage().Add(b, "sf-scale", p.NS, conf).OK(b)
						t1 := time.Now()
						n.stage().Del(b, "sf-scale", p.NS, conf).OK(b)
						add, del = append(add, t1.Sub(t0)), append(del, time.Since(t1))
					}
					b.ReportMetric(median(add), "ms/add")
					b.ReportMetric(median(del), "ms/del")
				})
			}
		})
	}
}

func median(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration{}, d...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return float64(s[len(s)/2].Microseconds()) / 1000
}
