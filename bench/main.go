// Command bench is `make bench`: in one run on this machine it measures the
// cost of one pod's ADD and DEL for four chains, each on its own node
// namespace of one lab, iteration by iteration in turn (so a change of load
// hits all four alike):
//
//   - ours-nft: conflist/vxvrf.conflist with sysctl-firewall "backend":"nftables"
//   - ours-ipt: the same with "backend":"iptables"
//   - ref-full: the reference plugins bridge(+host-local) → tuning → firewall → portmap
//   - ref-bare: the reference bridge(+host-local) alone
//
// all dual-stack. For each chain: ADD and DEL latency (median, p10, p90)
// as the node fills (0, 50, 100, 250 pods already attached), the time of
// each plugin exec (per stage, from a timing wrapper around libcni's exec),
// and the wall time of 100 concurrent ADDs then 100 concurrent DELs. Then
// the IPAM alone: lockfile-ipam against host-local holding 10, 1,000 and
// 4,000 leases.
//
// It writes results.json, results.md (the tables, with the date and the
// machine) and three PNG plots into -out, and rewrites the block between
// <!-- bench:begin --> and <!-- bench:end --> of -readme from them. As root
// (it creates network namespaces, never touching the machine's own network;
// every namespace it made is removed at the end, also on error or SIGINT).
//
//	make build && go run ./bench            # the full run
//	go run ./bench -quick                   # a smoke run: few iterations, small levels
//	go run ./bench -render                  # only rewrite results.md, the plots and the README block
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// options is the command line.
type options struct {
	bin, ref, out, readme string
	state                 string // parent of the state dirs ("": /dev/shm when tmpfs)
	iterations            int
	levels                []int
	concurrent            int
	leases                []int
	quick, render         bool
	only                  string // "", "chains" or "ipam"
}

func main() {
	var o options
	var levels, leases string
	flag.StringVar(&o.bin, "bin", "bin", "directory of our plugin binaries (make build)")
	flag.StringVar(&o.ref, "ref", "", "directory of the reference plugins (default: $VXVRF_REF_BIN, .tools/cni, else built)")
	flag.StringVar(&o.out, "out", filepath.Join("bench", "results"), "results directory")
	flag.StringVar(&o.state, "state", "", "parent directory of the plugins' state and IPAM data (default /dev/shm when it is a tmpfs, like a node's /run; else the temp dir)")
	flag.StringVar(&o.readme, "readme", "README.md", "README whose bench block is rewritten (empty: none)")
	flag.IntVar(&o.iterations, "n", 0, "timed ADD+DEL per chain and level (default 30, -quick 3)")
	flag.StringVar(&levels, "levels", "", "pods already attached when measuring (default 0,50,100,250; -quick 0,5)")
	flag.IntVar(&o.concurrent, "concurrent", 0, "concurrent ADDs then DELs (default 100, -quick 10)")
	flag.StringVar(&leases, "leases", "", "leases held for the IPAM curve (default 10,1000,4000; -quick 10,500)")
	flag.BoolVar(&o.quick, "quick", false, "a smoke run: few iterations and small levels (the numbers mean little)")
	flag.BoolVar(&o.render, "render", false, "do not measure: render results.json of -out again")
	flag.StringVar(&o.only, "only", "", `measure only "chains" or only "ipam"`)
	flag.Parse()
	o.defaults(levels, leases)
	if o.only != "" && o.only != "chains" && o.only != "ipam" {
		fmt.Fprintf(os.Stderr, "bench: -only %q: want chains or ipam\n", o.only)
		os.Exit(2)
	}

	if err := runUntilSignal(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runUntilSignal is run, cancelled by SIGINT or SIGTERM.
func runUntilSignal(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, o)
}

func (o *options) defaults(levels, leases string) {
	pick := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	pick(&o.iterations, 30, 3)
	pick(&o.concurrent, 100, 10)
	o.levels = ints(levels, []int{0, 50, 100, 250}, []int{0, 5}, o.quick)
	o.leases = ints(leases, []int{10, 1000, 4000}, []int{10, 500}, o.quick)
}

// ints parses a comma separated list, or returns the default for the mode.
func ints(s string, full, quick []int, isQuick bool) []int {
	if s == "" {
		if isQuick {
			return quick
		}
		return full
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "bench: %q is not a list of counts\n", s)
			os.Exit(2)
		}
		out = append(out, n)
	}
	return out
}

// run measures (unless -render) and writes every output.
func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	var res *Results
	var err error
	if o.render {
		res, err = readResults(filepath.Join(o.out, "results.json"))
	} else {
		res, err = measure(ctx, o)
		if err == nil {
			err = writeJSON(filepath.Join(o.out, "results.json"), res)
		}
	}
	if err != nil {
		return err
	}
	if err := writePlots(o.out, res); err != nil {
		return err
	}
	md := renderMarkdown(res, "")
	if err := os.WriteFile(filepath.Join(o.out, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	if o.readme == "" {
		return nil
	}
	rel, err := filepath.Rel(filepath.Dir(o.readme), o.out)
	if err != nil {
		return err
	}
	return rewriteReadme(o.readme, renderMarkdown(res, filepath.ToSlash(rel)))
}
