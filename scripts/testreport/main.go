// Command testreport reads `go test -json` on stdin and prints a short
// report: each package's result, the full output of failed tests, the
// reason of every skipped test (so a skipped VRF test says why), and a
// closing "N passed, N failed, N skipped" line. It exits 1 when anything
// failed, including a package that did not build.
//
// With -strict (the real-runtime suites: make e2e, make e2e-k8s) it also
// exits 1 when a test skipped or no test passed at all, so such a suite
// never passes without having run: a missing runtime, a lost root, a build
// tag that matches no file.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	strict := flag.Bool("strict", false, "also fail when a test skipped or no test passed")
	flag.Parse()
	os.Exit(report(os.Stdin, os.Stdout, *strict))
}

// report reads go test -json from in, writes the report to out and
// returns the exit code.
func report(in io.Reader, out io.Writer, strict bool) int {
	output := map[string][]string{} // package/test -> output lines
	var passed, failed, skipped int
	var skips, fails []string
	pkgFailed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			fmt.Fprintln(out, string(line)) // build errors arrive as plain text
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			output[key] = append(output[key], e.Output)
		case "build-output":
			fmt.Fprint(out, e.Output)
		case "build-fail":
			pkgFailed = true
		case "pass":
			if e.Test == "" {
				fmt.Fprintf(out, "ok   %s (%.1fs)\n", e.Package, e.Elapsed)
			} else {
				passed++
			}
			delete(output, key)
		case "skip":
			if e.Test == "" {
				fmt.Fprintf(out, "--   %s (no tests)\n", e.Package)
				continue
			}
			skipped++
			skips = append(skips, fmt.Sprintf("SKIP %s.%s: %s", e.Package, e.Test, reason(output[key])))
			delete(output, key)
		case "fail":
			if e.Test == "" {
				pkgFailed = true
				fmt.Fprintf(out, "FAIL %s (%.1fs)\n", e.Package, e.Elapsed)
				if o := output[key]; len(o) > 0 {
					fmt.Fprint(out, strings.Join(o, ""))
				}
				continue
			}
			failed++
			fails = append(fails, fmt.Sprintf("--- FAIL %s.%s\n%s", e.Package, e.Test, strings.Join(output[key], "")))
			delete(output, key)
		}
	}
	sort.Strings(skips)
	for _, s := range skips {
		fmt.Fprintln(out, s)
	}
	for _, f := range fails {
		fmt.Fprint(out, f)
	}
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || pkgFailed {
		return 1
	}
	if strict && skipped > 0 {
		fmt.Fprintf(out, "FAIL: %d skipped; -strict takes a skip for a failure\n", skipped)
		return 1
	}
	if strict && passed == 0 {
		fmt.Fprintln(out, "FAIL: no test passed; -strict wants the suite to have run")
		return 1
	}
	return 0
}

// reason is the last t.Skip message of a skipped test's output.
func reason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "---") || strings.HasPrefix(l, "===") {
			continue
		}
		return l
	}
	return "(no reason given)"
}
