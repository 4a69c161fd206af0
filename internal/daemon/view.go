package daemon

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// liveView is what showView made: the head's checkout (dir), the live
// view (live), the stacks' rows, and what heldStacks said of the held
// stacks (their checkouts, the revisions they converge to, the revisions
// of those checkouts, and which of them the fleet's rollout may hold).
type liveView struct {
	dir, live         string
	rows              []store.StackState
	held, pins, views map[string]string
	// gated are the stacks shown at the revision they run until converge
	// asks the rollout about the head (rollout.go): loaded from those
	// files, but judged (rollout, validity) on the head's.
	gated map[string]bool
}

// showView checks out head and makes the live view of it that drift checks
// compare stacks with: held stacks show the revision they run.
func (d *Daemon) showView(ctx context.Context, head string, trigger sync.Trigger) (liveView, error) {
	dir, err := d.source.Checkout(ctx, head)
	if err != nil {
		d.log.Error("checkout failed", "revision", head, "err", err)
		return liveView{}, err
	}
	rows, err := d.store.Stacks(ctx)
	if err != nil {
		return liveView{}, err
	}
	held, pins, views, gated, err := d.heldStacks(ctx, rows, head, trigger)
	if err != nil {
		return liveView{}, err
	}
	live, err := linkLive(d.cfg.StateDir, dir, held)
	if err != nil {
		return liveView{}, err
	}
	entries, err := os.ReadDir(filepath.Join(live, "stacks"))
	if err != nil && !os.IsNotExist(err) {
		return liveView{}, fmt.Errorf("live view: %w", err)
	}
	d.mu.Lock()
	d.checkout, d.head = live, head
	d.views = map[string]string{}
	for _, e := range entries {
		d.views[e.Name()] = head
	}
	for name, rev := range views {
		d.views[name] = rev
	}
	d.mu.Unlock()
	return liveView{dir: dir, live: live, rows: rows, held: held, pins: pins, views: views, gated: gated}, nil
}

// heldStacks are the stacks that do not follow the head: pinned ones (by
// an operator's rollback) stay on their pinned revision, and ones whose
// folder has not changed since a revision of it failed its health gate stay,
// for polls, on the revision they run. It returns the checkouts of the live
// view that are not the head's, the revision each held stack converges to
// (the pin, or the failed revision, which Sync leaves alone), the
// revision of each of those checkouts, and the stacks whose later wave of
// the fleet's rollout may hold the head: they stay on the files of the
// revision they run until converge has asked the rollout (releaseView
// moves one to the head's files), so a container that restarts meanwhile
// never reads the files of a revision its wave has not taken. states are
// the stacks' rows.
func (d *Daemon) heldStacks(ctx context.Context, states []store.StackState, head string, trigger sync.Trigger) (held, pins, views map[string]string, gated map[string]bool, err error) {
	held, pins, views, gated = map[string]string{}, map[string]string{}, map[string]string{}, map[string]bool{}
	for _, s := range states {
		rev := ""
		switch {
		case s.Pinned && s.Target != "":
			rev = s.Target
			pins[s.Name] = rev
		case trigger != sync.TriggerRetry && d.failedUnchanged(ctx, s, head):
			// Sync leaves the failed revision alone, and the live view
			// stays on the revision the stack runs. (`sync --retry`
			// retries a failed revision.)
			pins[s.Name] = s.FailedRevision
			if s.Revision == "" || s.Revision == s.FailedRevision {
				continue // pause/continue kept it on the failed revision's files
			}
			rev = s.Revision
		case d.rolloutGates(s, head):
			rev = s.Revision
			gated[s.Name] = true
		default:
			continue
		}
		dir, err := d.source.Checkout(ctx, rev)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("check out %s for stack %s: %w", rev, s.Name, err)
		}
		held[s.Name], views[s.Name] = dir, rev
	}
	return held, pins, views, gated, nil
}

// viewOf is the revision whose files the live view shows for a stack.
func (d *Daemon) viewOf(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.views[name]
}

// setView says the live view shows revision rev's files for a stack.
func (d *Daemon) setView(name, rev string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.views[name] = rev
}

// failedUnchanged says whether a stack's folder is the same at head as at
// the revision that failed its health gate: a commit elsewhere in the
// repository is no reason to retry it.
func (d *Daemon) failedUnchanged(ctx context.Context, s store.StackState, head string) bool {
	if s.FailedRevision == "" {
		return false
	}
	same, err := d.source.SameTree(ctx, s.FailedRevision, head, path.Join("stacks", s.Name))
	if err != nil {
		d.log.Warn("cannot tell whether a failed stack changed; treating it as changed only if the head moved", "stack", s.Name, "err", err)
		return s.FailedRevision == head
	}
	return same
}
