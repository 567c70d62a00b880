package main

// rollback collects the undo steps of an ADD so that a failed ADD changes
// nothing: `defer rb.unlessDone()` runs them, newest first, unless done()
// was called when the ADD succeeded (a panic unwinding through the ADD runs
// them too).
type rollback struct {
	steps []func()
	ok    bool
}

// push adds an undo step, run before the ones pushed earlier.
func (r *rollback) push(undo func()) { r.steps = append(r.steps, undo) }

// done marks the ADD as succeeded: unlessDone runs nothing.
func (r *rollback) done() { r.ok = true }

func (r *rollback) unlessDone() {
	if r.ok {
		return
	}
	for i := len(r.steps) - 1; i >= 0; i-- {
		r.steps[i]()
	}
}
