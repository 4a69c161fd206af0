package metrics

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/store"
)

// designNames are the metric names of DESIGN.md, "Metrics".
var designNames = []string{
	"gitopsd_stack_info", "gitopsd_sync_total", "gitopsd_sync_duration_seconds", "gitopsd_rollbacks_total",
	"gitopsd_source_last_fetch_timestamp_seconds", "gitopsd_source_fetch_errors_total",
	"gitopsd_drift", "gitopsd_drift_events_total",
	"gitopsd_backup_last_success_timestamp_seconds", "gitopsd_backup_size_bytes", "gitopsd_backup_duration_seconds",
	"gitopsd_restore_test_last_success_timestamp_seconds", "gitopsd_restore_test_failures_total",
	"gitopsd_build_info",
}

// loopNames are the metrics of the loop's own health (issue 16), beyond
// DESIGN.md's.
var loopNames = []string{"gitopsd_reconcile_errors_total", "gitopsd_store_errors_total", "gitopsd_store_writable"}

// fetched is a store whose source was fetched and whose stack drifts.
type fetched struct{ fakeState }

func (fetched) SourceState(context.Context) (store.SourceState, error) {
	return store.SourceState{FetchedAt: time.Now()}, nil
}

// TestEveryDesignMetricIsExposed: after a sync, a rollback, a drift, a
// failed fetch, a snapshot and restore tests, /metrics holds every metric
// name of DESIGN.md.
func TestEveryDesignMetricIsExposed(t *testing.T) {
	open := []store.Drift{{Stack: "web", Service: "app", Kind: "stopped"}}
	m := New(fetched{fakeState{open: &open}})
	m.Sync("web", "succeeded", time.Second)
	m.Rollback("web", "health_gate")
	m.FetchFailed()
	m.DriftEvents.WithLabelValues("web", "stopped").Inc()
	m.Snapshot("web", "data", true, 1234, time.Now(), time.Second)
	m.RestoreTest("web", "data", true, time.Now())
	m.RestoreTest("web", "data", false, time.Now())
	m.ReconcileFailed()
	m.StoreWritable(false)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, f := range families {
		have = append(have, f.GetName())
	}
	for _, name := range append(designNames, loopNames...) {
		if !slices.Contains(have, name) {
			t.Errorf("%s is not exposed (have %v)", name, have)
		}
	}
}

// TestMonitoringUsesOnlyOurMetrics: the alert rules and the dashboard name
// only metrics gitopsd exposes, and promtool accepts the rules.
func TestMonitoringUsesOnlyOurMetrics(t *testing.T) {
	ref := regexp.MustCompile(`gitopsd_[a-z_]+`)
	for _, file := range []string{"../../packaging/monitoring/gitopsd-alerts.yaml", "../../packaging/monitoring/gitopsd-dashboard.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range ref.FindAllString(string(b), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if !slices.Contains(designNames, base) && !slices.Contains(loopNames, base) {
				t.Errorf("%s names %s, which gitopsd does not expose", file, name)
			}
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: install Debian's prometheus package (.ci/run does)")
	}
	out, err := exec.Command(promtool, "check", "rules", "../../packaging/monitoring/gitopsd-alerts.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}
