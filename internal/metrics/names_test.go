package metrics

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/testenv"
	"go.yaml.in/yaml/v3"
)

// designNames are the metric names gitopsd promises (docs/operations.md, "Metrics").
var designNames = []string{
	"gitopsd_stack_info", "gitopsd_sync_total", "gitopsd_sync_duration_seconds", "gitopsd_rollbacks_total",
	"gitopsd_source_last_fetch_timestamp_seconds", "gitopsd_source_fetch_errors_total",
	"gitopsd_drift", "gitopsd_drift_events_total",
	"gitopsd_backup_last_success_timestamp_seconds", "gitopsd_backup_size_bytes", "gitopsd_backup_duration_seconds",
	"gitopsd_restore_test_last_success_timestamp_seconds", "gitopsd_restore_test_failures_total",
	"gitopsd_build_info",
}

// remoteNames are the metrics of the copies to backup.remote (issue 18).
var remoteNames = []string{"gitopsd_backup_remote_last_success_timestamp_seconds", "gitopsd_backup_remote_pending", "gitopsd_backup_remote_failures_total"}

// loopNames are the metrics of the loop's own health (issue 16), beyond
// designNames.
var loopNames = []string{"gitopsd_reconcile_errors_total", "gitopsd_store_errors_total", "gitopsd_store_writable"}

// fetched is a store whose source was fetched and whose stack drifts.
type fetched struct{ fakeState }

func (fetched) SourceState(context.Context) (store.SourceState, error) {
	return store.SourceState{FetchedAt: time.Now()}, nil
}

// TestEveryDesignMetricIsExposed: after a sync, a rollback, a drift, a
// failed fetch, a snapshot and restore tests, /metrics holds every metric
// name of designNames.
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
	m.RemoteCopy("web", "data", 0, time.Now(), false)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, f := range families {
		have = append(have, f.GetName())
	}
	for _, name := range slices.Concat(designNames, loopNames, remoteNames) {
		if !slices.Contains(have, name) {
			t.Errorf("%s is not exposed (have %v)", name, have)
		}
	}
}

// TestMonitoringUsesOnlyOurMetrics: every metric the alert rules and the
// dashboard query is one gitopsd exposes, or Prometheus' own `up` (whether a
// gitopsd answers at all is no metric of its own), and promtool accepts the
// rules.
func TestMonitoringUsesOnlyOurMetrics(t *testing.T) {
	exposed := exposedNames(t)
	exprs := map[string][]string{
		alertsFile:    alertExprs(t),
		dashboardFile: dashboardExprs(t),
	}
	for file, list := range exprs {
		if len(list) == 0 {
			t.Fatalf("%s: no expressions found", file)
		}
		for _, expr := range list {
			for _, name := range promqlMetricNames(expr) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
				if name != "up" && !slices.Contains(exposed, base) {
					t.Errorf("%s: %s names %s, which gitopsd does not expose", file, expr, name)
				}
			}
		}
	}
	out, err := exec.Command(promtool(t), "check", "rules", alertsFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestAlertRulesFire runs the rules' unit tests (testdata/alerts_test.yaml)
// with promtool: the alerts on gitopsd itself (down, absent, an untrusted
// head, a rollback, a source never fetched) fire on the series that mean
// it, with the labels and text an operator gets, and not on a healthy host.
func TestAlertRulesFire(t *testing.T) {
	out, err := exec.Command(promtool(t), "test", "rules", "testdata/alerts_test.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestDashboardFiltersByStack: the dashboard has a stack variable, and
// every panel that shows per-stack series narrows them to it.
func TestDashboardFiltersByStack(t *testing.T) {
	d := readDashboard(t)
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	if !slices.Contains(vars, "stack") {
		t.Fatalf("%s: no stack variable (have %v)", dashboardFile, vars)
	}
	perStack := regexp.MustCompile(`gitopsd_(stack_info|sync_total|rollbacks_total|drift|drift_events_total|backup_last_success_timestamp_seconds|backup_size_bytes|restore_test_last_success_timestamp_seconds|restore_test_failures_total)\{([^}]*)\}`)
	n := 0
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			for _, m := range perStack.FindAllStringSubmatch(target.Expr, -1) {
				n++
				if !strings.Contains(m[2], `stack=~"$stack"`) {
					t.Errorf("panel %q: %s does not filter by $stack", p.Title, m[0])
				}
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s: no panel queries a per-stack metric", dashboardFile)
	}
}

const (
	alertsFile    = "../../packaging/monitoring/gitopsd-alerts.yaml"
	dashboardFile = "../../packaging/monitoring/gitopsd-dashboard.json"
)

func promtool(t *testing.T) string {
	t.Helper()
	return testenv.NeedTool(t, "promtool", "prometheus")
}

// exposedNames are the metric families gitopsd serves once every recorder
// ran, so a family that appears only with its first value counts too.
func exposedNames(t *testing.T) []string {
	t.Helper()
	open := []store.Drift{{Stack: "web", Service: "app", Kind: "stopped"}}
	m := New(fetched{fakeState{open: &open}})
	m.SetHost("edge-01")
	m.Sync("web", "succeeded", time.Second)
	m.Rollback("web", "health_gate")
	m.FetchFailed()
	m.HeadVerified(false)
	m.ReconcileFailed()
	m.StoreWritable(false)
	m.DriftEvents.WithLabelValues("web", "stopped").Inc()
	m.Snapshot("web", "data", true, 1234, time.Now(), time.Second)
	m.RestoreTest("web", "data", true, time.Now())
	m.RestoreTest("web", "data", false, time.Now())
	m.RemoteCopy("web", "data", 1, time.Now(), true)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	return names
}

func alertExprs(t *testing.T) []string {
	t.Helper()
	return alertExprsOf(t, alertsFile)
}

func alertExprsOf(t *testing.T, alertsFile string) []string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Expr string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

type dashboard struct {
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	return readDashboardFile(t, dashboardFile)
}

func readDashboardFile(t *testing.T, dashboardFile string) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// labelValues is Grafana's variable query label_values(METRIC{...}, LABEL).
var labelValues = regexp.MustCompile(`^label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\)$`)

func dashboardExprs(t *testing.T) []string {
	t.Helper()
	return dashboardExprsOf(readDashboard(t))
}

func dashboardExprsOf(d dashboard) []string {
	var exprs []string
	for _, v := range d.Templating.List {
		q, ok := v.Query.(string)
		if v.Type != "query" || !ok {
			continue
		}
		if m := labelValues.FindStringSubmatch(q); m != nil {
			q = m[1]
		}
		exprs = append(exprs, q)
	}
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			exprs = append(exprs, target.Expr)
		}
	}
	return exprs
}

var (
	// What names no metric in PromQL: strings, label matchers, ranges, and
	// the label lists of by/without/on/ignoring/group_left/group_right.
	promqlStrings   = regexp.MustCompile(`"(\\.|[^"\\])*"|'(\\.|[^'\\])*'`)
	promqlMatchers  = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promqlLabelList = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent     = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	promqlKeywords  = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
)

// promqlMetricNames are the metric names expr selects: identifiers that are
// neither functions, aggregations, keywords nor labels.
func promqlMetricNames(expr string) []string {
	expr = promqlStrings.ReplaceAllString(expr, `""`)
	expr = promqlMatchers.ReplaceAllString(expr, " ")
	expr = promqlLabelList.ReplaceAllString(expr, " ")
	var names []string
	for _, loc := range promqlIdent.FindAllStringIndex(expr, -1) {
		tok := expr[loc[0]:loc[1]]
		if strings.HasSuffix(tok, "(") || slices.Contains(promqlKeywords, strings.ToLower(tok)) {
			continue // a function or an aggregation
		}
		if loc[0] > 0 && (expr[loc[0]-1] >= '0' && expr[loc[0]-1] <= '9' || expr[loc[0]-1] == '.') {
			continue // a number's exponent or unit, as in 1e3
		}
		names = append(names, tok)
	}
	return names
}

func TestPromqlMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`up{job=~".*gitopsd.*"} == 0`:                                             {"up"},
		`max by (instance, stack) (gitopsd_drift{kind!="behind"}) == 1`:           {"gitopsd_drift"},
		`time() - gitopsd_backup_last_success_timestamp_seconds > 2 * 86400`:      {"gitopsd_backup_last_success_timestamp_seconds"},
		`increase(gitopsd_rollbacks_total{stack=~"$stack"}[15m]) > 0`:             {"gitopsd_rollbacks_total"},
		`a unless on (instance, job) b or c == 0`:                                 {"a", "b", "c"},
		`histogram_quantile(0.9, sum by (le) (rate(x_bucket[$__rate_interval])))`: {"x_bucket"},
		`absent(up{job=~"gitopsd"}) and on() vector(1e3)`:                         {"up"},
	} {
		if got := promqlMetricNames(expr); !slices.Equal(got, want) {
			t.Errorf("promqlMetricNames(%s) = %v, want %v", expr, got, want)
		}
	}
}
