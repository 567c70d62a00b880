package cniutil

// Rollback collects the undo steps of an ADD so that a failed ADD changes
// nothing: `defer rb.UnlessDone()` runs them, newest first, unless Done
// was called when the ADD succeeded (a panic unwinding through the ADD runs
// them too).
type Rollback struct {
	steps []func()
	ok    bool
}

// Push adds an undo step, run before the ones pushed earlier.
func (r *Rollback) Push(undo func()) { r.steps = append(r.steps, undo) }

// Done marks the ADD as succeeded: UnlessDone runs nothing.
func (r *Rollback) Done() { r.ok = true }

// UnlessDone runs the undo steps, newest first, unless Done was called.
func (r *Rollback) UnlessDone() {
	if r.ok {
		return
	}
	for i := len(r.steps) - 1; i >= 0; i-- {
		r.steps[i]()
	}
}
