package daemon

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/drift"
	"github.com/gitopsd/gitopsd/internal/notify"
	"github.com/gitopsd/gitopsd/internal/store"
)

// The drift controller (drift.Controller) decides; the loop here queues
// the looks: Docker's events poke the stack they concern (drift.Watch),
// every drift.check_interval pokes every stack whose objects changed, and
// reconciles compare the stacks that already run what they should (apply;
// a poll that finds nothing new does not, see quiet.go).

// recentClosedDrifts is how many closed drifts `drift` lists by default.
const recentClosedDrifts = 50

// periodicCheck is the poke of drift.check_interval: every stack, from one
// listing of the engine (see runChecks).
const periodicCheck = "\x00periodic"

// poke asks the loop to check a stack for drift ("" for every stack, in
// full; periodicCheck for every stack whose objects changed).
// It never blocks: pokes that arrive while a check is due merge into it.
func (d *Daemon) poke(name string) {
	d.checksMu.Lock()
	d.checks[name] = true
	d.checksMu.Unlock()
	select {
	case d.checkDue <- struct{}{}:
	default:
	}
}

// runChecks checks the stacks poked since the last run. A stack named by
// an event, and every stack after a full poke (the engine's events were
// missed, an image tag moved), is compared with the engine. The periodic
// check lists the engine once and compares only the stacks whose
// containers, networks or volumes changed since their last comparison.
func (d *Daemon) runChecks(ctx context.Context) {
	// While a write to the store has failed, the periodic check compares
	// every stack as it did before it learned to skip unchanged ones: the
	// records it writes are what failed, and the first that goes through
	// clears the error (status, gitopsd_store_writable).
	storeFailing := d.loop.storeFailing()
	d.checksMu.Lock()
	due := d.checks
	d.checks = map[string]bool{}
	d.checksMu.Unlock()
	var rows []store.StackState
	if due[""] || due[periodicCheck] {
		defer d.fullChecks.Add(1)
		var err error
		if rows, err = d.store.Stacks(ctx); err != nil {
			d.log.Error("drift check: read stacks", "err", err)
			return
		}
	}
	var digests map[string]string
	if due[periodicCheck] && !due[""] {
		var err error
		if digests, err = d.engine.ProjectDigests(ctx); err != nil {
			d.log.Warn("drift check: list the engine; comparing every stack", "err", err)
		}
	}
	if rows == nil {
		for _, name := range slices.Sorted(maps.Keys(due)) {
			rows = append(rows, store.StackState{Name: name})
		}
	}
	for _, s := range rows {
		key := ""
		if digests != nil && !due[s.Name] && !storeFailing {
			key = strings.Join([]string{digests[s.Name], d.viewOf(s.Name), s.Revision, s.Sync}, "\x00")
			if d.compared[s.Name] == key {
				continue // nothing of it changed since it was compared
			}
		}
		err := d.checkStack(ctx, s.Name, false)
		switch {
		case err == nil && key != "":
			d.compared[s.Name] = key
		case err != nil:
			delete(d.compared, s.Name)
			if ctx.Err() == nil {
				d.log.Error("drift check failed", "stack", s.Name, "err", err)
			}
		}
	}
}

// checkStack looks at one stack between reconciles: it is compared with
// the revision it runs when the live view shows that revision's files.
// With pull, its images are pulled per pull_policy first (a poll's look).
func (d *Daemon) checkStack(ctx context.Context, name string, pull bool) error {
	state, ok, err := d.store.Stack(ctx, name)
	if err != nil || !ok {
		return err // a project that is not one of our stacks is none of our business
	}
	d.mu.Lock()
	live, view := d.checkout, d.views[name]
	d.mu.Unlock()
	if live == "" || !drift.RunsItsView(state, view) {
		return nil
	}
	st, err := d.stacks.Load(ctx, live, name, d.host)
	if err != nil {
		return fmt.Errorf("load stack %s: %w", name, err)
	}
	return d.drifts.Check(ctx, st, state, pull)
}

// openedDrift counts and tells of a drift the controller opened.
func (d *Daemon) openedDrift(f drift.Finding) {
	if d.metrics != nil {
		d.metrics.DriftEvents.WithLabelValues(f.Stack, string(f.Kind)).Inc()
	}
	d.notifier.Send(notify.Drift, f.Stack, f.String())
}

// Drift lists open drifts and the newest closed ones, newest first.
func (d *Daemon) Drift(ctx context.Context, limit int) ([]api.Drift, error) {
	if limit <= 0 {
		limit = recentClosedDrifts
	}
	ds, err := d.store.Drifts(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.Drift, 0, len(ds))
	for _, x := range ds {
		out = append(out, api.Drift{
			ID: x.ID, Stack: x.Stack, Service: x.Service, Container: x.Container, Kind: x.Kind, Detail: x.Detail,
			OpenedAt: rfc3339(x.OpenedAt), ClosedAt: rfc3339(x.ClosedAt), ClosedBy: x.ClosedBy,
		})
	}
	return out, nil
}
