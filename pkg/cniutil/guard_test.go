package cniutil

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
)

func TestGuardTurnsPanicIntoError999(t *testing.T) {
	rolledBack := false
	err := Guard("demo ADD", func() error {
		defer func() { rolledBack = true }()
		var m map[string]int
		m["x"] = 1 //nolint:staticcheck // SA5000: the nil-map write is the runtime panic under test
		return nil
	})
	var e *types.Error
	if !errors.As(err, &e) || e.Code != types.ErrInternal || !strings.Contains(e.Msg, "demo ADD: internal error") {
		t.Fatalf("got %v, want a 999 naming the verb", err)
	}
	if !rolledBack {
		t.Error("the function's own defers did not run")
	}
	if err := Guard("x", func() error { return nil }); err != nil {
		t.Errorf("no panic: got %v", err)
	}
}

func TestInNSRecoversPanicOnNetNSGoroutine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	target, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = testutils.UnmountNS(target); _ = target.Close() }()
	err = InNS(target, func(ns.NetNS) error {
		var p *struct{ x int }
		_ = p.x // nil dereference on the netns goroutine
		return nil
	})
	var e *types.Error
	if !errors.As(err, &e) || e.Code != types.ErrInternal {
		t.Fatalf("got %v, want error 999", err)
	}
	// The calling thread is still in its own namespace and fn errors pass through.
	want := errors.New("plain")
	if err := InNS(target, func(ns.NetNS) error { return want }); !errors.Is(err, want) {
		t.Errorf("got %v, want the function's error", err)
	}
}
