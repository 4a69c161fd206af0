// Package daemon wires gitopsd's parts into the running daemon: it fetches
// the source, loads the stacks of the head revision for this host, asks the
// reconciler to converge each of them, removes stacks that left, and serves
// the local API. Reconciles are serialized through one loop, so two never
// touch the same stack at once. The fetch, the one step that waits on the
// network, runs beside that loop under source.timeout: syncs wait for it,
// heals, snapshots and the API do not. Automatic triggers (polls, pushes,
// webhooks) that arrive while a sync is queued merge into it.
package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	gosync "sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	sdnotify "github.com/coreos/go-systemd/v22/daemon"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/drift"
	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/metrics"
	"github.com/gitopsd/gitopsd/internal/notify"
	"github.com/gitopsd/gitopsd/internal/policy"
	"github.com/gitopsd/gitopsd/internal/secrets"
	"github.com/gitopsd/gitopsd/internal/source"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// Daemon is one running gitopsd.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	store   *store.Store
	engine  *engine.Engine
	source  *source.Source
	rec     *sync.Reconciler
	backups *backup.Runner
	host    stack.Host
	started time.Time // when this daemon started: new backup schedules count from here
	// backupEvery is how often the loop looks for due snapshots and tests.
	backupEvery time.Duration
	// stacks caches loaded stacks by checkout: polls that find nothing new
	// and drift checks load nothing again.
	stacks stack.Cache
	// signers are the keys a head must be signed by (nil: any head);
	// refusedHead is the last head refused for its signature or because
	// it does not descend from the applied one.
	signers     *source.Signers
	refusedHead string
	// watchLocal: a repository on this host is watched for pushes, so they
	// apply without waiting for a poll. Tests that poke the daemon
	// themselves turn it off, or the watch would race their requests.
	watchLocal bool
	// notify sends the service manager a state (sd_notify); watchdog is how
	// often the loop itself pings it (0: no watchdog).
	notify   func(state string)
	watchdog time.Duration
	// notifier tells people what went wrong (nil: nobody).
	notifier *notify.Notifier
	// redactor knows the values decrypted for the stacks, and takes them
	// out of the log, the store, notifications and API errors.
	redactor *secrets.Redactor

	requests chan request
	// wanted is the trigger of an automatic sync (a poll, a push, a
	// webhook) not yet queued, "" for none; syncDue (cap 1) wakes the loop
	// for it. Triggers that come while one is wanted or queued merge into
	// it: a burst of pushes costs one fetch and one reconcile.
	wantMu  gosync.Mutex
	wanted  sync.Trigger
	syncDue chan struct{}
	// loop is what status and the metrics say of the loop itself.
	loop loopState

	metrics *metrics.Metrics
	backoff *drift.Backoff // spaces the heals of services that keep drifting

	checksMu gosync.Mutex
	checks   map[string]bool      // stacks poked for a drift check; "" is every stack
	retryAt  map[string]time.Time // when a backed-off stack's next poke is due
	checkDue chan struct{}        // cap 1: wakes the loop for checks
	// fullChecks counts the checks of every stack run so far (for tests).
	fullChecks atomic.Int64

	mu       gosync.Mutex // guards checkout, head and views
	checkout string       // the live view of the last reconcile
	head     string
	// views maps each stack to the revision whose files the live view
	// shows for it: the head, or the revision a held stack runs.
	views          map[string]string
	lastImagePrune time.Time // guarded by mu
	// loaded caches stacks loaded outside a reconcile (backups), by name.
	loaded map[string]loadedStack
	// hold, guarded by mu, says why no stack may be touched: the record
	// was found empty while this gitopsd's stacks run (state.go).
	hold string
}

type request struct {
	op       string // opSync (default), opRollback or opUnpin
	trigger  sync.Trigger
	auto     bool // a poll, push or webhook: merges with the next one
	stack    string
	to       string     // opRollback: the revision, "" for the last healthy one
	volume   string     // backup ops: the volume, "" for every one the stack backs up
	level    int        // opBackupTest: 1-3, 0 for the volume's own
	snapshot int64      // opBackupRestore: 0 for the newest good one
	withData bool       // opRollback: restore the snapshots taken before the deploy
	done     chan error // nil: nobody waits
}

const (
	opSync     = ""
	opRollback = "rollback"
	opUnpin    = "unpin"

	opBackupRun     = "backup-run"
	opBackupTest    = "backup-test"
	opBackupRestore = "backup-restore"
)

// New opens the state, the engine and the source. It does not fetch.
// Everything the daemon logs goes through log with the values it decrypts
// redacted (see secrets.Redactor).
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", cfg.StateDir, err)
	}
	redactor := secrets.NewRedactor()
	log = slog.New(redactor.Handler(log.Handler()))
	st, err := store.Open(ctx, filepath.Join(cfg.StateDir, "gitopsd.db"))
	if err != nil {
		return nil, err
	}
	st.SetRedact(func(s string) string { return secrets.RedactURLs(redactor.Redact(s)) }) // errors quote URLs
	filesKey, err := hostKey(filepath.Join(cfg.StateDir, "files.key"))
	if err != nil {
		st.Close()
		return nil, err
	}
	eng, err := engine.New(ctx, engine.WithDockerConfig(cfg.Images.DockerConfig))
	if err != nil {
		st.Close()
		return nil, err
	}
	src, err := source.New(source.Options{
		URL:     cfg.Source.URL,
		Branch:  cfg.Source.Branch,
		Auth:    source.Auth{SSHKey: cfg.Source.Auth.SSHKey, KnownHosts: cfg.Source.Auth.KnownHosts, TokenFile: cfg.Source.Auth.TokenFile},
		Dir:     filepath.Join(cfg.StateDir, "source"),
		Log:     log,
		Timeout: cfg.Source.Timeout,
	})
	if err != nil {
		eng.Close()
		st.Close()
		return nil, err
	}
	d := &Daemon{
		cfg: cfg, log: log, store: st, engine: eng, source: src,
		rec:      &sync.Reconciler{Runtime: sync.EngineRuntime{Engine: eng}, Store: st, Log: log, MaxBuildContext: cfg.Images.MaxBuildContextBytes(), FilesKey: filesKey, InstanceID: instanceID(filesKey)},
		host:     stack.Host{Name: cfg.Host.Name, Labels: cfg.Host.Labels, Redactor: redactor},
		redactor: redactor,
		requests: make(chan request, 16),
		backoff:  drift.NewBackoff(),
		checks:   map[string]bool{},
		retryAt:  map[string]time.Time{},
		checkDue: make(chan struct{}, 1),
		syncDue:  make(chan struct{}, 1),
		views:    map[string]string{},
		loaded:   map[string]loadedStack{},
	}
	d.metrics = metrics.New(st)
	// Binds into these (the mirror, the checkouts, the live view) are
	// mounted read-only: stacks are loaded from them.
	d.rec.CheckoutDirs = []string{filepath.Join(cfg.StateDir, "source"), filepath.Join(cfg.StateDir, "live")}
	d.rec.StoreFailed = func(what string, err error) { d.noteStore(what, err) }
	d.started, d.backupEvery, d.watchLocal = time.Now(), backupTick, true
	d.backups = &backup.Runner{Engine: eng, Store: st, Log: log, Dir: filepath.Join(cfg.StateDir, "snapshots"), Observe: d.observeBackup,
		Owner: fmt.Sprintf("%x", sha256.Sum256([]byte(cfg.StateDir)))[:16]}
	if f := cfg.Backup.IdentityFile; f != "" {
		data, err := os.ReadFile(f)
		if err == nil {
			d.backups.Identities, err = age.ParseIdentities(bytes.NewReader(data))
		}
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("config: backup.identity_file: %w", err)
		}
	}
	if v := cfg.Source.Verify; v.Enabled() {
		if d.signers, err = source.LoadSigners(v.AllowedSigners, v.Keyring); err != nil {
			d.Close()
			return nil, fmt.Errorf("config: source.verify: %w", err)
		}
	}
	rules := policy.FromConfig(cfg.Policy)
	d.host.Policy = &rules
	if f := cfg.Secrets.AgeKeyFile; f != "" {
		if d.host.Identities, err = secrets.LoadIdentities(f); err != nil {
			d.Close()
			return nil, fmt.Errorf("config: secrets.age_key_file: %w", err)
		}
	}
	// Putting back a volume a cut restore left can outlast systemd's start
	// timeout; ask for more time while it runs (a no-op outside systemd).
	d.backups.Alive = func() { _, _ = sdnotify.SdNotify(false, "EXTEND_TIMEOUT_USEC=60000000") }
	err = d.backups.Recover(ctx)
	d.backups.Alive = nil
	if err != nil {
		d.Close()
		return nil, err
	}
	// A deployment still "running" was cut off by a crash; the reconcile
	// that follows converges from whatever it left.
	if n, err := st.FailRunningDeployments(ctx, "interrupted: gitopsd stopped during the deployment", time.Now().UTC()); err != nil {
		d.Close()
		return nil, err
	} else if n > 0 {
		log.Warn("closed deployments interrupted by a previous stop", "count", n)
	}
	if d.hold, err = lostRecord(ctx, st, eng.Client(), cfg.StateDir); err != nil {
		d.Close()
		return nil, err
	} else if d.hold != "" {
		log.Error("RECORD LOST: holding every stack", "reason", d.hold)
	}
	return d, nil
}

// SetNotifier makes the daemon tell the service manager how it is doing:
// READY=1 once the API listens, STATUS= after each job, and WATCHDOG=1
// every watchdog (when > 0) from the reconcile loop itself, between jobs, so
// that a wedged loop stops the pings and gets restarted.
func (d *Daemon) SetNotifier(notify func(state string), watchdog time.Duration) {
	d.notify, d.watchdog = notify, watchdog
}

func (d *Daemon) tell(state string) {
	if d.notify != nil {
		d.notify(state)
	}
}

// Close releases the store and the engine.
func (d *Daemon) Close() error {
	return errors.Join(d.engine.Close(), d.store.Close())
}

// Run serves the API and the metrics, follows the engine's events, and
// reconciles on every poll and request until ctx ends. ready, if not nil, is
// called once the API listens (systemd's READY=1).
func (d *Daemon) Run(ctx context.Context, ready func()) error {
	srv, err := api.Listen(d.cfg.Socket, d, d.log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d.notifier, err = notify.New(ctx, d.cfg.Notify.Webhook, d.cfg.Notify.URLs, d.host.Name, d.log); err != nil {
		_ = srv.Shutdown(context.Background())
		return fmt.Errorf("config: %w", err)
	}
	d.notifier.SetRedact(d.redactor.Redact)
	if d.cfg.Webhook.Listen != "" {
		if err := d.serveWebhook(ctx); err != nil {
			_ = srv.Shutdown(context.Background())
			return err
		}
	}
	if d.cfg.Metrics != "" {
		if err := d.metrics.Serve(ctx, d.cfg.Metrics, d.log); err != nil {
			_ = srv.Shutdown(context.Background())
			return fmt.Errorf("metrics %s: %w", d.cfg.Metrics, err)
		}
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
	// Ready before the first sync: a host offline at boot still comes up.
	d.tell("READY=1\nSTATUS=listening; first reconcile running")

	var pings <-chan time.Time
	if d.watchdog > 0 {
		wd := time.NewTicker(d.watchdog)
		defer wd.Stop()
		pings = wd.C
		d.tell("WATCHDOG=1")
	}
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		drift.Watch(ctx, d.engine.Client(), d.log, d.poke)
	}()
	defer func() { <-watching }()
	if repo := source.LocalPath(d.cfg.Source.URL); repo != "" && d.watchLocal {
		go func() {
			pushed := func() { d.wantSync(sync.TriggerPoll) }
			if err := source.WatchLocal(ctx, repo, d.cfg.Source.Branch, d.log, pushed); err != nil {
				d.log.Warn("cannot watch the local repository; polls find its changes", "repo", repo, "err", err)
			}
		}()
	}
	timer := time.NewTimer(source.Jitter(d.cfg.Source.Interval))
	defer timer.Stop()
	fullCheck := time.NewTicker(d.cfg.Drift.CheckInterval)
	defer fullCheck.Stop()
	backups := time.NewTicker(d.backupEvery)
	defer backups.Stop()

	// Work that needs the source (syncs, rollbacks, unpins) waits for a
	// fetch, which runs beside the loop: a Git server that stalls holds
	// only the jobs that need it, never heals, snapshots or the API.
	// queued jobs wait for the next fetch, inFlight ones for the running
	// one (nil: none runs).
	var queued, inFlight []request
	fetched := make(chan fetchResult, 1)
	defer func() {
		for _, req := range append(queued, inFlight...) {
			if req.done != nil {
				req.done <- errors.New("gitopsd is stopping")
			}
		}
	}()
	// Drift checks compare stacks with the live view a reconcile makes.
	// Until the first one (its fetch may hang up to source.timeout on a
	// stalled server), they use the view of the last head fetched.
	if prev, err := d.store.SourceState(ctx); err == nil && prev.Head != "" {
		if _, err := d.showView(ctx, prev.Head, sync.TriggerPoll); err != nil {
			d.log.Warn("cannot show the last revision fetched; drift checks wait for the first reconcile", "revision", prev.Head, "err", err)
		}
	}
	queued = append(queued, request{trigger: sync.TriggerPoll, auto: true})
	for {
		if inFlight == nil && len(queued) > 0 {
			inFlight, queued = queued, nil
			d.startFetch(ctx, fetched)
		}
		select {
		case <-ctx.Done():
			d.log.Info("gitopsd stopping; stacks keep running")
			return nil
		case err := <-serveErr:
			return err
		case <-pings:
			d.tell("WATCHDOG=1")
		case <-timer.C:
			d.wantSync(sync.TriggerPoll)
			timer.Reset(source.Jitter(d.cfg.Source.Interval))
		case <-d.syncDue:
			if trigger := d.takeWanted(); trigger != "" && !slices.ContainsFunc(queued, isAuto) {
				queued = append(queued, request{trigger: trigger, auto: true})
			}
		case res := <-fetched:
			d.runJobs(ctx, inFlight, res)
			inFlight = nil
			d.tell("STATUS=" + d.summary(ctx))
		case <-fullCheck.C:
			d.poke("")
		case <-backups.C:
			d.runDueBackups(ctx)
		case <-d.checkDue:
			d.runChecks(ctx)
		case req := <-d.requests:
			var err error
			switch req.op {
			case opBackupRun:
				err = d.runBackup(ctx, req.stack, req.volume, backup.TriggerManual)
			case opBackupTest:
				err = d.testBackup(ctx, req.stack, req.volume, req.level, backup.TriggerManual)
			case opBackupRestore:
				err = d.restoreBackup(ctx, req.stack, req.volume, req.snapshot)
			default:
				queued = append(queued, req)
				continue
			}
			if err != nil {
				d.log.Error("request failed", "op", req.op, "stack", req.stack, "volume", req.volume, "err", err)
			}
			if req.done != nil {
				req.done <- d.redacted(err) // for an API client
			}
			d.tell("STATUS=" + d.summary(ctx))
		}
	}
}

func isAuto(r request) bool { return r.auto }

// wantSync asks the loop for an automatic sync. It never blocks: a sync
// already wanted, or queued and not yet fetching, covers this one too.
func (d *Daemon) wantSync(trigger sync.Trigger) {
	d.wantMu.Lock()
	if d.wanted == "" {
		d.wanted = trigger
	}
	d.wantMu.Unlock()
	select {
	case d.syncDue <- struct{}{}:
	default:
	}
}

func (d *Daemon) takeWanted() sync.Trigger {
	d.wantMu.Lock()
	defer d.wantMu.Unlock()
	t := d.wanted
	d.wanted = ""
	return t
}

// fetchResult is what one fetch of the source found.
type fetchResult struct {
	rev source.Revision
	err error
}

// startFetch fetches the source beside the loop and sends the result to
// out. The source bounds the fetch (source.timeout).
func (d *Daemon) startFetch(ctx context.Context, out chan<- fetchResult) {
	d.loop.fetchStarted(time.Now())
	go func() {
		rev, err := d.source.Fetch(ctx)
		out <- fetchResult{rev: rev, err: err}
	}()
}

// runJobs runs the jobs that waited for a fetch, against the head it found
// (or the last one, when it failed: the host still converges offline).
// A sync that someone waits for fails when the fetch did.
func (d *Daemon) runJobs(ctx context.Context, jobs []request, res fetchResult) {
	head, fetchErr, err := d.settleFetch(ctx, res.rev, res.err)
	// A full sync asked for by hand covers the automatic one.
	if slices.ContainsFunc(jobs, func(r request) bool { return r.op == opSync && !r.auto && r.stack == "" }) {
		jobs = slices.DeleteFunc(jobs, isAuto)
	}
	if herr := d.errHeld(); herr != nil {
		// The record was lost: no stack is touched until `state adopt`.
		// Status and the log say so already; each waiter hears it.
		for _, job := range jobs {
			if job.done != nil {
				job.done <- herr
			}
		}
		return
	}
	// Syncs asked for alike (50 CLI calls at once) run once and share
	// the result.
	synced := map[[2]string]error{}
	for _, job := range jobs {
		if err == nil && head == "" {
			// Nothing fetched yet, ever: the fetch's error (logged, in
			// source.error and counted) is the whole story.
			if job.done != nil {
				job.done <- d.redacted(fetchErr)
			}
			continue
		}
		jerr := err
		if jerr == nil {
			switch job.op {
			case opRollback:
				clear(synced) // a sync after it is another sync
				if jerr = d.pin(ctx, job.stack, job.to); jerr == nil {
					jerr = d.apply(ctx, head, sync.TriggerRollback, job.stack)
				}
				if jerr == nil && job.withData {
					jerr = d.restoreBeforeDeploy(ctx, job.stack)
				}
				d.checkpoint(ctx)
			case opUnpin:
				clear(synced)
				if jerr = d.unpin(ctx, job.stack); jerr == nil {
					jerr = d.apply(ctx, head, sync.TriggerManual, job.stack)
				}
				d.checkpoint(ctx)
			default:
				key := [2]string{string(job.trigger), job.stack}
				prev, done := synced[key]
				if done {
					if job.done != nil {
						job.done <- d.redacted(joinFetch(job, fetchErr, prev))
					}
					continue
				}
				jerr = d.apply(ctx, head, job.trigger, job.stack)
				synced[key] = jerr
			}
		}
		d.reportJob(job, jerr)
		if job.done != nil {
			job.done <- d.redacted(joinFetch(job, fetchErr, jerr)) // for an API client
		}
	}
}

// joinFetch is the error a sync's waiter gets: with the fetch's, since the
// head it converged to is then not the branch's.
func joinFetch(job request, fetchErr, err error) error {
	if job.op == opSync && fetchErr != nil {
		return errors.Join(fetchErr, err)
	}
	return err
}

// reportJob logs what failed of a job and, for syncs, holds the part no
// stack row holds for status and counts it.
func (d *Daemon) reportJob(job request, err error) {
	if job.op != opSync {
		if err != nil {
			d.log.Error("request failed", "op", job.op, "stack", job.stack, "err", err)
		}
		return
	}
	loopErr := loopErrors(err)
	if loopErr == nil {
		if job.stack == "" {
			d.loop.setLoopErr(nil, time.Time{})
		}
		return
	}
	d.log.Error("reconcile failed", "trigger", job.trigger, "stack", job.stack, "err", loopErr)
	d.metrics.ReconcileFailed()
	d.loop.setLoopErr(loopErr, time.Now())
}

// Reconcile fetches the source and converges every stack of this host (or
// only the named one). A failing stack never stops the others; the joined
// errors are returned for callers who wait.
func (d *Daemon) Reconcile(ctx context.Context, trigger sync.Trigger, only string) error {
	if err := d.errHeld(); err != nil {
		return err
	}
	rev, ferr := d.source.Fetch(ctx)
	head, fetchErr, err := d.settleFetch(ctx, rev, ferr)
	if err != nil {
		return err
	}
	if head == "" {
		return fetchErr
	}
	return d.apply(ctx, head, trigger, only)
}

// apply converges every stack of this host (or only the named one) to
// head, the revision last fetched.
func (d *Daemon) apply(ctx context.Context, head string, trigger sync.Trigger, only string) error {
	v, err := d.showView(ctx, head, trigger)
	if err != nil {
		return err
	}
	dir, live, held, pins, views := v.dir, v.live, v.held, v.pins, v.views
	states := make(map[string]store.StackState, len(v.rows))
	for _, s := range v.rows {
		states[s.Name] = s
	}

	res := d.stacks.LoadAll(ctx, live, d.host)
	if res.Err != nil {
		// Not knowing which stacks the revision has is not "it has none".
		return fmt.Errorf("load revision %s: %w", head, res.Err)
	}
	d.refuseLeftOut(&res, head, views)
	res.Stacks = slices.DeleteFunc(res.Stacks, func(st *stack.Stack) bool {
		if err := backup.Validate(st); err != nil {
			res.Invalid[st.Name] = err
			return true
		}
		return false
	})
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
		d.metrics.SeeStack(st.Name)
		var err error
		began, result := time.Now(), "succeeded"
		if state, ok := states[st.Name]; ok && steady(state, rev, d.viewOf(st.Name), trigger) {
			// Nothing to deploy: what differs is drift, healed or reported
			// per the stack's policy.
			err, result = d.checkDrift(ctx, st, state, true), "unchanged"
		} else {
			if trigger != sync.TriggerRollback {
				d.snapshotBeforeDeploy(ctx, st, states[st.Name], rev, trigger)
			}
			err = d.rec.Sync(ctx, st, rev, trigger)
			if err != nil && sync.WantsRollback(err) && rev == head {
				result = "rolled_back"
				err = errors.Join(err, d.rollback(ctx, st.Name, head, dir, held, err))
			}
			err = errors.Join(err, d.settleDrifts(ctx, st))
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
		if err != nil {
			errs = append(errs, &stackError{fmt.Errorf("stack %s: %w", st.Name, err)})
		}
	}
	for _, name := range sortedKeys(res.Invalid) {
		present[name] = true
		if only != "" && name != only {
			continue
		}
		loadErr := res.Invalid[name]
		d.metrics.Sync(name, "invalid", 0)
		d.logInvalid(states[name], name, head, loadErr)
		if err := d.rec.MarkInvalid(ctx, name, head, loadErr); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, &stackError{fmt.Errorf("stack %s: %w", name, loadErr)})
	}
	if only == "" {
		errs = append(errs, d.removeGone(ctx, head, trigger, present))
	}
	if err := d.recordBehind(ctx, head, only); err != nil {
		d.log.Error("record stacks behind the branch", "err", err)
	}
	d.prune(ctx, head)
	d.pruneImagesDue(ctx)
	return errors.Join(errs...)
}

// liveView is what showView made: the head's checkout (dir), the live
// view (live), the stacks' rows, and what heldStacks said of the held
// stacks (their checkouts, the revisions they converge to, the revisions
// of those checkouts).
type liveView struct {
	dir, live         string
	rows              []store.StackState
	held, pins, views map[string]string
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
	held, pins, views, err := d.heldStacks(ctx, rows, head, trigger)
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
	return liveView{dir: dir, live: live, rows: rows, held: held, pins: pins, views: views}, nil
}

// heldStacks are the stacks that do not follow the head: pinned ones (by
// an operator's rollback) stay on their pinned revision, and ones whose
// folder has not changed since a revision of it failed its health gate stay,
// for polls, on the revision they run. It returns the checkouts of the live
// view that are not the head's, the revision each held stack converges to
// (the pin, or the failed revision, which Sync leaves alone), and the
// revision of each of those checkouts. states are the stacks' rows.
func (d *Daemon) heldStacks(ctx context.Context, states []store.StackState, head string, trigger sync.Trigger) (held, pins, views map[string]string, err error) {
	held, pins, views = map[string]string{}, map[string]string{}, map[string]string{}
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
			return nil, nil, nil, fmt.Errorf("check out %s for stack %s: %w", rev, s.Name, err)
		}
		held[s.Name], views[s.Name] = dir, rev
	}
	return held, pins, views, nil
}

// viewOf is the revision whose files the live view shows for a stack.
func (d *Daemon) viewOf(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.views[name]
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
	if err := d.pin(ctx, name, to); err != nil {
		return err
	}
	return d.Reconcile(ctx, sync.TriggerRollback, name)
}

// pin records an operator's rollback of a stack: the revision it returns
// to (by default the last healthy one before the one it runs), pinned.
func (d *Daemon) pin(ctx context.Context, name, to string) error {
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
		if d.signers != nil {
			if _, err := d.source.Verify(ctx, rev, d.signers); err != nil {
				return fmt.Errorf("rollback %s to %s: %w", name, short(rev), err)
			}
		}
	}
	if err := d.rec.Pin(ctx, name, rev); err != nil {
		return fmt.Errorf("rollback %s: pin: %w", name, err)
	}
	// A pin must outlive a lost -wal file: the operator rolled back for a reason.
	d.checkpoint(ctx)
	d.log.Info("operator rollback", "stack", name, "to", rev)
	d.metrics.Rollback(name, "operator")
	d.notifier.Send(notify.RolledBack, name, "operator rollback to "+rev)
	return nil
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
		if dep.Outcome == string(sync.OutcomeSucceeded) && dep.To == state.Revision && dep.From != "" && dep.From != state.Revision {
			return dep.From, nil
		}
	}
	return "", fmt.Errorf("rollback %s: no earlier healthy revision recorded; name one with --to", state.Name)
}

// UnpinStack lets a pinned stack follow the branch again, and syncs it.
func (d *Daemon) UnpinStack(ctx context.Context, name string) error {
	if err := d.unpin(ctx, name); err != nil {
		return err
	}
	return d.Reconcile(ctx, sync.TriggerManual, name)
}

func (d *Daemon) unpin(ctx context.Context, name string) error {
	_, ok, err := d.store.Stack(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("unpin: stack %s: %w", name, api.ErrNotFound)
	}
	if err := d.rec.Unpin(ctx, name); err != nil {
		return fmt.Errorf("unpin %s: %w", name, err)
	}
	d.checkpoint(ctx) // a pin's end must outlive a lost -wal file too
	return nil
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
	st, err := d.stacks.Load(ctx, live, name, d.host)
	if err != nil {
		return fmt.Errorf("rollback %s: load revision %s: %w", name, good, err)
	}
	d.log.Warn("rolling back", "stack", name, "from", failed, "to", good, "reason", cause)
	d.metrics.Rollback(name, "health_gate")
	d.mu.Lock()
	d.views[name] = good
	d.mu.Unlock()
	return d.rec.Rollback(ctx, st, good, failed, cause)
}

// settleFetch records what a fetch found (rev, or ferr) and says which
// head to converge to: the fetched one once trusted, else the last one, so
// the host still heals offline ("" when none is known yet). fetchErr is
// why the branch's head could not be fetched (nil when it was); err stops
// the reconcile. What the store cannot hold of the source's state, memory
// holds for status.
func (d *Daemon) settleFetch(ctx context.Context, rev source.Revision, ferr error) (head string, fetchErr, err error) {
	prev, err := d.store.SourceState(ctx)
	if err != nil {
		d.loop.fetchEnded(errorText(ferr))
		return "", nil, fmt.Errorf("read the source state: %w", err)
	}
	state := store.SourceState{URL: source.Redact(d.cfg.Source.URL), Branch: d.cfg.Source.Branch, Head: prev.Head, FetchedAt: prev.FetchedAt}
	if ferr != nil {
		state.Error = ferr.Error()
		d.loop.fetchEnded(state.Error)
		d.log.Error("fetch failed", "err", ferr)
		d.metrics.FetchFailed()
		d.noteStore("record the source state", d.store.PutSourceState(ctx, state))
		return prev.Head, ferr, nil
	}
	if d.signers != nil {
		sig, verr := d.source.Verify(ctx, rev.SHA, d.signers)
		if verr == nil {
			verr = d.checkDescends(ctx, rev.SHA, prev)
		}
		// Each refused head is counted and logged once, not at every poll.
		if verr == nil || rev.SHA != d.refusedHead {
			d.metrics.HeadVerified(verr == nil)
		}
		if verr != nil {
			// The last trusted head stays the one stacks converge to; the
			// refused one is not recorded as a revision.
			state.Error = fmt.Sprintf("head %s not applied: %v", short(rev.SHA), verr)
			if errors.Is(verr, source.ErrRewritten) {
				state.Error = verr.Error() // it names the head itself
			}
			d.loop.fetchEnded(state.Error)
			if rev.SHA != d.refusedHead {
				d.log.Error("head refused", "revision", rev.SHA, "err", verr)
				d.refusedHead = rev.SHA
			}
			d.noteStore("record the source state", d.store.PutSourceState(ctx, state))
			if prev.Head == "" {
				return "", nil, errors.New(state.Error)
			}
			return prev.Head, nil, nil
		}
		d.refusedHead = ""
		if rev.SHA != prev.Head {
			d.log.Info("head verified", "revision", rev.SHA, "kind", sig.Kind, "signer", sig.Signer, "key", sig.Fingerprint)
		}
	}
	d.loop.fetchEnded("")
	state.Head, state.FetchedAt, state.Error = rev.SHA, time.Now().UTC(), ""
	if err := d.store.RecordRevision(ctx, store.Revision{SHA: rev.SHA, Message: rev.Message, Author: rev.Author, CommittedAt: rev.Time, SeenAt: time.Now().UTC()}); err != nil {
		// Deployments name their revisions: none is made without it.
		d.noteStore("record revision "+short(rev.SHA), err)
		return "", nil, fmt.Errorf("record revision %s: %w", short(rev.SHA), err)
	}
	if rev.SHA != prev.Head {
		d.log.Info("new revision", "revision", rev.SHA, "message", rev.Message)
	}
	d.noteStore("record the source state", d.store.PutSourceState(ctx, state))
	return rev.SHA, nil, nil
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
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
		errs = append(errs, d.closeAllDrifts(ctx, s.Name))
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

// hostKey reads this host's random key from path, creating it on first
// use. It keys the digests gitopsd writes on containers of what their
// secrets hold, so the key must outlive restarts (or every service with a
// secret would roll) and stay on the host.
func hostKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil && len(key) == 32 {
		return key, nil
	}
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("make %s: %w", path, err)
	}
	// Written whole or not at all: a torn key would roll every service
	// with a secret at the next start.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, key, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return key, nil
}

// instanceID names this gitopsd (its state folder) on what it builds: a
// digest of its host key, which says nothing of the key.
func instanceID(key []byte) string {
	sum := sha256.Sum256(append([]byte("gitopsd instance\x00"), key...))
	return hex.EncodeToString(sum[:8])
}

// Log is the daemon's logger, which redacts what the daemon decrypted:
// for other parts of the process that log (compose-go's warnings).
func (d *Daemon) Log() *slog.Logger { return d.log }

// redacted is err with the values the daemon decrypted taken out of its
// text; err itself when there was nothing to take out, so that errors.Is
// still sees what it wraps.
func (d *Daemon) redacted(err error) error {
	if err == nil {
		return nil
	}
	if text := d.redactor.Redact(err.Error()); text != err.Error() {
		return errors.New(text)
	}
	return err
}
