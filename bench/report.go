package main

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"strings"
)

// README markers: rewriteReadme replaces what lies between them.
const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
)

// Plot file names in the results directory.
const (
	plotPods   = "latency-vs-pods.png"
	plotStages = "stages.png"
	plotLeases = "ipam-leases.png"
)

// renderMarkdown is the results as Markdown. imgDir is where the plots are
// relative to the document ("" : beside it).
func renderMarkdown(r *Results, imgDir string) string {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	mode := "full run"
	if r.Quick {
		mode = "**quick smoke run: too few iterations for the numbers to mean much**"
	}
	w("Measured by `make bench` (`go run ./bench`) on %s, %s: %d CPUs (%s), kernel %s, %s; load average %s before, %s after; state and IPAM data on %s; %d ADD+DEL per chain and level, run took %.0f s.\n\n",
		r.Date, mode, r.Machine.CPUs, r.Machine.CPU, r.Machine.Kernel, r.Machine.Go,
		r.Machine.LoadBefore, r.Machine.LoadAfter, r.StateFS, r.Iterations, r.Seconds)
	w("Times in ms: median [p10–p90] of one ADD or DEL through libcni, every chain on its own node namespace of one lab, measured in turn iteration by iteration.\n\n")

	w("| chain | ADD | DEL | ADD+DEL (medians) | first ADD |\n|---|---|---|---|---|\n")
	for _, c := range r.Chains {
		if c.NA != "" {
			w("| %s | %s | | | |\n", c.Name, c.NA)
			continue
		}
		if len(c.Levels) == 0 {
			continue
		}
		l := c.Levels[0]
		w("| %s | %s | %s | %.1f | %.1f |\n", c.Name, fmtStats(l.Add), fmtStats(l.Del), l.Add.Median+l.Del.Median, c.FirstAdd)
	}
	w("\n")
	for _, c := range r.Chains {
		w("- `%s`: %s", c.Name, c.Desc)
		if c.Note != "" {
			w(" (%s)", c.Note)
		}
		w(".\n")
	}

	w("\n**As the node fills** (ADD / DEL medians, ms, with that many pods already attached):\n\n| chain |")
	for _, n := range r.Levels {
		w(" %d pods |", n)
	}
	w("\n|---|%s\n", strings.Repeat("---|", len(r.Levels)))
	for _, c := range r.Chains {
		if c.NA != "" {
			continue
		}
		w("| %s |", c.Name)
		for _, l := range c.Levels {
			w(" %.1f / %.1f |", l.Add.Median, l.Del.Median)
		}
		w("\n")
	}

	w("\n**%d concurrent ADDs, then %d concurrent DELs** (wall time, ms):\n\n| chain | ADDs | DELs |\n|---|---|---|\n", r.Concurrent, r.Concurrent)
	for _, c := range r.Chains {
		if c.NA == "" {
			w("| %s | %.0f | %.0f |\n", c.Name, c.ConcurrentAdd, c.ConcurrentDel)
		}
	}

	last := firstLevel(r)
	if len(r.Levels) > 0 {
		last = r.Levels[len(r.Levels)-1]
	}
	w("\n**Per stage** (one exec of each plugin, ms; median [p10–p90] with %d pods attached, median with %d; the reference `bridge` execs `host-local` itself):\n\n| chain | plugin | ADD | DEL | ADD, %d pods | DEL, %d pods |\n|---|---|---|---|---|---|\n",
		firstLevel(r), last, last, last)
	for _, c := range r.Chains {
		for i, s := range c.Stages {
			full := "– | –"
			if i < len(c.StagesFull) && c.StagesFull[i].Plugin == s.Plugin {
				full = fmt.Sprintf("%.1f | %.1f", c.StagesFull[i].Add.Median, c.StagesFull[i].Del.Median)
			}
			w("| %s | %s | %s | %s | %s |\n", c.Name, s.Plugin, fmtStats(s.Add), fmtStats(s.Del), full)
		}
	}

	w("\n**IPAM alone** (one exec, ms, median [p10–p90], dual-stack, holding that many leases):\n\n| plugin | leases | ADD | DEL |\n|---|---|---|---|\n")
	for _, p := range r.IPAM {
		w("| %s | %d | %s | %s |\n", p.Plugin, p.Leases, fmtStats(p.Add), fmtStats(p.Del))
	}

	w("\n**Targets** (issue 10; ratios of medians in this run):\n\n")
	for _, t := range targets(r) {
		w("- %s\n", t)
	}
	img := func(name, alt string) {
		p := name
		if imgDir != "" {
			p = path.Join(imgDir, name)
		}
		w("![%s](%s)\n", alt, p)
	}
	w("\n")
	img(plotPods, "ADD and DEL latency vs pods already on the node, per chain")
	img(plotStages, "per-stage ADD and DEL time")
	img(plotLeases, "lockfile-ipam vs host-local ADD latency vs leases held")
	return b.String()
}

func fmtStats(s Stats) string {
	if s.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f [%.1f–%.1f]", s.Median, s.P10, s.P90)
}

func firstLevel(r *Results) int {
	if len(r.Levels) == 0 {
		return 0
	}
	return r.Levels[0]
}

// targets checks the ratios issue 10 asks for, saying met or missed.
func targets(r *Results) []string {
	find := func(name string) *ChainResult {
		for i := range r.Chains {
			if r.Chains[i].Name == name && r.Chains[i].NA == "" && len(r.Chains[i].Levels) > 0 {
				return &r.Chains[i]
			}
		}
		return nil
	}
	cycle := func(c *ChainResult) float64 { return c.Levels[0].Add.Median + c.Levels[0].Del.Median }
	var out []string
	check := func(what string, got, limit float64) {
		verdict := "met"
		if got > limit {
			verdict = "**missed**"
		}
		prec := 2 // enough digits that the verdict can be read off the number
		if d := got - limit; d > -0.01 && d < 0.01 {
			prec = 3
		}
		out = append(out, fmt.Sprintf("%s: %.*f× (target ≤ %.2f×): %s", what, prec, got, limit, verdict))
	}
	bare, full := find("ref-bare"), find("ref-full")
	for _, name := range []string{"ours-nft", "ours-ipt"} {
		c := find(name)
		if c == nil {
			out = append(out, fmt.Sprintf("%s: not measured", name))
			continue
		}
		if bare != nil {
			check(fmt.Sprintf("`%s` ADD+DEL vs `ref-bare`", name), cycle(c)/cycle(bare), 1.2)
		}
		if full != nil {
			check(fmt.Sprintf("`%s` ADD+DEL vs `ref-full`", name), cycle(c)/cycle(full), 0.25)
		}
		check(fmt.Sprintf("`%s` DEL vs ADD", name), c.Levels[0].Del.Median/c.Levels[0].Add.Median, 1)
		if n := len(c.Levels); n > 1 {
			check(fmt.Sprintf("`%s` ADD at %d pods vs at %d", name, c.Levels[n-1].Pods, c.Levels[0].Pods),
				c.Levels[n-1].Add.Median/c.Levels[0].Add.Median, 1.1)
		}
	}
	var lo, hi *IPAMResult
	for i := range r.IPAM {
		p := &r.IPAM[i]
		if p.Plugin != "lockfile-ipam" {
			continue
		}
		if lo == nil || p.Leases < lo.Leases {
			lo = p
		}
		if hi == nil || p.Leases > hi.Leases {
			hi = p
		}
	}
	if lo != nil && hi != lo {
		check(fmt.Sprintf("`lockfile-ipam` ADD at %d leases vs at %d", hi.Leases, lo.Leases), hi.Add.Median/lo.Add.Median, 1.5)
	}
	return out
}

// rewriteReadme replaces the text between the bench markers of the file
// with md; the rest of the file is kept byte for byte.
func rewriteReadme(file, md string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, beginMarker)
	j := strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s … %s block to rewrite", file, beginMarker, endMarker)
	}
	out := s[:i+len(beginMarker)] + "\n" + md + s[j:]
	return os.WriteFile(file, []byte(out), 0o644)
}
