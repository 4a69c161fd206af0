package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/drift"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/notify"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// reconcile fetches the source and converges every stack of this host (or
// only the named one). A failing stack never stops the others; the joined
// errors are returned for callers who wait. The loop fetches beside itself
// and then calls apply; reconcile is that path in one call, for tests that
// drive a daemon whose loop does not run.
func (d *Daemon) reconcile(ctx context.Context, trigger sync.Trigger, only string) error {
	if err := d.errHeld(); err != nil {
		return err
	}
	res := d.fetch(ctx)
	head, fetchErr, err := d.settleFetch(ctx, res.rev, res.err)
	if err != nil {
		return err
	}
	if head == "" {
		return fetchErr
	}
	return d.apply(withFetch(ctx, res), head, trigger, only)
}

// apply converges every stack of this host (or only the named one) to
// head, the revision last fetched.
func (d *Daemon) apply(ctx context.Context, head string, trigger sync.Trigger, only string) error {
	if q, ok := d.quiet(head); ok && trigger == sync.TriggerPoll && only == "" {
		return d.quietPoll(ctx, q)
	}
	d.setQuiet(quietHead{}) // whatever this does, the next poll looks again
	clear(d.compared)
	began := time.Now()
	v, err := d.showView(ctx, head, trigger)
	if err != nil {
		return err
	}
	ctx = sync.WithPhases(ctx, sync.Phase{Name: sync.PhaseCheckout, At: began, Took: time.Since(began), Detail: ids.Short(head)})
	began = time.Now()
	res, err := d.loadView(ctx, head, v)
	if err != nil {
		return err
	}
	ctx = sync.WithPhases(ctx, sync.Phase{Name: sync.PhaseLoad, At: began, Took: time.Since(began), Detail: fmt.Sprintf("%d stacks", len(res.Stacks)+len(res.Invalid))})
	states := make(map[string]store.StackState, len(v.rows))
	for _, s := range v.rows {
		states[s.Name] = s
	}
	present := map[string]bool{}
	var todo []*stack.Stack
	for _, st := range res.Stacks {
		present[st.Name] = true
		if only == "" || st.Name == only {
			todo = append(todo, st)
		}
	}
	errs := d.convergeAll(ctx, todo, states, head, trigger, v)
	for _, name := range slices.Sorted(maps.Keys(res.Invalid)) {
		present[name] = true
		if only != "" && name != only {
			continue
		}
		errs = append(errs, d.markInvalid(ctx, states[name], name, head, res.Invalid[name]))
	}
	if only == "" {
		errs = append(errs, d.removeGone(ctx, head, trigger, present))
	}
	if err := d.drifts.RecordBehind(ctx, head, only); err != nil {
		d.log.Error("record stacks behind the branch", "err", err)
	}
	d.reportStacks(ctx, only)
	d.prune(ctx, head)
	d.pruneImagesDue(ctx)
	err = errors.Join(errs...)
	if err == nil && only == "" && !d.rolloutHolding() {
		d.setQuiet(settledBy(head, res.Stacks))
	}
	return err
}

// loadView loads the stacks of the live view that target this host. A
// stack the policy of trusted files leaves out, or whose backup config
// does not validate, is invalid.
func (d *Daemon) loadView(ctx context.Context, head string, v liveView) (stack.Result, error) {
	res := d.stacks.LoadAll(ctx, v.live, d.host)
	if res.Err != nil {
		// Not knowing which stacks the revision has is not "it has none".
		return res, fmt.Errorf("load revision %s: %w", head, res.Err)
	}
	shown := maps.Clone(v.views)
	for name := range v.gated {
		delete(shown, name) // the head is what the rollout is asked about
	}
	d.refuseLeftOut(&res, head, shown)
	d.loadRollouts(ctx, &res, v)
	res.Stacks = slices.DeleteFunc(res.Stacks, func(st *stack.Stack) bool {
		if err := backup.Validate(st); err != nil {
			res.Invalid[st.Name] = err
			return true
		}
		return false
	})
	return res, nil
}

// target is the revision a stack converges to: head, or its pin.
func target(name, head string, v liveView) string {
	if pin, ok := v.pins[name]; ok {
		return pin // converge to the pinned revision, whatever the branch says
	}
	return head
}

// steady says whether a stack runs the revision it converges to (rev)
// already, so only drift can differ. known says whether it has a row.
func (d *Daemon) steady(name string, state store.StackState, known bool, rev string, trigger sync.Trigger) bool {
	return known && drift.Steady(state, rev, d.viewOf(name), trigger)
}

// converge brings one stack to the revision it converges to (head, or its
// pin): a stack that runs it already is only checked for drift, any other
// is synced, and rolled back when its new revision fails its gate, unless
// the fleet's rollout holds it (rollout.go). known says whether the stack
// has a row (state). prep is its image phase run ahead (nil: the sync
// runs it).
func (d *Daemon) converge(ctx context.Context, st *stack.Stack, state store.StackState, known bool, head string, trigger sync.Trigger, v liveView, prep *sync.Prepared) error {
	rev := target(st.Name, head, v)
	d.metrics.SeeStack(st.Name)
	steady := d.steady(st.Name, state, known, rev, trigger)
	if d.rolloutHolds(ctx, st, state, !steady, rev, head, trigger) {
		// What runs stays, on its files, and is healed; the rollout says why.
		return d.checkHeld(ctx, st, state, v)
	}
	var err error
	if v.gated[st.Name] {
		if st, err = d.releaseView(ctx, st.Name, head, state, v); err != nil {
			return err
		}
	}
	defer d.noteRollout(ctx)
	began, result := time.Now(), "succeeded"
	if steady {
		// Nothing to deploy: what differs is drift, healed or reported
		// per the stack's policy.
		err, result = d.drifts.Check(ctx, st, state, true), "unchanged"
	} else {
		if trigger != sync.TriggerRollback {
			d.snapshotBeforeDeploy(ctx, st, state, rev, trigger)
		}
		d.reportRolling(st.Name, rev)
		err = d.rec.SyncPrepared(ctx, st, rev, trigger, prep)
		if err != nil && sync.WantsRollback(err) && rev == head {
			result = "rolled_back"
			err = errors.Join(err, d.rollback(ctx, st.Name, head, v.live, err))
		}
		err = errors.Join(err, d.drifts.Settle(ctx, st, d.viewOf(st.Name)))
	}
	if err != nil && result != "rolled_back" {
		result = "failed"
	}
	d.metrics.Sync(st.Name, result, time.Since(began))
	switch result {
	case "failed":
		d.notifier.Send(notify.DeployFailed, st.Name, err.Error())
	case "rolled_back":
		d.notifier.Send(notify.RolledBack, st.Name, err.Error())
	}
	return err
}

// markInvalid records a stack whose revision did not load as Invalid; its
// running containers stay as they are. prev is the stack's row before
// this reconcile.
func (d *Daemon) markInvalid(ctx context.Context, prev store.StackState, name, head string, loadErr error) error {
	d.metrics.Sync(name, "invalid", 0)
	d.logInvalid(prev, name, head, loadErr)
	return errors.Join(d.rec.MarkInvalid(ctx, name, head, loadErr), &stackError{fmt.Errorf("stack %s: %w", name, loadErr)})
}

// removeGone takes down stacks this daemon deployed before that the head
// no longer has for this host. Only the store says what "deployed before"
// means: a stack's row is written before its first container is created, so
// nothing is missed after a crash, and stacks of another gitopsd (another
// state_dir) or of docker compose are never taken for ours.
func (d *Daemon) removeGone(ctx context.Context, head string, trigger sync.Trigger, present map[string]bool) error {
	states, err := d.store.Stacks(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range states {
		if present[s.Name] {
			continue
		}
		if err := d.rec.Remove(ctx, s.Name, head, trigger); err != nil {
			errs = append(errs, &stackError{fmt.Errorf("remove stack %s: %w", s.Name, err)})
			continue
		}
		errs = append(errs, d.drifts.CloseAll(ctx, s.Name))
	}
	return errors.Join(errs...)
}

// prune drops old checkouts, keeping those a rollback may need.
func (d *Daemon) prune(ctx context.Context, head string) {
	keep := []string{head}
	if states, err := d.store.Stacks(ctx); err == nil {
		for _, s := range states {
			keep = append(keep, s.Revision, s.LastHealthyRevision)
		}
	}
	if err := d.source.Prune(keep...); err != nil {
		d.log.Warn("prune checkouts", "err", err)
	}
}

// rollback returns a stack whose roll to failed did not pass its health
// gate to its last healthy revision, through the same gated roll, so
// services rolled before the failing one go back too.
// live is the live view: only the stack's own link moves, so what this
// reconcile decided for the others stays.
func (d *Daemon) rollback(ctx context.Context, name, failed, live string, cause error) error {
	state, ok, err := d.store.Stack(ctx, name)
	if err != nil || !ok {
		return err
	}
	good := state.LastHealthyRevision
	if good == "" || good == failed {
		return nil // nothing healthy to return to; the failed services were restored one by one
	}
	dir, err := d.source.Checkout(ctx, good)
	if err != nil {
		return fmt.Errorf("rollback %s: check out %s: %w", name, good, err)
	}
	if err := relinkLive(d.cfg.StateDir, dir, name); err != nil {
		return fmt.Errorf("rollback %s: %w", name, err)
	}
	st, err := d.stacks.Load(ctx, live, name, d.host)
	if err != nil {
		return fmt.Errorf("rollback %s: load revision %s: %w", name, good, err)
	}
	d.log.Warn("rolling back", "stack", name, "from", failed, "to", good, "reason", cause)
	d.metrics.Rollback(name, "health_gate")
	d.setView(name, good)
	return d.rec.Rollback(ctx, st, good, failed, cause)
}
