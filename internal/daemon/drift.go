package daemon

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/drift"
	"github.com/gitopsd/gitopsd/internal/notify"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// Drift is seen three ways, all serialized through the reconcile loop:
// Docker's events poke the stack they concern (drift.Watch), every
// drift.check_interval every stack is compared in full, and every poll
// compares the stacks that already run what they should instead of
// re-deploying them. Each look runs checkDrift.

// recentClosedDrifts is how many closed drifts `drift` lists by default.
const recentClosedDrifts = 50

// poke asks the loop to check a stack for drift ("" for every stack).
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

// pokeAfter pokes a stack once wait has passed, unless a poke is already
// scheduled for it by then: a service backing off gets one timer.
func (d *Daemon) pokeAfter(name string, wait time.Duration) {
	at := time.Now().Add(wait)
	d.checksMu.Lock()
	defer d.checksMu.Unlock()
	if due, ok := d.retryAt[name]; ok && !due.After(at) && due.After(time.Now()) {
		return
	}
	d.retryAt[name] = at
	time.AfterFunc(wait, func() { d.poke(name) })
}

// runChecks checks the stacks poked since the last run.
func (d *Daemon) runChecks(ctx context.Context) {
	d.checksMu.Lock()
	due := d.checks
	d.checks = map[string]bool{}
	d.checksMu.Unlock()
	var names []string
	if due[""] {
		defer d.fullChecks.Add(1)
		states, err := d.store.Stacks(ctx)
		if err != nil {
			d.log.Error("drift check: read stacks", "err", err)
			return
		}
		for _, s := range states {
			names = append(names, s.Name)
		}
	} else {
		names = sortedKeys(due)
	}
	for _, name := range names {
		if err := d.checkStack(ctx, name); err != nil && ctx.Err() == nil {
			d.log.Error("drift check failed", "stack", name, "err", err)
		}
	}
}

// checkStack looks at one stack between reconciles: it is compared with
// the revision it runs when the live view shows that revision's files.
func (d *Daemon) checkStack(ctx context.Context, name string) error {
	state, ok, err := d.store.Stack(ctx, name)
	if err != nil || !ok {
		return err // a project that is not one of our stacks is none of our business
	}
	d.mu.Lock()
	live, view := d.checkout, d.views[name]
	d.mu.Unlock()
	if live == "" || !runsItsView(state, view) {
		return nil
	}
	st, err := d.stacks.Load(ctx, live, name, d.host)
	if err != nil {
		return fmt.Errorf("load stack %s: %w", name, err)
	}
	return d.checkDrift(ctx, st, state, false)
}

// runsItsView says whether a stack runs the revision whose files the live
// view shows for it, with nothing in flight: then whatever differs between
// those files and the engine is drift. A roll in progress or cut off, a
// roll that failure_action left half done, and a stack whose branch
// revision did not load are not compared (the next sync is theirs).
func runsItsView(s store.StackState, view string) bool {
	return s.Revision != "" && s.Revision == view &&
		s.Sync != string(sync.Progressing) && s.Sync != string(sync.Invalid) &&
		s.FailedRevision != s.Revision
}

// steady says whether a reconcile toward rev has nothing to deploy for the
// stack, only drift to look for: it runs rev, or rev is the revision that
// failed its gate and is held.
func steady(s store.StackState, rev, view string, trigger sync.Trigger) bool {
	if !runsItsView(s, view) {
		return false
	}
	return rev == s.Revision || (rev == s.FailedRevision && trigger != sync.TriggerRetry)
}

// checkDrift compares a stack with the revision it runs, records what
// drifted, and heals it under the stack's heal policy. With pull, images
// are pulled per pull_policy first (polls do; events do not). Healing never
// waits on the record: a drift row, or the stack's row, that cannot be
// written (a full state_dir) is noted (noteStore) and the heal goes on.
func (d *Daemon) checkDrift(ctx context.Context, st *stack.Stack, state store.StackState, pull bool) error {
	mode := sync.ImageDryRun
	if pull {
		mode = sync.ImageCheck
	}
	plan, health, err := d.rec.Compare(ctx, st, state.Revision, mode)
	if err != nil {
		return err
	}
	findings := drift.Classify(plan)
	if err := d.recordDrifts(ctx, st.Name, findings, drift.ClosedResolved); err != nil {
		d.noteStore("record drift of stack "+st.Name, err) // a check that changed nothing wrote nothing: only a failure says something
	}
	var healErr error
	if len(findings) > 0 && st.Options.Drift == stack.DriftHeal {
		services := map[string]bool{}
		now := time.Now()
		for _, f := range findings {
			if _, asked := services[f.Service]; asked {
				continue
			}
			wait := d.backoff.Wait(backoffKey(st.Name, f.Service), now)
			services[f.Service] = wait == 0
			if wait > 0 {
				d.log.Warn("heals of this service keep failing; healing later", "stack", st.Name, "service", f.Service, "in", wait.Round(time.Millisecond))
				d.pokeAfter(st.Name, wait)
			}
		}
		if anyTrue(services) {
			healErr = d.rec.Heal(ctx, st, state.Revision, services)
			retry := time.Duration(0)
			for svc, healed := range services {
				if !healed {
					continue
				}
				key := backoffKey(st.Name, svc)
				if raced(healErr) {
					continue // the next event looks again; the service is not to blame
				}
				d.backoff.Healed(key, healErr == nil, time.Now())
				if w := d.backoff.Wait(key, time.Now()); w > 0 && (retry == 0 || w < retry) {
					retry = w
				}
			}
			if retry > 0 {
				// Look again once the pause is over, even if no event comes.
				d.pokeAfter(st.Name, retry)
			}
			if plan, health, err = d.rec.Compare(ctx, st, state.Revision, sync.ImageDryRun); err != nil {
				return errors.Join(healErr, err)
			}
			findings = drift.Classify(plan)
			if err := d.recordDrifts(ctx, st.Name, findings, drift.ClosedHealed); err != nil {
				d.noteStore("record drift of stack "+st.Name, err) // a check that changed nothing wrote nothing: only a failure says something
			}
		}
	}
	// A service in a crash loop makes the stack Degraded even in the
	// moments its container happens to run.
	now := time.Now()
	for _, f := range findings {
		if d.backoff.Struggling(backoffKey(st.Name, f.Service), now) {
			health = sync.Worse(health, sync.Degraded)
		}
	}
	wrote, err := d.rec.MarkChecked(ctx, st.Name, health, plan, len(findings) > 0, healErr)
	if err != nil {
		return errors.Join(healErr, err)
	}
	d.noteStore("record stack "+st.Name, wrote)
	if healErr != nil {
		return fmt.Errorf("heal %s: %w", st.Name, healErr)
	}
	return nil
}

// raced says whether a heal failed because someone changed the stack's
// containers under it (a name taken, a container gone): no reason to hold
// the service back.
func raced(err error) bool {
	return err != nil && (cerrdefs.IsConflict(err) || cerrdefs.IsNotFound(err))
}

func backoffKey(stackName, service string) string { return stackName + "/" + service }

func anyTrue(m map[string]bool) bool {
	for _, v := range m {
		if v {
			return true
		}
	}
	return false
}

// recordDrifts makes the stack's open drift rows (all kinds but behind)
// match findings: new ones are opened and counted, ones no longer seen are
// closed with closedBy.
func (d *Daemon) recordDrifts(ctx context.Context, name string, findings []drift.Finding, closedBy string) error {
	open, err := d.store.OpenDrifts(ctx, name)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, f := range findings {
		seen[f.Key()] = true
		if err := d.openDrift(ctx, f); err != nil {
			return err
		}
	}
	for _, o := range open {
		if o.Kind == string(drift.Behind) || seen[rowKey(o)] {
			continue
		}
		if err := d.store.CloseDrift(ctx, o.ID, closedBy, time.Now()); err != nil {
			return err
		}
		d.log.Info("drift closed", "stack", o.Stack, "service", o.Service, "container", o.Container, "kind", o.Kind, "closed_by", closedBy)
	}
	return nil
}

func (d *Daemon) openDrift(ctx context.Context, f drift.Finding) error {
	_, opened, err := d.store.OpenDrift(ctx, store.Drift{Stack: f.Stack, Service: f.Service, Container: f.Container, Kind: string(f.Kind), Detail: f.Detail, OpenedAt: time.Now()})
	if err != nil {
		return err
	}
	if opened {
		d.log.Warn("drift", "stack", f.Stack, "service", f.Service, "container", f.Container, "kind", f.Kind, "detail", f.Detail)
		if d.metrics != nil {
			d.metrics.DriftEvents.WithLabelValues(f.Stack, string(f.Kind)).Inc()
		}
		d.notifier.Send(notify.Drift, f.Stack, f.String())
	}
	return nil
}

func rowKey(o store.Drift) string {
	return drift.Finding{Stack: o.Stack, Service: o.Service, Container: o.Container, Kind: drift.Kind(o.Kind)}.Key()
}

// settleDrifts follows a deployment of a stack (a sync to another
// revision, a rollback): the drifts it replaced are closed as superseded.
func (d *Daemon) settleDrifts(ctx context.Context, st *stack.Stack) error {
	open, err := d.store.OpenDrifts(ctx, st.Name)
	if err != nil || len(open) == 0 {
		return err
	}
	state, _, err := d.store.Stack(ctx, st.Name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	view := d.views[st.Name]
	d.mu.Unlock()
	var findings []drift.Finding
	if runsItsView(state, view) {
		plan, _, err := d.rec.Compare(ctx, st, state.Revision, sync.ImageDryRun)
		if err != nil {
			return err
		}
		findings = drift.Classify(plan)
	}
	return d.recordDrifts(ctx, st.Name, findings, drift.ClosedSuperseded)
}

// closeAllDrifts closes every open drift of a stack that was removed.
func (d *Daemon) closeAllDrifts(ctx context.Context, name string) error {
	open, err := d.store.OpenDrifts(ctx, name)
	if err != nil {
		return err
	}
	for _, o := range open {
		if err := d.store.CloseDrift(ctx, o.ID, drift.ClosedSuperseded, time.Now()); err != nil {
			return err
		}
		d.backoff.Forget(backoffKey(name, o.Service))
	}
	return nil
}

// recordBehind opens or closes the behind drift of each stack: the branch
// has moved past what the stack runs, and gitopsd holds it there (pinned,
// a failed revision, an invalid or undeployable one).
func (d *Daemon) recordBehind(ctx context.Context, head, only string) error {
	states, err := d.store.Stacks(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range states {
		if only != "" && s.Name != only {
			continue
		}
		detail := d.behind(ctx, s, head)
		open, err := d.store.OpenDrifts(ctx, s.Name)
		if err != nil {
			return err
		}
		for _, o := range open {
			if o.Kind == string(drift.Behind) && detail == "" {
				errs = append(errs, d.store.CloseDrift(ctx, o.ID, drift.ClosedResolved, time.Now()))
			}
		}
		if detail != "" {
			errs = append(errs, d.openDrift(ctx, drift.Finding{Stack: s.Name, Kind: drift.Behind, Detail: detail}))
		}
	}
	return errors.Join(errs...)
}

// behind says why a stack does not run the branch head, or "" when it does
// (or when its folder is the same at head as at the revision it runs).
func (d *Daemon) behind(ctx context.Context, s store.StackState, head string) string {
	if s.Revision == "" || head == "" || s.Revision == head {
		return ""
	}
	if same, err := d.source.SameTree(ctx, s.Revision, head, path.Join("stacks", s.Name)); err == nil && same && s.Sync != string(sync.Invalid) {
		return ""
	}
	run := short(s.Revision)
	switch {
	case s.Pinned:
		return fmt.Sprintf("pinned at %s by an operator's rollback; the branch is at %s", run, short(head))
	case s.Sync == string(sync.Invalid):
		return fmt.Sprintf("the branch's revision %s is invalid; running %s: %s", short(head), run, s.Error)
	case s.FailedRevision != "" && s.FailedRevision != s.Revision:
		// Held: its gate failed, or its containers could not start.
		return fmt.Sprintf("revision %s failed and is held; running %s: %s", short(s.FailedRevision), run, s.Error)
	case s.Sync == string(sync.Failed):
		return fmt.Sprintf("revision %s failed to deploy; running %s: %s", short(s.Target), run, s.Error)
	}
	return ""
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
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
