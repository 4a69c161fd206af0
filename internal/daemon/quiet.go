package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/stack/vocab"
)

// A poll that finds the head the last reconcile converged every stack to,
// without an error and with no stack held back by the fleet's rollout,
// has nothing to deploy: it does nothing but the ref check. Drift is the event stream's and the periodic check's; only the
// stacks whose images are pulled at polls (pull_policy always, daily,
// weekly, every_<duration>) are still compared, with their pulls.

// quietHead is what a poll needs to know to do nothing.
type quietHead struct {
	head   string   // "" until a reconcile of every stack went through
	stacks []string // the stacks it converged
	pulls  []string // those whose images a poll pulls
}

// quiet says whether a poll of head has nothing to do, and what it
// still has to look at.
func (d *Daemon) quiet(head string) (quietHead, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settled, d.settled.head != "" && d.settled.head == head
}

// setQuiet remembers what the last reconcile left (zero: polls reconcile
// again).
func (d *Daemon) setQuiet(q quietHead) {
	d.mu.Lock()
	d.settled = q
	d.mu.Unlock()
}

// quietPoll is a poll that found nothing new. It counts as an unchanged
// sync of every stack.
func (d *Daemon) quietPoll(ctx context.Context, q quietHead) error {
	for _, name := range q.stacks {
		d.metrics.Sync(name, "unchanged", 0)
	}
	var errs []error
	for _, name := range q.pulls {
		began := time.Now()
		if err := d.checkStack(ctx, name, true); err != nil {
			errs = append(errs, &stackError{err})
		}
		d.metrics.Sync(name, "unchanged", time.Since(began))
	}
	// What drift checks changed of the rows since (health) reaches the
	// commit statuses and the rollout's healthy-since rows as at any
	// reconcile: reads of the record, and writes only of what changed.
	d.reportStacks(ctx, "")
	d.noteRollout(ctx)
	d.pruneImagesDue(ctx)
	return errors.Join(errs...)
}

// rolloutHolding says whether the rollout holds a stack back: its wave may
// open at any poll, so polls must ask again.
func (d *Daemon) rolloutHolding() bool {
	d.rollouts.mu.Lock()
	defer d.rollouts.mu.Unlock()
	for _, sr := range d.rollouts.stacks {
		if sr != nil && sr.held != "" {
			return true
		}
	}
	return false
}

// settledBy is what a reconcile of every stack to head, which went
// through, leaves for the polls after it.
func settledBy(head string, stacks []*stack.Stack) quietHead {
	q := quietHead{head: head}
	for _, st := range stacks {
		q.stacks = append(q.stacks, st.Name)
		if pullsAtPolls(st) {
			q.pulls = append(q.pulls, st.Name)
		}
	}
	return q
}

// pullsAtPolls says whether a poll may pull an image of st: a tag moved in
// the registry is a drift only a pull shows.
func pullsAtPolls(st *stack.Stack) bool {
	if st.Project == nil {
		return true // not loaded whole: look, as before
	}
	for _, svc := range st.Project.Services {
		p, err := vocab.ParsePullPolicy(svc.PullPolicy)
		if err != nil || p.Name == vocab.PullAlways || p.Every > 0 {
			return true
		}
	}
	return false
}
