package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/metrics"
	"github.com/gitopsd/gitopsd/internal/secrets"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
	"github.com/gitopsd/gitopsd/internal/webhook"
)

// The methods below make the Daemon the api.Backend: they read the store
// and the engine, and hand changes to the reconcile loop.

// Status reports every stack known to the store (or only one).
func (d *Daemon) Status(ctx context.Context, only string) (api.Status, error) {
	src, err := d.store.SourceState(ctx)
	if err != nil {
		return api.Status{}, err
	}
	st := api.Status{
		Host: d.host.Name, Hold: d.holdReason(),
		Source: api.SourceStatus{
			URL: secrets.RedactURL(d.cfg.Source.URL), Branch: d.cfg.Source.Branch,
			Head: src.Head, FetchedAt: rfc3339(src.FetchedAt), Error: src.Error,
		},
		Stacks: []api.StackStatus{},
	}
	// Memory says what the store may not have been able to record; it
	// is redacted here, as the store redacts what it writes.
	loop := d.loop.snapshot()
	if loop.fetchedOnce {
		st.Source.Error = secrets.RedactURLs(d.redactor.Redact(loop.sourceErr))
	}
	st.Source.FetchingSince = rfc3339(loop.fetchingSince)
	st.Error, st.ErrorAt = secrets.RedactURLs(d.redactor.Redact(loop.loopErr)), rfc3339(loop.loopErrAt)
	st.StoreError, st.StoreErrorSince = secrets.RedactURLs(d.redactor.Redact(loop.storeErr)), rfc3339(loop.storeErrSince)
	states, err := d.store.Stacks(ctx)
	if err != nil {
		return st, err
	}
	ahead := map[string]int{} // by revision: stacks often run the same one
	for _, s := range states {
		if only != "" && s.Name != only {
			continue
		}
		ss := api.StackStatus{
			Name: s.Name, Revision: s.Revision, Target: s.Target, Sync: s.Sync, Health: s.Health,
			Pinned: s.Pinned, Held: held(s), Hold: d.rolloutHold(s.Name), Error: s.Error,
			Services: []api.ServiceStatus{}, Drift: []api.DriftBrief{}, Backups: []api.BackupBrief{},
		}
		if src.Head != "" && s.Revision != "" && s.Revision != src.Head {
			n, ok := ahead[s.Revision]
			if !ok {
				n = d.branchAhead(ctx, s.Revision, src.Head)
				ahead[s.Revision] = n
			}
			ss.Head, ss.BranchAhead = src.Head, n
		}
		if ds, err := d.store.Deployments(ctx, s.Name, 1); err == nil && len(ds) > 0 {
			ss.LastDeployment = &api.DeploymentBrief{ID: ds[0].ID, Trigger: ds[0].Trigger, Outcome: ds[0].Outcome, Error: ds[0].Error}
		}
		cs, err := d.engine.Containers(ctx, s.Name)
		if err != nil {
			return st, err
		}
		ss.Services = services(cs)
		open, err := d.store.OpenDrifts(ctx, s.Name)
		if err != nil {
			return st, err
		}
		for _, o := range open {
			ss.Drift = append(ss.Drift, api.DriftBrief{Kind: o.Kind, Service: o.Service, Since: rfc3339(o.OpenedAt)})
		}
		if ss.Backups, err = d.backupBriefs(ctx, s.Name); err != nil {
			return st, err
		}
		st.Stacks = append(st.Stacks, ss)
	}
	if only != "" && len(st.Stacks) == 0 {
		return st, fmt.Errorf("stack %s is not deployed on this host (gitopsd history %s shows its record): %w", only, only, api.ErrNotFound)
	}
	return st, nil
}

// held says whether a stack stays where it is because the revision it was
// to run failed its health gate: polls and plain syncs leave that revision
// alone (the reconcile loop decides until when), `sync --retry` retries it.
// The store alone says so, so status never waits for Git. A pin says more.
func held(s store.StackState) bool {
	return !s.Pinned && s.FailedRevision != "" && s.Target == s.FailedRevision
}

// branchAhead counts the commits of head that rev lacks, or -1 when the
// mirror cannot tell: status answers without the count rather than fail.
func (d *Daemon) branchAhead(ctx context.Context, rev, head string) int {
	n, err := d.source.CommitsBetween(ctx, rev, head)
	if err != nil {
		d.log.Warn("status: count the commits the branch is ahead", "revision", rev, "head", head, "err", err)
		return -1
	}
	return n
}

func services(cs []engine.Container) []api.ServiceStatus {
	by := map[string]*api.ServiceStatus{}
	var names []string
	for _, c := range cs {
		s, ok := by[c.Service]
		if !ok {
			s = &api.ServiceStatus{Name: c.Service, Image: c.Image, Containers: []string{}}
			by[c.Service] = s
			names = append(names, c.Service)
		}
		s.Replicas++
		if health.Of(c) == health.Healthy {
			s.Healthy++
		}
		s.Containers = append(s.Containers, c.ID)
	}
	sort.Strings(names)
	out := make([]api.ServiceStatus, 0, len(names))
	for _, n := range names {
		out = append(out, *by[n])
	}
	return out
}

// History lists deployments, newest first.
func (d *Daemon) History(ctx context.Context, stackName string, limit int) ([]api.Deployment, error) {
	ds, err := d.store.Deployments(ctx, stackName, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.Deployment, 0, len(ds))
	for _, dep := range ds {
		out = append(out, deploymentJSON(dep))
	}
	return out, nil
}

func deploymentJSON(dep store.Deployment) api.Deployment {
	a := api.Deployment{
		ID: dep.ID, Stack: dep.Stack, Trigger: dep.Trigger, From: dep.From, To: dep.To,
		StartedAt: rfc3339(dep.StartedAt), FinishedAt: rfc3339(dep.FinishedAt),
		Outcome: dep.Outcome, Error: dep.Error, Steps: []api.Step{},
	}
	for _, s := range dep.Steps {
		a.Steps = append(a.Steps, api.Step{
			At: rfc3339(s.At), Action: s.Action, Service: s.Service, Replica: s.Replica,
			Container: s.Container, Detail: s.Detail, Error: s.Error, DurationMS: s.Duration.Milliseconds(),
		})
	}
	return a
}

// Diff plans every stack of the revision last fetched against what runs,
// changing nothing (images are not pulled).
func (d *Daemon) Diff(ctx context.Context, only string) ([]api.Diff, error) {
	d.mu.Lock()
	dir, head := d.checkout, d.head
	d.mu.Unlock()
	if dir == "" {
		return nil, fmt.Errorf("no revision loaded yet: the first fetch has not succeeded")
	}
	res := d.stacks.LoadAll(ctx, dir, d.host)
	if res.Err != nil {
		return nil, fmt.Errorf("load revision %s: %w", head, res.Err)
	}
	var out []api.Diff
	present := map[string]bool{}
	for _, st := range res.Stacks {
		present[st.Name] = true
		if only != "" && st.Name != only {
			continue
		}
		diff := api.Diff{Stack: st.Name, Revision: head, Actions: []string{}, OrphanVolumes: []string{}}
		plan, err := d.rec.Diff(ctx, st, head)
		if err != nil {
			diff.Error = err.Error()
		}
		out = append(out, fillDiff(diff, plan))
	}
	for name, err := range res.Invalid {
		present[name] = true
		if only != "" && name != only {
			continue
		}
		out = append(out, api.Diff{Stack: name, Revision: head, Actions: []string{}, OrphanVolumes: []string{}, Error: err.Error()})
	}
	states, err := d.store.Stacks(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range states {
		if present[s.Name] || (only != "" && s.Name != only) {
			continue
		}
		observed, err := d.rec.Observe(ctx, s.Name)
		if err != nil {
			return nil, err
		}
		plan, err := sync.MakePlan(sync.Desired{Stack: s.Name, Revision: head}, observed)
		diff := api.Diff{Stack: s.Name, Revision: head, Actions: []string{}, OrphanVolumes: []string{}}
		if err != nil {
			diff.Error = err.Error()
		}
		out = append(out, fillDiff(diff, plan))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stack < out[j].Stack })
	if only != "" && len(out) == 0 {
		return nil, fmt.Errorf("stack %s: %w", only, api.ErrNotFound)
	}
	return out, nil
}

func fillDiff(diff api.Diff, plan sync.Plan) api.Diff {
	for _, a := range plan.Actions {
		diff.Actions = append(diff.Actions, a.String())
	}
	diff.OrphanVolumes = append(diff.OrphanVolumes, plan.OrphanVolumes...)
	return diff
}

// Sync queues a reconcile; with retry it also retries a revision that
// failed its health gate (which polls and plain syncs leave held). With
// wait it returns its result. Stacks it leaves held come back as an
// *api.HeldError: after a wait that is a failure (the stack does not run
// what it should), before one (Queued) a note, since a new commit may
// still release them.
func (d *Daemon) Sync(ctx context.Context, stackName string, retry, wait bool) error {
	trigger := sync.TriggerManual
	if retry {
		trigger = sync.TriggerRetry
	}
	job := syncJob{trigger: trigger, stack: stackName}
	var err error
	if stackName != "" && d.knowsStack(ctx, stackName) != nil {
		// Perhaps new in a commit not fetched yet: the reconcile fetches,
		// so wait for it, then judge the name.
		err = d.queue(ctx, job, true)
		if cerr := d.knowsStack(ctx, stackName); cerr != nil {
			return cerr
		}
		wait = true
	} else {
		err = d.queue(ctx, job, wait)
	}
	if retry || (err != nil && !wait) {
		return err
	}
	left, herr := d.heldStacksOf(ctx, stackName)
	if herr != nil || len(left) == 0 {
		return err
	}
	he := &api.HeldError{Stacks: left, Queued: !wait}
	if err == nil {
		return he
	}
	return errors.Join(err, he)
}

// SyncSkipWave syncs one stack to the branch head now, whatever its
// rollout's wave says: the operator's override, which history records as
// the deployment's trigger (skip_wave).
func (d *Daemon) SyncSkipWave(ctx context.Context, stackName string, wait bool) error {
	if stackName == "" {
		return errors.New("--skip-wave needs a stack: it overrides the rollout of one stack at a time")
	}
	if err := d.knowsStack(ctx, stackName); err != nil {
		// Perhaps new in a commit not fetched yet, and held on this host
		// before its first deployment: the reconcile fetches.
		if qerr := d.queue(ctx, syncJob{trigger: sync.TriggerManual, stack: stackName}, true); qerr != nil {
			return qerr
		}
		if err := d.knowsStack(ctx, stackName); err != nil {
			return err
		}
	}
	return d.queue(ctx, syncJob{trigger: sync.TriggerSkipWave, stack: stackName}, wait)
}

// heldStacksOf lists the stacks (one, or all) held on a revision that
// failed its health gate, with the reason the record gives, then those the
// fleet's rollout holds.
func (d *Daemon) heldStacksOf(ctx context.Context, only string) ([]api.HeldStack, error) {
	states, err := d.store.Stacks(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.HeldStack
	for _, s := range states {
		if (only != "" && s.Name != only) || !held(s) {
			continue
		}
		reason := s.Error
		if reason == "" {
			if ds, err := d.store.Deployments(ctx, s.Name, 1); err == nil && len(ds) > 0 {
				reason = ds[0].Error
			}
		}
		out = append(out, api.HeldStack{Stack: s.Name, Revision: s.FailedRevision, Reason: oneLine(reason)})
	}
	for _, s := range states {
		if hold := d.rolloutHold(s.Name); hold != "" && (only == "" || s.Name == only) && !held(s) {
			out = append(out, api.HeldStack{Stack: s.Name, Revision: s.Target, Reason: oneLine(hold), ByRollout: true})
		}
	}
	return out, nil
}

// oneLine is the first line of a message, for a reason quoted in another.
func oneLine(s string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return first
}

// StackNames lists the stacks this daemon knows: those of the revision it
// last loaded that target this host (valid or not), and those in its
// record, which keeps a stack removed from the repository for history.
func (d *Daemon) StackNames(ctx context.Context) ([]string, error) {
	names, err := d.store.StackNames(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	d.mu.Lock()
	dir := d.checkout
	d.mu.Unlock()
	if dir != "" {
		res := d.stacks.LoadAll(ctx, dir, d.host)
		for _, st := range res.Stacks {
			seen[st.Name] = true
		}
		for name := range res.Invalid {
			seen[name] = true
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// knowsStack returns an *api.UnknownStackError for a name it does not know.
func (d *Daemon) knowsStack(ctx context.Context, name string) error {
	names, err := d.StackNames(ctx)
	if err != nil {
		return err
	}
	return api.CheckStack(name, names)
}

// Version is the daemon's build version (as /metrics' build_info says).
func (d *Daemon) Version() string { return metrics.Version }

// Rollback queues an operator's rollback of a stack (to "" = the last
// healthy revision) and its pin.
func (d *Daemon) Rollback(ctx context.Context, stackName, to string, withData, wait bool) error {
	return d.queue(ctx, rollbackJob{stack: stackName, to: to, withData: withData}, wait)
}

// Unpin queues the unpinning of a stack.
func (d *Daemon) Unpin(ctx context.Context, stackName string, wait bool) error {
	return d.queue(ctx, unpinJob{stack: stackName}, wait)
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// summary is the one-line status systemd shows: how many stacks are in
// which state, the head, and the drifts open.
func (d *Daemon) summary(ctx context.Context) string {
	if d.holdReason() != "" {
		return "HOLDING: the record is lost; waiting for `gitopsd state adopt` (see gitopsd status)"
	}
	states, err := d.store.Stacks(ctx)
	if err != nil {
		return "cannot read the state: " + err.Error()
	}
	by := map[string]int{}
	for _, s := range states {
		by[s.Sync]++
	}
	parts := []string{fmt.Sprintf("%d stacks", len(states))}
	for _, k := range []string{string(sync.Synced), string(sync.Progressing), string(sync.OutOfSync), string(sync.Failed), string(sync.Invalid)} {
		if by[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", by[k], strings.ToLower(k)))
		}
	}
	src, _ := d.store.SourceState(ctx)
	if src.Head != "" {
		parts = append(parts, "head "+ids.Short(src.Head))
	}
	if src.Error != "" {
		parts = append(parts, "fetch failing")
	}
	loop := d.loop.snapshot()
	if loop.loopErr != "" {
		parts = append(parts, "reconcile failing")
	}
	if loop.storeErr != "" {
		parts = append(parts, "state not writable")
	}
	if open, err := d.store.OpenDrifts(ctx, ""); err == nil && len(open) > 0 {
		parts = append(parts, fmt.Sprintf("%d drifts open", len(open)))
	}
	return strings.Join(parts, ", ")
}

// serveWebhook serves the push trigger on webhook.listen until ctx ends.
func (d *Daemon) serveWebhook(ctx context.Context) error {
	raw, err := os.ReadFile(d.cfg.Webhook.SecretFile)
	if err != nil {
		return fmt.Errorf("config: webhook.secret_file: %w", err)
	}
	secret := bytes.TrimSpace(raw)
	if len(secret) == 0 {
		return fmt.Errorf("config: webhook.secret_file: %s is empty", d.cfg.Webhook.SecretFile)
	}
	l, err := net.Listen("tcp", d.cfg.Webhook.Listen)
	if err != nil {
		return fmt.Errorf("config: webhook.listen: %w", err)
	}
	trigger := func(string) { d.wantSync(sync.TriggerWebhook) }
	srv := webhook.NewServer(webhook.Handler(secret, d.cfg.Source.Branch, trigger, d.log), webhook.DefaultLimits())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
			d.log.Error("webhook server stopped", "err", err)
		}
	}()
	d.log.Info("webhook listening", "addr", l.Addr().String())
	return nil
}

// logInvalid logs a stack's load error once per revision and error: the
// record (prev, the stack's row before this reconcile) already holding
// the same Invalid verdict means it was logged, and every poll repeating it
// would bury the log. Repeats go to debug.
func (d *Daemon) logInvalid(prev store.StackState, name, head string, loadErr error) {
	level := slog.LevelError
	if prev.Sync == string(sync.Invalid) && prev.Target == head && prev.Error == secrets.RedactURLs(d.redactor.Redact(loadErr.Error())) {
		level = slog.LevelDebug
	}
	d.log.Log(context.Background(), level, "stack invalid; running containers left as they are", "stack", name, "revision", head, "err", loadErr)
}
