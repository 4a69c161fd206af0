package daemon

import (
	"context"

	"github.com/gitopsd/gitopsd/internal/sync"
)

// What the loop is asked to do arrives as typed jobs. Jobs that need the
// source (syncJob, rollbackJob, unpinJob) wait for a fetch, which runs
// beside the loop, and then run against the head it found; a nowJob runs
// on the loop at once (backup jobs need no fetch).

// A request hands one job to the loop; done, when not nil, gets its error.
type request struct {
	job  job
	done chan error // nil: nobody waits
}

// job is one of syncJob, rollbackJob, unpinJob and nowJob.
type job interface {
	// logArgs name the job in the log line of its failure.
	logArgs() []any
}

// syncJob converges every stack of this host, or one.
type syncJob struct {
	trigger sync.Trigger
	stack   string // "" for every stack
	auto    bool   // a poll, push or webhook: merges with the next one
}

// rollbackJob is an operator's rollback of a stack, pinned there.
type rollbackJob struct {
	stack    string
	to       string // the revision, "" for the last healthy one
	withData bool   // restore the snapshots taken before the deploy too
}

// unpinJob lets a pinned stack follow the branch again, and syncs it.
type unpinJob struct{ stack string }

// nowJob runs on the loop at once, without waiting for a fetch.
type nowJob struct {
	op, stack, volume string // for the log
	run               func(ctx context.Context) error
}

func (j syncJob) logArgs() []any     { return []any{"op", "sync", "trigger", j.trigger, "stack", j.stack} }
func (j rollbackJob) logArgs() []any { return []any{"op", "rollback", "stack", j.stack} }
func (j unpinJob) logArgs() []any    { return []any{"op", "unpin", "stack", j.stack} }
func (j nowJob) logArgs() []any      { return []any{"op", j.op, "stack", j.stack, "volume", j.volume} }

// isAuto says whether a request is an automatic sync (a poll, a push, a
// webhook), which merges with the next one.
func isAuto(r request) bool {
	s, ok := r.job.(syncJob)
	return ok && s.auto
}

// isFullManual says whether a request is a sync of every stack asked for
// by hand, which covers the automatic one.
func isFullManual(r request) bool {
	s, ok := r.job.(syncJob)
	return ok && !s.auto && s.stack == ""
}

// queue hands a job to the loop, which runs one at a time, and waits for
// its result when asked to.
func (d *Daemon) queue(ctx context.Context, j job, wait bool) error {
	req := request{job: j}
	if wait {
		req.done = make(chan error, 1)
	}
	select {
	case d.requests <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !wait {
		return nil
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
