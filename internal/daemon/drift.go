package daemon

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/drift"
	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/notify"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
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
	d.wakeChecks()
}

// wakeChecks wakes the loop for the checks and quick heals queued; a wake
// already due covers them.
func (d *Daemon) wakeChecks() {
	select {
	case d.checkDue <- struct{}{}:
	default:
	}
}

// down asks the loop to heal at once a container stopped by hand (the
// quick heal, drift.Controller.QuickHeal). It never blocks.
func (d *Daemon) down(project, id string) {
	d.checksMu.Lock()
	d.downs[id] = project
	d.checksMu.Unlock()
	d.wakeChecks()
}

// lostEvents drops the stops told before Docker's event stream ended: the
// engine may be going down, and what its shutdown stopped is the look's
// after the next connection, never a quick heal's.
func (d *Daemon) lostEvents() {
	d.checksMu.Lock()
	clear(d.downs)
	d.checksMu.Unlock()
}

// quickHeals runs the quick heals asked for since the last run, before
// any settled check: they load and plan nothing.
func (d *Daemon) quickHeals(ctx context.Context) {
	d.checksMu.Lock()
	downs := d.downs
	d.downs = map[string]string{}
	d.checksMu.Unlock()
	if len(downs) == 0 || d.holdReason() != "" {
		return
	}
	for id, name := range downs {
		// A stack the record cannot tell of is the settled check's,
		// which follows anyway and says what is wrong.
		if state, ok, err := d.store.Stack(ctx, name); err == nil && ok {
			d.drifts.QuickHeal(ctx, state, d.viewOf(name), id)
		}
		d.quickLooks.Add(1)
	}
}

// runChecks checks the stacks poked since the last run. A stack named by
// an event, and every stack after a full poke (the engine's events were
// missed, an image tag moved), is compared with the engine. The periodic
// check lists the engine once and compares only the stacks whose
// containers, networks or volumes changed since their last comparison.
func (d *Daemon) runChecks(ctx context.Context) {
	d.quickHeals(ctx)
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

// quickEngine is what the quick heal reaches: the engine and the record.
type quickEngine struct{ d *Daemon }

func quickContainer(id, name string, labels map[string]string, state string) drift.QuickContainer {
	return drift.QuickContainer{ID: id, Name: strings.TrimPrefix(name, "/"), Project: labels[engine.LabelProject],
		Service: labels[engine.LabelService], ConfigHash: labels[engine.LabelConfigHash], State: state}
}

func (q quickEngine) List(ctx context.Context, project string) ([]drift.QuickContainer, error) {
	list, err := q.d.engine.Client().ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", engine.LabelProject+"="+project)})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", project, err)
	}
	out := make([]drift.QuickContainer, 0, len(list.Items))
	for _, c := range list.Items {
		if c.Labels[engine.LabelOneoff] == "True" || len(c.Names) == 0 {
			continue
		}
		out = append(out, quickContainer(c.ID, c.Names[0], c.Labels, string(c.State)))
	}
	return out, nil
}

func (q quickEngine) Inspect(ctx context.Context, id string) (drift.QuickContainer, error) {
	res, err := q.d.engine.Client().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return drift.QuickContainer{}, err
	}
	in := res.Container
	var labels map[string]string
	if in.Config != nil {
		labels = in.Config.Labels
	}
	state := ""
	if in.State != nil {
		state = string(in.State.Status)
	}
	return quickContainer(in.ID, in.Name, labels, state), nil
}

func (q quickEngine) Up(ctx context.Context) error { return q.d.engine.Accepting(ctx) }

func (q quickEngine) Start(ctx context.Context, id string) error {
	return q.d.engine.StartContainer(ctx, id)
}

func (q quickEngine) Unpause(ctx context.Context, id string) error {
	return q.d.engine.UnpauseContainer(ctx, id)
}

// Held: a backup job's stop or pause that was not undone (its start
// failed) is the backup's to undo, never a heal's.
func (q quickEngine) Held(ctx context.Context, _, id string) (string, error) {
	if h := q.d.holdReason(); h != "" {
		return h, nil
	}
	stopped, err := q.d.store.StoppedServices(ctx)
	if err != nil {
		return "", err
	}
	for _, s := range stopped {
		if s.ContainerID == id {
			return "stopped for a " + s.Reason, nil
		}
	}
	return "", nil
}

func (q quickEngine) RecordHeal(ctx context.Context, name, revision string, began time.Time) error {
	id, err := q.d.store.StartDeployment(ctx, store.Deployment{Stack: name, Trigger: string(sync.TriggerHeal),
		From: revision, To: revision, StartedAt: began, Outcome: string(sync.OutcomeRunning)})
	if err != nil {
		return err
	}
	return q.d.store.FinishDeployment(ctx, id, string(sync.OutcomeSucceeded), "", q.d.now())
}
