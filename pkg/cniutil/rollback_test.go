package cniutil

import (
	"slices"
	"testing"
)

func TestRollbackOrder(t *testing.T) {
	run := func(succeed, panics bool) (ran []int) {
		defer func() { _ = recover() }()
		var rb Rollback
		defer rb.UnlessDone()
		for i := 1; i <= 3; i++ {
			rb.Push(func() { ran = append(ran, i) })
		}
		if panics {
			panic("add")
		}
		if succeed {
			rb.Done()
		}
		return ran
	}
	if got := run(false, false); !slices.Equal(got, []int{3, 2, 1}) {
		t.Errorf("failed ADD undid %v, want [3 2 1] (newest first)", got)
	}
	if got := run(true, false); len(got) != 0 {
		t.Errorf("successful ADD undid %v, want nothing", got)
	}
	if got := run(false, true); !slices.Equal(got, []int{3, 2, 1}) {
		t.Errorf("panicking ADD undid %v, want [3 2 1]", got)
	}
}
