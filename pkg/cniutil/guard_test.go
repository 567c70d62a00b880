package cniutil

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
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
	defer func() {
		// Close first: an open handle keeps the bind mount busy.
		_ = target.Close()
		if err := testutils.UnmountNS(target); err != nil {
			t.Errorf("remove the test netns: %v", err)
		}
	}()
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

// TestRunDel: a DEL that reads no config gets stdin as it is (not JSON
// here) and the CmdArgs from the environment unchecked; its error keeps
// its CNI code, any other error becomes 999.
func TestRunDel(t *testing.T) {
	t.Setenv("CNI_CONTAINERID", "c1")
	t.Setenv("CNI_IFNAME", "eth0")
	t.Setenv("CNI_NETNS", "")
	var got *skel.CmdArgs
	del := func(a *skel.CmdArgs) error { got = a; return nil }
	if err := runDel(del, strings.NewReader("not json")); err != nil {
		t.Fatal(err)
	}
	if got.ContainerID != "c1" || got.IfName != "eth0" || string(got.StdinData) != "not json" {
		t.Errorf("args %+v", got)
	}
	if e := runDel(func(*skel.CmdArgs) error { return Errorf(types.ErrInvalidNetNS, "own netns") }, strings.NewReader("")); e == nil || e.Code != types.ErrInvalidNetNS {
		t.Errorf("a CNI error: %v", e)
	}
	if e := runDel(func(*skel.CmdArgs) error { return errors.New("boom") }, strings.NewReader("")); e == nil || e.Code != types.ErrInternal {
		t.Errorf("another error: %v", e)
	}
}
