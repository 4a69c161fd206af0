// Package daemon wires gitopsd's parts into the running daemon: it fetches
// the source, loads the stacks of the head revision for this host, asks the
// reconciler to converge each of them, removes stacks that left, and serves
// the local API. Reconciles are serialized through one loop, so two never
// touch the same stack at once.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	gosync "sync"
	"time"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/source"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// Daemon is one running gitopsd.
type Daemon struct {
	cfg    *config.Config
	log    *slog.Logger
	store  *store.Store
	engine *engine.Engine
	source *source.Source
	rec    *sync.Reconciler
	host   stack.Host

	requests chan request

	mu       gosync.Mutex // guards checkout
	checkout string       // folder of the head revision last loaded
	head     string
}

type request struct {
	op      string // opSync (default), opRollback or opUnpin
	trigger string
	stack   string
	to      string     // opRollback: the revision, "" for the last healthy one
	done    chan error // nil: nobody waits
}

const (
	opSync     = ""
	opRollback = "rollback"
	opUnpin    = "unpin"
)

// New opens the state, the engine and the source. It does not fetch.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", cfg.StateDir, err)
	}
	st, err := store.Open(ctx, filepath.Join(cfg.StateDir, "gitopsd.db"))
	if err != nil {
		return nil, err
	}
	eng, err := engine.New(ctx)
	if err != nil {
		st.Close()
		return nil, err
	}
	src, err := source.New(source.Options{
		URL:    cfg.Source.URL,
		Branch: cfg.Source.Branch,
		Auth:   source.Auth{SSHKey: cfg.Source.Auth.SSHKey, KnownHosts: cfg.Source.Auth.KnownHosts, TokenFile: cfg.Source.Auth.TokenFile},
		Dir:    filepath.Join(cfg.StateDir, "source"),
	})
	if err != nil {
		eng.Close()
		st.Close()
		return nil, err
	}
	d := &Daemon{
		cfg: cfg, log: log, store: st, engine: eng, source: src,
		rec:      &sync.Reconciler{Engine: eng, Store: st, Log: log},
		host:     stack.Host{Name: cfg.Host.Name, Labels: cfg.Host.Labels},
		requests: make(chan request, 16),
	}
	// A deployment still "running" was cut off by a crash; the reconcile
	// that follows converges from whatever it left.
	if n, err := st.FailRunningDeployments(ctx, "interrupted: gitopsd stopped during the deployment", time.Now().UTC()); err != nil {
		d.Close()
		return nil, err
	} else if n > 0 {
		log.Warn("closed deployments interrupted by a previous stop", "count", n)
	}
	return d, nil
}

// Close releases the store and the engine.
func (d *Daemon) Close() error {
	return errors.Join(d.engine.Close(), d.store.Close())
}

// Run serves the API and reconciles on every poll and request until ctx ends.
// ready, if not nil, is called once the API listens (systemd's READY=1).
func (d *Daemon) Run(ctx context.Context, ready func()) error {
	srv, err := api.Listen(d.cfg.Socket, d, d.log)
	if err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve() }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	d.log.Info("gitopsd started", "source", source.Redact(d.cfg.Source.URL), "branch", d.cfg.Source.Branch, "host", d.host.Name, "socket", d.cfg.Socket)
	if ready != nil {
		ready()
	}

	_ = d.Reconcile(ctx, sync.TriggerPoll, "")
	timer := time.NewTimer(source.Jitter(d.cfg.Source.Interval))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			d.log.Info("gitopsd stopping; stacks keep running")
			return nil
		case err := <-serveErr:
			return err
		case <-timer.C:
			_ = d.Reconcile(ctx, sync.TriggerPoll, "")
			timer.Reset(source.Jitter(d.cfg.Source.Interval))
		case req := <-d.requests:
			var err error
			switch req.op {
			case opRollback:
				err = d.RollbackStack(ctx, req.stack, req.to)
			case opUnpin:
				err = d.UnpinStack(ctx, req.stack)
			default:
				err = d.Reconcile(ctx, req.trigger, req.stack)
			}
			if req.done != nil {
				req.done <- err
			}
		}
	}
}

// Reconcile fetches the source and converges every stack of this host (or
// only the named one). A failing stack never stops the others; the joined
// errors are returned for callers who wait.
func (d *Daemon) Reconcile(ctx context.Context, trigger, only string) error {
	head, err := d.fetch(ctx)
	if err != nil {
		return err
	}
	dir, err := d.source.Checkout(ctx, head)
	if err != nil {
		d.log.Error("checkout failed", "revision", head, "err", err)
		return err
	}
	held, pins, err := d.heldStacks(ctx, head, trigger)
	if err != nil {
		return err
	}
	live, err := linkLive(d.cfg.StateDir, dir, held)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.checkout, d.head = live, head
	d.mu.Unlock()

	res := stack.LoadAll(ctx, live, d.host)
	if res.Err != nil {
		// Not knowing which stacks the revision has is not "it has none".
		return fmt.Errorf("load revision %s: %w", head, res.Err)
	}
	var errs []error
	present := map[string]bool{}
	for _, st := range res.Stacks {
		present[st.Name] = true
		if only != "" && st.Name != only {
			continue
		}
		rev := head
		if pin, ok := pins[st.Name]; ok {
			rev = pin // converge to the pinned revision, whatever the branch says
		}
		err := d.rec.Sync(ctx, st, rev, trigger)
		if err != nil && sync.WantsRollback(err) && rev == head {
			err = errors.Join(err, d.rollback(ctx, st.Name, head, dir, held, err))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("stack %s: %w", st.Name, err))
		}
	}
	for _, name := range sortedKeys(res.Invalid) {
		present[name] = true
		if only != "" && name != only {
			continue
		}
		loadErr := res.Invalid[name]
		d.log.Error("stack invalid; running containers left as they are", "stack", name, "revision", head, "err", loadErr)
		if err := d.rec.MarkInvalid(ctx, name, head, loadErr); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, fmt.Errorf("stack %s: %w", name, loadErr))
	}
	if only == "" {
		errs = append(errs, d.removeGone(ctx, head, trigger, present))
	}
	d.prune(ctx, head)
	return errors.Join(errs...)
}

// heldStacks are the stacks that do not follow the head: pinned ones (by
// an operator's rollback) stay on their pinned revision, and ones whose
// folder has not changed since a revision of it failed its health gate stay,
// for polls, on the revision they run. It returns the checkouts of the live
// view that are not the head's, and the revision each held stack converges
// to (the pin, or the failed revision, which Sync leaves alone).
func (d *Daemon) heldStacks(ctx context.Context, head, trigger string) (map[string]string, map[string]string, error) {
	states, err := d.store.Stacks(ctx)
	if err != nil {
		return nil, nil, err
	}
	held, pins := map[string]string{}, map[string]string{}
	for _, s := range states {
		rev := ""
		switch {
		case s.Pinned && s.Target != "":
			rev = s.Target
			pins[s.Name] = rev
		case trigger == sync.TriggerRetry:
			continue // `sync --retry` retries a failed revision
		case d.failedUnchanged(ctx, s, head):
			// Sync leaves the failed revision alone, and the live view
			// stays on the revision the stack runs.
			pins[s.Name] = s.FailedRevision
			if s.Revision == "" || s.Revision == s.FailedRevision {
				continue // pause/continue kept it on the failed revision's files
			}
			rev = s.Revision
		default:
			continue
		}
		dir, err := d.source.Checkout(ctx, rev)
		if err != nil {
			return nil, nil, fmt.Errorf("check out %s for stack %s: %w", rev, s.Name, err)
		}
		held[s.Name] = dir
	}
	return held, pins, nil
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

// RollbackStack returns a stack to a revision (by default the last healthy
// one before the one it runs) through the same gated roll as a sync, and
// pins it there until UnpinStack.
func (d *Daemon) RollbackStack(ctx context.Context, name, to string) error {
	state, ok, err := d.store.Stack(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("rollback: stack %s: %w", name, api.ErrNotFound)
	}
	rev := to
	if rev == "" {
		if rev, err = d.previousHealthy(ctx, state); err != nil {
			return err
		}
	} else {
		r, err := d.source.Lookup(ctx, to)
		if err != nil {
			return fmt.Errorf("rollback %s: %w", name, err)
		}
		rev = r.SHA
	}
	state.Pinned, state.Target = true, rev
	if err := d.store.PutStack(ctx, state); err != nil {
		return fmt.Errorf("rollback %s: pin: %w", name, err)
	}
	d.log.Info("operator rollback", "stack", name, "to", rev)
	return d.Reconcile(ctx, sync.TriggerRollback, name)
}

// previousHealthy is the revision an operator's rollback goes to by
// default: the last healthy one, or, when that is the one running, the one
// the running revision was deployed over.
func (d *Daemon) previousHealthy(ctx context.Context, state store.StackState) (string, error) {
	if h := state.LastHealthyRevision; h != "" && h != state.Revision {
		return h, nil
	}
	ds, err := d.store.Deployments(ctx, state.Name, 100)
	if err != nil {
		return "", err
	}
	for _, dep := range ds {
		if dep.Outcome == sync.OutcomeSucceeded && dep.To == state.Revision && dep.From != "" && dep.From != state.Revision {
			return dep.From, nil
		}
	}
	return "", fmt.Errorf("rollback %s: no earlier healthy revision recorded; name one with --to", state.Name)
}

// UnpinStack lets a pinned stack follow the branch again, and syncs it.
func (d *Daemon) UnpinStack(ctx context.Context, name string) error {
	state, ok, err := d.store.Stack(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("unpin: stack %s: %w", name, api.ErrNotFound)
	}
	state.Pinned = false
	if err := d.store.PutStack(ctx, state); err != nil {
		return fmt.Errorf("unpin %s: %w", name, err)
	}
	return d.Reconcile(ctx, sync.TriggerManual, name)
}

// rollback returns a stack whose roll to failed did not pass its health
// gate to its last healthy revision, through the same gated roll, so
// services rolled before the failing one go back too.
// headDir and held are what the live view was made of for this reconcile.
func (d *Daemon) rollback(ctx context.Context, name, failed, headDir string, held map[string]string, cause error) error {
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
	pinned := map[string]string{name: dir}
	for k, v := range held {
		if k != name {
			pinned[k] = v
		}
	}
	live, err := linkLive(d.cfg.StateDir, headDir, pinned)
	if err != nil {
		return fmt.Errorf("rollback %s: %w", name, err)
	}
	st, err := stack.Load(ctx, live, name, d.host)
	if err != nil {
		return fmt.Errorf("rollback %s: load revision %s: %w", name, good, err)
	}
	d.log.Warn("rolling back", "stack", name, "from", failed, "to", good, "reason", cause)
	return d.rec.Rollback(ctx, st, good, failed, cause)
}

// fetch asks the source for the head; when the source cannot be reached it
// goes on with the last head fetched, so the host still heals offline.
func (d *Daemon) fetch(ctx context.Context) (string, error) {
	prev, err := d.store.SourceState(ctx)
	if err != nil {
		return "", err
	}
	state := store.SourceState{URL: source.Redact(d.cfg.Source.URL), Branch: d.cfg.Source.Branch, Head: prev.Head, FetchedAt: prev.FetchedAt}
	rev, ferr := d.source.Fetch(ctx)
	if ferr != nil {
		state.Error = ferr.Error()
		d.log.Error("fetch failed", "err", ferr)
		if err := d.store.PutSourceState(ctx, state); err != nil {
			return "", err
		}
		if prev.Head == "" {
			return "", ferr
		}
		return prev.Head, nil
	}
	state.Head, state.FetchedAt, state.Error = rev.SHA, time.Now().UTC(), ""
	if err := d.store.RecordRevision(ctx, store.Revision{SHA: rev.SHA, Message: rev.Message, Author: rev.Author, CommittedAt: rev.Time, SeenAt: time.Now().UTC()}); err != nil {
		return "", err
	}
	if rev.SHA != prev.Head {
		d.log.Info("new revision", "revision", rev.SHA, "message", rev.Message)
	}
	return rev.SHA, d.store.PutSourceState(ctx, state)
}

// removeGone takes down stacks this daemon deployed before that the head
// no longer has for this host. Only the store says what "deployed before"
// means: a stack's row is written before its first container is created, so
// nothing is missed after a crash, and stacks of another gitopsd (another
// state_dir) or of docker compose are never taken for ours.
func (d *Daemon) removeGone(ctx context.Context, head, trigger string, present map[string]bool) error {
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
			errs = append(errs, fmt.Errorf("remove stack %s: %w", s.Name, err))
		}
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
