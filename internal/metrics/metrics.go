// Package metrics owns gitopsd's Prometheus metrics (docs/operations.md, "Metrics")
// and the HTTP endpoint that serves them with /healthz. Label sets stay
// bounded: stacks, services, kinds and results, never revisions or IDs.
// The collectors and the exposition are internal/metrics/prometheus, the
// Go client's API without its weight in the binary.
package metrics

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/gitopsd/gitopsd/internal/metrics/prometheus"
	"github.com/gitopsd/gitopsd/internal/store"
)

// Metrics holds the collectors the daemon updates.
type Metrics struct {
	reg *prometheus.Registry
	// DriftEvents counts drifts opened, by stack and kind.
	DriftEvents *prometheus.CounterVec

	backupLastSuccess   *prometheus.GaugeVec
	backupSize          *prometheus.GaugeVec
	backupDuration      prometheus.Histogram
	restoreLastSuccess  *prometheus.GaugeVec
	restoreTestFailures *prometheus.CounterVec
	remoteLastSuccess   *prometheus.GaugeVec
	remotePending       *prometheus.GaugeVec
	remoteFailures      *prometheus.CounterVec

	syncs        *prometheus.CounterVec
	syncDuration prometheus.Histogram
	rollbacks    *prometheus.CounterVec
	fetchErrors  prometheus.Counter
	untrusted    prometheus.Counter
	headTrusted  prometheus.Gauge
	once         sync.Once // registers headTrusted

	reconcileErrors prometheus.Counter
	storeErrors     prometheus.Counter
	storeWritable   prometheus.Gauge

	rollouts *rolloutCollector
}

// Version is gitopsd's version for gitopsd_build_info; main sets it.
var Version = "dev"

// State reads what the daemon's record says now, for the metrics computed
// at each scrape (stack_info, the last fetch), so they cannot disagree
// with the store.
type State interface {
	OpenDrifts(ctx context.Context, stack string) ([]store.Drift, error)
	Stacks(ctx context.Context) ([]store.StackState, error)
	SourceState(ctx context.Context) (store.SourceState, error)
}

// New registers gitopsd's collectors, and the Go and process ones.
func New(state State) *Metrics {
	open := func(ctx context.Context) ([]store.Drift, error) { return state.OpenDrifts(ctx, "") }
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		DriftEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitopsd_drift_events_total",
			Help: "Drifts seen (opened), by stack and kind.",
		}, []string{"stack", "kind"}),
	}
	m.backupLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gitopsd_backup_last_success_timestamp_seconds", Help: "When the last good snapshot of the volume finished (Unix time).",
	}, []string{"stack", "volume"})
	m.backupSize = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gitopsd_backup_size_bytes", Help: "Stored size of the last good snapshot of the volume.",
	}, []string{"stack", "volume"})
	m.backupDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gitopsd_backup_duration_seconds", Help: "How long snapshots took, services kept still included.",
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 12),
	})
	m.restoreLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gitopsd_restore_test_last_success_timestamp_seconds", Help: "When the last passed restore test of the volume finished (Unix time).",
	}, []string{"stack", "volume"})
	m.restoreTestFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gitopsd_restore_test_failures_total", Help: "Restore tests that failed, by volume.",
	}, []string{"stack", "volume"})
	m.remoteLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gitopsd_backup_remote_last_success_timestamp_seconds", Help: "When the last copy of a snapshot of the volume was read back whole from backup.remote (Unix time).",
	}, []string{"stack", "volume"})
	m.remotePending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gitopsd_backup_remote_pending", Help: "Snapshots of the volume whose copy to backup.remote is not done yet (waiting or retried).",
	}, []string{"stack", "volume"})
	m.remoteFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gitopsd_backup_remote_failures_total", Help: "Failed attempts to copy a snapshot of the volume to backup.remote (each is retried).",
	}, []string{"stack", "volume"})
	m.reg.MustRegister(m.backupLastSuccess, m.backupSize, m.backupDuration, m.restoreLastSuccess, m.restoreTestFailures,
		m.remoteLastSuccess, m.remotePending, m.remoteFailures)
	m.syncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gitopsd_sync_total", Help: "Syncs of a stack, by result: succeeded (converged to a new revision), unchanged (it ran its revision: drift compared), failed, rolled_back, invalid.",
	}, []string{"stack", "result"})
	m.syncDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gitopsd_sync_duration_seconds", Help: "How long a stack's sync took, health gates included.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	})
	m.rollbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gitopsd_rollbacks_total", Help: "Rollbacks of a stack, by reason: health_gate (automatic) or operator.",
	}, []string{"stack", "reason"})
	m.fetchErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gitopsd_source_fetch_errors_total", Help: "Fetches of the Git source that failed.",
	})
	m.untrusted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gitopsd_source_untrusted_total", Help: "Fetched heads refused because their commit is unsigned, not signed by an allowed key, or does not descend from the applied head.",
	})
	m.headTrusted = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gitopsd_source_head_trusted", Help: "1 when the branch head fetched last passed signature verification, 0 when it was refused (only with source.verify).",
	})
	m.reconcileErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gitopsd_reconcile_errors_total", Help: "Reconciles that failed for every stack at once (the store, the checkout, the revision would not load); a stack's own failures count in gitopsd_sync_total.",
	})
	m.storeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gitopsd_store_errors_total", Help: "Writes to the state database that failed (a full or read-only state_dir, a damaged file); heals go on without their record.",
	})
	m.storeWritable = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gitopsd_store_writable", Help: "0 while the last write to the state database failed, else 1.",
	})
	m.storeWritable.Set(1)
	m.reg.MustRegister(m.reconcileErrors, m.storeErrors, m.storeWritable)
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gitopsd_build_info", Help: "Always 1; the labels say which gitopsd runs.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(Version, runtime.Version()).Set(1)
	m.reg.MustRegister(m.syncs, m.syncDuration, m.rollbacks, m.fetchErrors, m.untrusted, buildInfo, stateCollector{state: state})
	m.rollouts = &rolloutCollector{}
	m.reg.MustRegister(m.DriftEvents, driftGauge{open: open}, m.rollouts,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector())
	if o, ok := state.(outcomes); ok {
		m.reg.MustRegister(outcomeCollector{state: o})
	}
	return m
}

// SeeStack makes a stack's counters exist at 0 before their first event,
// so that rate() and increase() see the first one.
func (m *Metrics) SeeStack(stack string) {
	for _, r := range []string{"succeeded", "unchanged", "failed", "rolled_back", "invalid"} {
		m.syncs.WithLabelValues(stack, r)
	}
	for _, r := range []string{"health_gate", "operator"} {
		m.rollbacks.WithLabelValues(stack, r)
	}
	for _, k := range []string{"missing", "stopped", "modified", "extra", "image", "behind"} {
		m.DriftEvents.WithLabelValues(stack, k)
	}
}

// Sync records one stack's sync.
func (m *Metrics) Sync(stack, result string, took time.Duration) {
	m.syncs.WithLabelValues(stack, result).Inc()
	m.syncDuration.Observe(took.Seconds())
}

// Rollback records a rollback of a stack.
func (m *Metrics) Rollback(stack, reason string) { m.rollbacks.WithLabelValues(stack, reason).Inc() }

// FetchFailed records a failed fetch of the source.
func (m *Metrics) FetchFailed() { m.fetchErrors.Inc() }

// ReconcileFailed records a reconcile that failed for every stack.
func (m *Metrics) ReconcileFailed() { m.reconcileErrors.Inc() }

// StoreWritable records whether a write to the state database worked.
func (m *Metrics) StoreWritable(ok bool) {
	if ok {
		m.storeWritable.Set(1)
		return
	}
	m.storeErrors.Inc()
	m.storeWritable.Set(0)
}

// HeadVerified records whether the fetched head passed signature
// verification. The gauge exists only once verification is on.
func (m *Metrics) HeadVerified(trusted bool) {
	m.once.Do(func() { m.reg.MustRegister(m.headTrusted) })
	if trusted {
		m.headTrusted.Set(1)
		return
	}
	m.headTrusted.Set(0)
	m.untrusted.Inc()
}

// Snapshot records a finished snapshot.
func (m *Metrics) Snapshot(stack, volume string, ok bool, size int64, at time.Time, took time.Duration) {
	m.backupDuration.Observe(took.Seconds())
	m.restoreTestFailures.WithLabelValues(stack, volume) // exists at 0 from the first snapshot
	if ok {
		m.backupLastSuccess.WithLabelValues(stack, volume).Set(float64(at.UnixNano()) / 1e9)
		m.backupSize.WithLabelValues(stack, volume).Set(float64(size))
	}
}

// RestoreTest records a finished restore test.
func (m *Metrics) RestoreTest(stack, volume string, ok bool, at time.Time) {
	if ok {
		m.restoreLastSuccess.WithLabelValues(stack, volume).Set(float64(at.UnixNano()) / 1e9)
		return
	}
	m.restoreTestFailures.WithLabelValues(stack, volume).Inc()
}

// RemoteCopy records the copies of a volume waiting for backup.remote,
// and an upload that counted (uploaded not zero: when) or failed.
func (m *Metrics) RemoteCopy(stack, volume string, pending int, uploaded time.Time, failed bool) {
	m.remotePending.WithLabelValues(stack, volume).Set(float64(pending))
	failures := m.remoteFailures.WithLabelValues(stack, volume) // exists at 0 from the first copy
	if failed {
		failures.Inc()
	}
	if !uploaded.IsZero() {
		m.remoteLastSuccess.WithLabelValues(stack, volume).Set(float64(uploaded.UnixNano()) / 1e9)
	}
}

// Handler serves /metrics and /healthz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", prometheus.HandlerFor(m.reg))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

// Serve listens on addr and serves Handler until ctx ends.
func (m *Metrics) Serve(ctx context.Context, addr string, log *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("metrics listening", "addr", l.Addr().String())
	go func() {
		if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return nil
}

var driftDesc = prometheus.NewDesc("gitopsd_drift",
	"1 while a drift of this kind is open for the stack's service; the series is gone once it closes.",
	[]string{"stack", "service", "kind"}, nil)

// driftGauge is gitopsd_drift, read from the store at each scrape.
type driftGauge struct {
	open func(ctx context.Context) ([]store.Drift, error)
}

func (g driftGauge) Describe(ch chan<- *prometheus.Desc) { ch <- driftDesc }

func (g driftGauge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := g.open(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(driftDesc, err)
		return
	}
	seen := map[[3]string]bool{}
	for _, d := range ds {
		k := [3]string{d.Stack, d.Service, d.Kind}
		if seen[k] {
			continue
		}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(driftDesc, prometheus.GaugeValue, 1, k[0], k[1], k[2])
	}
}

var (
	stackInfoDesc = prometheus.NewDesc("gitopsd_stack_info",
		"Always 1, one series per stack: the revision it runs, its sync status and its health.",
		[]string{"stack", "revision", "sync", "health"}, nil)
	lastFetchDesc = prometheus.NewDesc("gitopsd_source_last_fetch_timestamp_seconds",
		"When the Git source was last fetched successfully (Unix time).", nil, nil)
)

// stateCollector exposes what the store says at each scrape.
type stateCollector struct{ state State }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- stackInfoDesc
	ch <- lastFetchDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stacks, err := c.state.Stacks(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(stackInfoDesc, err)
	}
	for _, s := range stacks {
		ch <- prometheus.MustNewConstMetric(stackInfoDesc, prometheus.GaugeValue, 1, s.Name, s.Revision, s.Sync, s.Health)
	}
	src, err := c.state.SourceState(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(lastFetchDesc, err)
		return
	}
	if !src.FetchedAt.IsZero() {
		ch <- prometheus.MustNewConstMetric(lastFetchDesc, prometheus.GaugeValue, float64(src.FetchedAt.UnixNano())/1e9)
	}
}
