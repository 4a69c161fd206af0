package drift

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	gosync "sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// Drift is seen three ways, all serialized through the daemon's reconcile
// loop: Docker's events poke the stack they concern (Watch), every
// drift.check_interval the stacks whose objects changed are compared, and
// a reconcile compares the stacks that already run what they should
// instead of re-deploying them (a poll that finds the same head again
// compares only those whose images it pulls). Each look runs
// Controller.Check.

// Store is what the controller reads and writes of the record.
type Store interface {
	Stack(ctx context.Context, name string) (store.StackState, bool, error)
	Stacks(ctx context.Context) ([]store.StackState, error)
	OpenDrifts(ctx context.Context, stack string) ([]store.Drift, error)
	OpenDrift(ctx context.Context, d store.Drift) (int64, bool, error)
	CloseDrift(ctx context.Context, id int64, by string, at time.Time) error
}

// Reconciler compares a stack with what runs, heals it, and records the
// stack's state after a check (sync.Reconciler, which owns that state).
type Reconciler interface {
	Compare(ctx context.Context, st *stack.Stack, revision string, mode sync.ImageMode) (sync.Plan, sync.Health, error)
	Heal(ctx context.Context, st *stack.Stack, revision string, services map[string]bool) error
	MarkChecked(ctx context.Context, name string, h sync.Health, plan sync.Plan, drifted bool, healErr error) (wrote, err error)
}

// Controller decides what to do about drift: it records what drifted,
// heals it or only reports it per the stack's policy, and spaces the heals
// of services that keep drifting. Its methods run on the daemon's loop,
// one at a time; only the retry timers it sets run beside it.
type Controller struct {
	Store   Store
	Rec     Reconciler
	Log     *slog.Logger
	Backoff *Backoff
	// Now is the clock that decides backoff (time.Now when nil).
	Now func() time.Time
	// Poke asks the loop to check a stack again (a backed-off heal is due).
	Poke func(stack string)
	// NoteStore takes the outcome of a write the controller goes on
	// without: healing never waits on the record.
	NoteStore func(what string, err error)
	// Opened is told of each drift newly opened (metrics, notifications).
	Opened func(Finding)
	// SameTree says whether dir is the same at revisions a and b
	// (source.SameTree): a commit elsewhere puts no stack behind.
	SameTree func(ctx context.Context, a, b, dir string) (bool, error)

	// Quick starts a stopped container of a steady stack at its event
	// (quick.go); nil: every stop waits for the settled check.
	Quick Quick

	retryMu gosync.Mutex
	retryAt map[string]time.Time // when a backed-off stack's next poke is due

	quickMu     gosync.Mutex
	known       map[string]known // by stack: what its last clean look saw
	listed      map[string]bool  // by stack: listed for a look, and not changed since
	quickHealed map[string]bool  // keys of drifts the quick heal put back, closed as healed
	quickHeals  atomic.Int64
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Controller) noteStore(what string, err error) {
	if c.NoteStore != nil {
		c.NoteStore(what, err)
	}
}

// RunsItsView says whether a stack runs the revision whose files the live
// view shows for it (view), with nothing in flight: then whatever differs
// between those files and the engine is drift. A roll in progress or cut
// off, a roll that failure_action left half done, and a stack whose branch
// revision did not load are not compared (the next sync is theirs).
func RunsItsView(s store.StackState, view string) bool {
	return s.Revision != "" && s.Revision == view &&
		s.Sync != string(sync.Progressing) && s.Sync != string(sync.Invalid) &&
		s.FailedRevision != s.Revision
}

// Steady says whether a reconcile toward rev has nothing to deploy for the
// stack, only drift to look for: it runs rev, or rev is the revision that
// failed its gate and is held.
func Steady(s store.StackState, rev, view string, trigger sync.Trigger) bool {
	if !RunsItsView(s, view) {
		return false
	}
	return rev == s.Revision || (rev == s.FailedRevision && trigger != sync.TriggerRetry)
}

// Check compares a stack with the revision it runs, records what drifted,
// and heals it under the stack's heal policy. With pull, images are pulled
// per pull_policy first (polls do; events do not). Healing never waits on
// the record: a drift row, or the stack's row, that cannot be written (a
// full state_dir) goes to NoteStore and the heal goes on.
func (c *Controller) Check(ctx context.Context, st *stack.Stack, state store.StackState, pull bool) error {
	mode := sync.ImageDryRun
	if pull {
		mode = sync.ImageCheck
	}
	listed := c.listBefore(ctx, st, state.Revision)
	plan, health, err := c.Rec.Compare(ctx, st, state.Revision, mode)
	if err != nil {
		return err
	}
	findings, seen := Classify(plan), c.now()
	healed := false
	recordSeen := func() {
		if err := c.record(ctx, st.Name, findings, ClosedResolved, seen); err != nil {
			c.noteStore("record drift of stack "+st.Name, err) // a check that changed nothing wrote nothing: only a failure says something
		}
	}
	var healErr error
	if len(findings) > 0 && st.Options.Drift == stack.DriftHeal {
		services := c.healable(st.Name, findings)
		if anyTrue(services) {
			// The heal goes first and the drift it heals is recorded
			// after: a stopped service waits for no write.
			healErr, healed = c.Rec.Heal(ctx, st, state.Revision, services), true
			recordSeen()
			c.healed(st.Name, services, healErr)
			if plan, health, err = c.Rec.Compare(ctx, st, state.Revision, sync.ImageDryRun); err != nil {
				return errors.Join(healErr, err)
			}
			findings = Classify(plan)
			if err := c.record(ctx, st.Name, findings, ClosedHealed, c.now()); err != nil {
				c.noteStore("record drift of stack "+st.Name, err) // a check that changed nothing wrote nothing: only a failure says something
			}
		} else {
			recordSeen()
		}
	} else {
		recordSeen()
	}
	if st.Options.Drift == stack.DriftHeal {
		c.afterCheck(st.Name, listed, healed, findings, health, healErr)
	} else {
		c.Forget(st.Name)
	}
	// A service in a crash loop makes the stack Degraded even in the
	// moments its container happens to run.
	now := c.now()
	for _, f := range findings {
		if c.Backoff.Struggling(backoffKey(st.Name, f.Service), now) {
			health = sync.Worse(health, sync.Degraded)
		}
	}
	// The stack's state is sync's to write (MarkChecked); what cannot be
	// written is noted, and the check goes on.
	wrote, err := c.Rec.MarkChecked(ctx, st.Name, health, plan, len(findings) > 0, healErr)
	if err != nil {
		return errors.Join(healErr, err)
	}
	c.noteStore("record stack "+st.Name, wrote)
	if healErr != nil {
		return fmt.Errorf("heal %s: %w", st.Name, healErr)
	}
	return nil
}

// healable says, for each drifted service, whether it is healed now; one
// that backs off gets a poke for when its pause is over.
func (c *Controller) healable(stackName string, findings []Finding) map[string]bool {
	services := map[string]bool{}
	now := c.now()
	for _, f := range findings {
		if _, asked := services[f.Service]; asked {
			continue
		}
		wait := c.Backoff.Wait(backoffKey(stackName, f.Service), now)
		services[f.Service] = wait == 0
		if wait > 0 {
			c.Log.Warn("heals of this service keep failing; healing later", "stack", stackName, "service", f.Service, "in", wait.Round(time.Millisecond))
			c.retryAfter(stackName, wait)
		}
	}
	return services
}

// healed feeds the backoff with how a heal of services ended, and pokes
// the stack again once the shortest pause is over, even if no event comes.
func (c *Controller) healed(stackName string, services map[string]bool, healErr error) {
	if raced(healErr) {
		return // the next event looks again; the services are not to blame
	}
	retry := time.Duration(0)
	for svc, healed := range services {
		if !healed {
			continue
		}
		key := backoffKey(stackName, svc)
		c.Backoff.Healed(key, healErr == nil, c.now())
		if w := c.Backoff.Wait(key, c.now()); w > 0 && (retry == 0 || w < retry) {
			retry = w
		}
	}
	if retry > 0 {
		c.retryAfter(stackName, retry)
	}
}

// retryAfter pokes a stack once wait has passed, unless a poke is already
// scheduled for it by then: a service backing off gets one timer.
func (c *Controller) retryAfter(name string, wait time.Duration) {
	now := c.now()
	at := now.Add(wait)
	c.retryMu.Lock()
	defer c.retryMu.Unlock()
	if due, ok := c.retryAt[name]; ok && !due.After(at) && due.After(now) {
		return
	}
	if c.retryAt == nil {
		c.retryAt = map[string]time.Time{}
	}
	c.retryAt[name] = at
	if c.Poke != nil {
		time.AfterFunc(wait, func() { c.Poke(name) })
	}
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

// record makes the stack's open drift rows (all kinds but behind) match
// findings, seen at at: new ones are opened and counted, ones no longer
// seen are closed with closedBy.
func (c *Controller) record(ctx context.Context, name string, findings []Finding, closedBy string, at time.Time) error {
	open, err := c.Store.OpenDrifts(ctx, name)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, f := range findings {
		seen[f.Key()] = true
		if err := c.open(ctx, f, at); err != nil {
			return err
		}
	}
	for _, o := range open {
		if o.Kind == string(Behind) || seen[rowKey(o)] {
			continue
		}
		by := c.closedBy(rowKey(o), closedBy)
		if err := c.Store.CloseDrift(ctx, o.ID, by, c.now()); err != nil {
			return err
		}
		c.Log.Info("drift closed", "stack", o.Stack, "service", o.Service, "container", o.Container, "kind", o.Kind, "closed_by", by)
	}
	return nil
}

func (c *Controller) open(ctx context.Context, f Finding, at time.Time) error {
	_, opened, err := c.Store.OpenDrift(ctx, store.Drift{Stack: f.Stack, Service: f.Service, Container: f.Container, Kind: string(f.Kind), Detail: f.Detail, OpenedAt: at})
	if err != nil {
		return err
	}
	if opened {
		c.Log.Warn("drift", "stack", f.Stack, "service", f.Service, "container", f.Container, "kind", f.Kind, "detail", f.Detail)
		if c.Opened != nil {
			c.Opened(f)
		}
	}
	return nil
}

func rowKey(o store.Drift) string {
	return Finding{Stack: o.Stack, Service: o.Service, Container: o.Container, Kind: Kind(o.Kind)}.Key()
}

// Settle follows a deployment of a stack (a sync to another revision, a
// rollback): the drifts it replaced are closed as superseded. view is the
// revision whose files the live view shows for the stack.
func (c *Controller) Settle(ctx context.Context, st *stack.Stack, view string) error {
	c.Forget(st.Name) // its containers are the deployment's now
	open, err := c.Store.OpenDrifts(ctx, st.Name)
	if err != nil || len(open) == 0 {
		return err
	}
	state, _, err := c.Store.Stack(ctx, st.Name)
	if err != nil {
		return err
	}
	var findings []Finding
	if RunsItsView(state, view) {
		plan, _, err := c.Rec.Compare(ctx, st, state.Revision, sync.ImageDryRun)
		if err != nil {
			return err
		}
		findings = Classify(plan)
	}
	return c.record(ctx, st.Name, findings, ClosedSuperseded, c.now())
}

// CloseAll closes every open drift of a stack that was removed, and
// forgets its services' backoff.
func (c *Controller) CloseAll(ctx context.Context, name string) error {
	c.Forget(name)
	open, err := c.Store.OpenDrifts(ctx, name)
	if err != nil {
		return err
	}
	for _, o := range open {
		if err := c.Store.CloseDrift(ctx, o.ID, ClosedSuperseded, c.now()); err != nil {
			return err
		}
		c.Backoff.Forget(backoffKey(name, o.Service))
	}
	return nil
}

// RecordBehind opens or closes the behind drift of each stack (only the
// named one, when only is not ""): the branch has moved past what the
// stack runs, and gitopsd holds it there (pinned, a failed revision, an
// invalid or undeployable one).
func (c *Controller) RecordBehind(ctx context.Context, head, only string) error {
	states, err := c.Store.Stacks(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range states {
		if only != "" && s.Name != only {
			continue
		}
		detail := c.behind(ctx, s, head)
		open, err := c.Store.OpenDrifts(ctx, s.Name)
		if err != nil {
			return err
		}
		for _, o := range open {
			if o.Kind == string(Behind) && detail == "" {
				errs = append(errs, c.Store.CloseDrift(ctx, o.ID, ClosedResolved, c.now()))
			}
		}
		if detail != "" {
			errs = append(errs, c.open(ctx, Finding{Stack: s.Name, Kind: Behind, Detail: detail}, c.now()))
		}
	}
	return errors.Join(errs...)
}

// behind says why a stack does not run the branch head, or "" when it does
// (or when its folder is the same at head as at the revision it runs).
func (c *Controller) behind(ctx context.Context, s store.StackState, head string) string {
	if s.Revision == "" || head == "" || s.Revision == head {
		return ""
	}
	if c.SameTree != nil {
		if same, err := c.SameTree(ctx, s.Revision, head, path.Join("stacks", s.Name)); err == nil && same && s.Sync != string(sync.Invalid) {
			return ""
		}
	}
	run := ids.Short(s.Revision)
	switch {
	case s.Pinned:
		return fmt.Sprintf("pinned at %s by an operator's rollback; the branch is at %s", run, ids.Short(head))
	case s.Sync == string(sync.Invalid):
		return fmt.Sprintf("the branch's revision %s is invalid; running %s: %s", ids.Short(head), run, s.Error)
	case s.FailedRevision != "" && s.FailedRevision != s.Revision:
		// Held: its gate failed, or its containers could not start.
		return fmt.Sprintf("revision %s failed and is held; running %s: %s", ids.Short(s.FailedRevision), run, s.Error)
	case s.Sync == string(sync.Failed):
		return fmt.Sprintf("revision %s failed to deploy; running %s: %s", ids.Short(s.Target), run, s.Error)
	}
	return ""
}
