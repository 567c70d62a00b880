package main

// rollback collects the undo steps of an ADD so that a failed ADD changes
// nothing: `defer rb.unlessDone()` runs them, newest first, unless done()
// was called when the ADD succeeded.
type rollback struct {
	steps []func()
	ok    bool
}

func (r *rollback) push(undo func()) { r.steps = append(r.steps, undo) }

func (r *rollback) done() { r.ok = true }

func (r *rollback) unlessDone() {
	if r.ok {
		return
	}
	for i := len(r.steps) - 1; i >= 0; i-- {
		r.steps[i]()
	}
}
