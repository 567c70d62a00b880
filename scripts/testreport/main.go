// Command testreport reads `go test -json` on stdin and prints a short
// report: each package's result, the full output of failed tests, the
// reason of every skipped test (so a skipped VRF test says why), and a
// closing "N passed, N failed, N skipped" line. It exits 1 when anything
// failed, including a package that did not build.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
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
	output := map[string][]string{} // package/test -> output lines
	var passed, failed, skipped int
	var skips, fails []string
	pkgFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			fmt.Println(string(line)) // build errors arrive as plain text
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			output[key] = append(output[key], e.Output)
		case "build-output":
			fmt.Print(e.Output)
		case "build-fail":
			pkgFailed = true
		case "pass":
			if e.Test == "" {
				fmt.Printf("ok   %s (%.1fs)\n", e.Package, e.Elapsed)
			} else {
				passed++
			}
			delete(output, key)
		case "skip":
			if e.Test == "" {
				fmt.Printf("--   %s (no tests)\n", e.Package)
				continue
			}
			skipped++
			skips = append(skips, fmt.Sprintf("SKIP %s.%s: %s", e.Package, e.Test, reason(output[key])))
			delete(output, key)
		case "fail":
			if e.Test == "" {
				pkgFailed = true
				fmt.Printf("FAIL %s (%.1fs)\n", e.Package, e.Elapsed)
				if out := output[key]; len(out) > 0 {
					fmt.Print(strings.Join(out, ""))
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
		fmt.Println(s)
	}
	for _, f := range fails {
		fmt.Print(f)
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || pkgFailed {
		os.Exit(1)
	}
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
