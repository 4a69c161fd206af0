package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/drift"
	"github.com/gitopsd/gitopsd/internal/notify"
	"github.com/gitopsd/gitopsd/internal/source"
	"github.com/gitopsd/gitopsd/internal/sync"
)

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
	d.runReporter(ctx)
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
		drift.Watch(ctx, d.engine.Client(), d.log, drift.Handlers{Poke: d.poke, Down: d.down, Changed: d.drifts.Forget, Lost: d.lostEvents, Settle: d.settle})
	}()
	defer func() { <-watching }()
	if d.offsite != nil {
		// Uploads run beside the loop: a slow or absent remote holds
		// no snapshot, sync or heal.
		uploading := make(chan struct{})
		go func() {
			defer close(uploading)
			d.offsite.Run(ctx)
		}()
		defer func() { <-uploading }()
	}
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
	queued = append(queued, request{job: syncJob{trigger: sync.TriggerPoll, auto: true}})
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
				queued = append(queued, request{job: syncJob{trigger: trigger, auto: true}})
			}
		case res := <-fetched:
			d.runJobs(ctx, inFlight, res)
			inFlight = nil
			d.tell("STATUS=" + d.summary(ctx))
		case <-fullCheck.C:
			d.poke(periodicCheck)
		case <-backups.C:
			d.schedule.RunDue(ctx)
		case <-d.checkDue:
			d.runChecks(ctx)
		case req := <-d.requests:
			now, ok := req.job.(nowJob)
			if !ok {
				queued = append(queued, req) // it waits for the next fetch
				continue
			}
			d.setQuiet(quietHead{}) // a restore may leave a stack to converge again
			err := now.run(ctx)
			if err != nil {
				d.log.Error("request failed", append(now.logArgs(), "err", err)...)
			}
			if req.done != nil {
				req.done <- d.redacted(err) // for an API client
			}
			d.tell("STATUS=" + d.summary(ctx))
		}
	}
}

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

// runJobs runs the jobs that waited for a fetch, against the head it found
// (or the last one, when it failed: the host still converges offline).
// A sync that someone waits for fails when the fetch did.
func (d *Daemon) runJobs(ctx context.Context, reqs []request, res fetchResult) {
	head, fetchErr, err := d.settleFetch(ctx, res.rev, res.err)
	// A full sync asked for by hand covers the automatic one.
	if slices.ContainsFunc(reqs, isFullManual) {
		reqs = slices.DeleteFunc(reqs, isAuto)
	}
	if herr := d.errHeld(); herr != nil {
		// The record was lost: no stack is touched until `state adopt`.
		// Status and the log say so already; each waiter hears it.
		for _, req := range reqs {
			if req.done != nil {
				req.done <- herr
			}
		}
		return
	}
	ctx = withFetch(ctx, res)
	// Syncs asked for alike (50 CLI calls at once) run once and share
	// the result.
	synced := map[syncJob]error{}
	for _, req := range reqs {
		if err == nil && head == "" {
			// Nothing fetched yet, ever: the fetch's error (logged, in
			// source.error and counted) is the whole story.
			if req.done != nil {
				req.done <- d.redacted(fetchErr)
			}
			continue
		}
		jerr := err
		if jerr == nil {
			switch job := req.job.(type) {
			case rollbackJob:
				clear(synced) // a sync after it is another sync
				if jerr = d.pin(ctx, job.stack, job.to); jerr == nil {
					jerr = d.apply(ctx, head, sync.TriggerRollback, job.stack)
				}
				if jerr == nil && job.withData {
					jerr = d.restoreBeforeDeploy(ctx, job.stack)
				}
				d.checkpoint(ctx)
			case unpinJob:
				clear(synced)
				if jerr = d.unpin(ctx, job.stack); jerr == nil {
					jerr = d.apply(ctx, head, sync.TriggerManual, job.stack)
				}
				d.checkpoint(ctx)
			case syncJob:
				key := syncJob{trigger: job.trigger, stack: job.stack}
				prev, done := synced[key]
				if done {
					if req.done != nil {
						req.done <- d.redacted(joinFetch(job, fetchErr, prev))
					}
					continue
				}
				jerr = d.apply(ctx, head, job.trigger, job.stack)
				synced[key] = jerr
			}
		}
		d.reportJob(req.job, jerr)
		if req.done != nil {
			req.done <- d.redacted(joinFetch(req.job, fetchErr, jerr)) // for an API client
		}
	}
}

// joinFetch is the error a sync's waiter gets: with the fetch's, since the
// head it converged to is then not the branch's.
func joinFetch(j job, fetchErr, err error) error {
	if _, ok := j.(syncJob); ok && fetchErr != nil {
		return errors.Join(fetchErr, err)
	}
	return err
}

// reportJob logs what failed of a job and, for syncs, holds the part no
// stack row holds for status and counts it.
func (d *Daemon) reportJob(j job, err error) {
	s, ok := j.(syncJob)
	if !ok {
		if err != nil {
			d.log.Error("request failed", append(j.logArgs(), "err", err)...)
		}
		return
	}
	loopErr := loopErrors(err)
	if loopErr == nil {
		if s.stack == "" {
			d.loop.setLoopErr(nil, time.Time{})
		}
		return
	}
	d.log.Error("reconcile failed", "trigger", s.trigger, "stack", s.stack, "err", loopErr)
	d.metrics.ReconcileFailed()
	d.loop.setLoopErr(loopErr, time.Now())
}
