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
	"path/filepath"
	gosync "sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	sdnotify "github.com/coreos/go-systemd/v22/daemon"

	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/drift"
	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/metrics"
	"github.com/gitopsd/gitopsd/internal/notify"
	"github.com/gitopsd/gitopsd/internal/report"
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
	// offsite copies snapshots to backup.remote (nil: none configured).
	offsite *backup.Offsite
	// schedule runs the snapshots and restore tests that came due.
	schedule *backup.Scheduler
	host     stack.Host
	// backupEvery is how often the loop looks for due snapshots and tests.
	backupEvery time.Duration
	// stacks caches loaded stacks by their folder's tree: polls that find
	// nothing new and drift checks load nothing again, and a push loads
	// only the stacks it changed.
	stacks stack.Cache
	// heads caches the head's load of the stacks the rollout gates
	// (loadRollouts), which stacks has loaded from the files they run:
	// one cache each, so neither load evicts the other at every poll.
	heads stack.Cache
	// signers are the keys a head must be signed by (nil: any head);
	// refusedHead is the last head refused for its signature or because
	// it does not descend from the applied one.
	signers     *source.Signers
	refusedHead string
	// watchLocal: a repository on this host is watched for pushes, so they
	// apply without waiting for a poll. Tests that poke the daemon
	// themselves turn it off, or the watch would race their requests.
	watchLocal bool
	// settle is how long a burst of Docker events must be quiet before
	// the drift check (0: drift.Watch's own); tests stretch it to tell the
	// quick heal from that check.
	settle time.Duration
	// notify sends the service manager a state (sd_notify); watchdog is how
	// often the loop itself pings it (0: no watchdog).
	notify   func(state string)
	watchdog time.Duration
	// notifier tells people what went wrong (nil: nobody).
	notifier *notify.Notifier
	// reporter sets commit statuses (report.go; nil: report: is not set).
	reporter *report.Reporter
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
	// now is the clock where time decides something: the heals' backoff,
	// the backup schedules, the once-a-minute log of an unwritable store,
	// the daily image prune. Unit tests replace it.
	now func() time.Time
	// drifts records, heals or reports drift, and spaces the heals of
	// services that keep drifting.
	drifts *drift.Controller

	checksMu gosync.Mutex
	checks   map[string]bool   // stacks poked for a drift check; "" is every stack
	downs    map[string]string // containers stopped by hand, for the quick heal: ID to project
	checkDue chan struct{}     // cap 1: wakes the loop for checks
	// fullChecks counts the checks of every stack run so far, quickLooks
	// the stops the quick heal looked at (for tests).
	fullChecks, quickLooks atomic.Int64
	// compared holds, per stack, what the periodic check last compared
	// (its objects' digest, view, revision and state): the same again is
	// not compared. Only the loop touches it; a reconcile clears it.
	compared map[string]string

	mu       gosync.Mutex // guards checkout, head and views
	checkout string       // the live view of the last reconcile
	head     string
	// views maps each stack to the revision whose files the live view
	// shows for it: the head, or the revision a held stack runs.
	views          map[string]string
	lastImagePrune time.Time // guarded by mu
	// settled, guarded by mu, is what the last reconcile of every stack
	// left: a poll that finds its head again does nothing (quiet.go).
	settled quietHead
	// loaded caches stacks loaded outside a reconcile (backups), by name.
	loaded map[string]loadedStack
	// hold, guarded by mu, says why no stack may be touched: the record
	// was found empty while this gitopsd's stacks run (state.go).
	hold string
	// rollouts is the fleet's rollout of each stack (rollout.go).
	rollouts rollouts
}

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
		checks:   map[string]bool{},
		downs:    map[string]string{},
		compared: map[string]string{},
		checkDue: make(chan struct{}, 1),
		syncDue:  make(chan struct{}, 1),
		views:    map[string]string{},
		loaded:   map[string]loadedStack{},
		now:      time.Now,
	}
	d.stacks.Trees, d.heads.Trees = src, src
	clock := func() time.Time { return d.now() }
	d.metrics = metrics.New(st)
	d.metrics.SetHost(cfg.Host.Name)
	d.metrics.SetRollouts(cfg.Host.Name, d.rolloutMetrics)
	// Binds into these (the mirror, the checkouts, the live view) are
	// mounted read-only: stacks are loaded from them.
	d.rec.CheckoutDirs = []string{filepath.Join(cfg.StateDir, "source"), filepath.Join(cfg.StateDir, "live")}
	d.rec.StoreFailed = func(what string, err error) { d.noteStore(what, err) }
	d.rec.Filler = filler{d}
	d.drifts = &drift.Controller{Store: st, Rec: d.rec, Log: log, Backoff: drift.NewBackoff(), Now: clock,
		Poke: d.poke, NoteStore: d.noteStore, Opened: d.openedDrift, SameTree: src.SameTree, Quick: quickEngine{d}}
	d.backupEvery, d.watchLocal = backupTick, true
	d.backups = &backup.Runner{Engine: eng, Store: st, Log: log, Dir: filepath.Join(cfg.StateDir, "snapshots"), Observe: d.observeBackup,
		Owner: fmt.Sprintf("%x", sha256.Sum256([]byte(cfg.StateDir)))[:16]}
	d.schedule = &backup.Scheduler{Store: st, Jobs: d.backups, Load: d.loadStack, Log: log, Host: d.host.Name, Since: d.now(), Now: clock}
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
	if cfg.Backup.Remote.Enabled() {
		if d.offsite, err = newOffsite(cfg, d.host.Name, st, log, redactor); err != nil {
			d.Close()
			return nil, err
		}
		d.offsite.Observe = d.observeOffsite
		d.backups.Offsite = d.offsite
	}
	if v := cfg.Source.Verify; v.Enabled() {
		if d.signers, err = source.LoadSigners(v.AllowedSigners, v.Keyring); err != nil {
			d.Close()
			return nil, fmt.Errorf("config: source.verify: %w", err)
		}
	}
	if err := d.newReporter(); err != nil {
		d.Close()
		return nil, fmt.Errorf("config: %w", err)
	}
	rules := hostPolicy(cfg.Policy)
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
