// Package demokit is what the two demos (integration/demo and
// integration/cluster-demo) share: the lab they build and always remove,
// also on SIGINT/SIGTERM, section headings, checks and the exit status.
package demokit

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/vxvrf/cni/integration/cluster"
)

// Lab is one demo run's lab and tally.
type Lab struct {
	Name     string           // the demo's name, in its messages
	C        *cluster.Cluster // the namespaces, once built
	Tmp      string           // a temporary directory, removed with the lab
	Failures int              // checks that failed
	once     sync.Once
}

// Cleanup removes the lab and the temporary directory, once.
func (l *Lab) Cleanup() {
	l.once.Do(func() {
		if l.C != nil {
			if err := l.C.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "%s: removing the lab: %v\n", l.Name, err)
			}
		}
		if l.Tmp != "" {
			_ = os.RemoveAll(l.Tmp)
		}
	})
}

// RemoveOnSignal removes the lab and exits (130) on SIGINT or SIGTERM,
// until the returned stop is called.
func (l *Lab) RemoveOnSignal() (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-sig; ok {
			fmt.Fprintln(os.Stderr, "\ninterrupted: removing the lab")
			l.Cleanup()
			os.Exit(130)
		}
	}()
	return func() { signal.Stop(sig) }
}

// Check prints one outcome and counts a failure.
func (l *Lab) Check(what string, err error) {
	if err != nil {
		l.Failures++
		fmt.Printf("  FAIL  %s: %v\n", what, err)
		return
	}
	fmt.Printf("  ok    %s\n", what)
}

// Section prints a heading.
func Section(title string) { fmt.Printf("\n=== %s\n", title) }

// Main runs a demo as root: run, then the lab removed whatever happened,
// then the exit status: 2 without root, 1 when run failed or a check did
// (failedHint says where to look), else ok() is printed.
func (l *Lab) Main(run func() error, failedHint string, ok func() string) {
	if os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "%s: needs root (it creates network namespaces; the machine's own network is not touched)\n", l.Name)
		os.Exit(2)
	}
	err := run()
	l.Cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nFAILED: %v\n(the lab was removed)\n", err)
		os.Exit(1)
	}
	if l.Failures > 0 {
		fmt.Fprintf(os.Stderr, "\nFAILED: %d check(s) failed (%s; the lab was removed)\n", l.Failures, failedHint)
		os.Exit(1)
	}
	fmt.Println("\n" + ok())
}
