package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/store"
)

// rolloutNames are the rollout's metrics (issue 21, branch wip/waves),
// which the fleet dashboard and alerts read; this package exports them
// once the waves are wired.
var rolloutNames = []string{
	"gitopsd_rollout_info", "gitopsd_rollout_healthy_since_timestamp_seconds",
	"gitopsd_rollout_rolled_back_info", "gitopsd_rollout_held_info",
}

const (
	fleetAlertsFile    = "../../packaging/monitoring/gitopsd-fleet-alerts.yaml"
	fleetDashboardFile = "../../packaging/monitoring/gitopsd-fleet-dashboard.json"
)

// TestFleetMetrics: gitopsd_host_info names the host, and
// gitopsd_stack_last_outcome_info says each stack's last deployment's
// outcome, as the record says it at the scrape.
func TestFleetMetrics(t *testing.T) {
	m := New(fakeState{open: &[]store.Drift{}})
	m.SetHost("edge-07")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`gitopsd_host_info{host="edge-07"} 1`,
		`gitopsd_stack_last_outcome_info{outcome="rolled_back",stack="web"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestFleetMonitoringUsesOnlyOurMetrics: the fleet alerts and dashboard
// query only metrics gitopsd exposes (or the rollout's, or up), every
// dashboard query parses (promtool, as a recording rule), the rules pass
// promtool, and every per-stack query narrows to $stack.
func TestFleetMonitoringUsesOnlyOurMetrics(t *testing.T) {
	known := append(exposedNames(t), rolloutNames...)
	d := readDashboardFile(t, fleetDashboardFile)
	dash := dashboardExprsOf(d)
	for file, list := range map[string][]string{fleetAlertsFile: alertExprsOf(t, fleetAlertsFile), fleetDashboardFile: dash} {
		if len(list) == 0 {
			t.Fatalf("%s: no expressions found", file)
		}
		for _, expr := range list {
			for _, name := range promqlMetricNames(expr) {
				if name != "up" && !slices.Contains(known, name) {
					t.Errorf("%s: %s names %s, which gitopsd does not expose", file, expr, name)
				}
			}
		}
	}
	if out, err := exec.Command(promtool(t), "check", "rules", fleetAlertsFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, expr := range dash {
		fmt.Fprintf(&rules, "      - record: dashboard_expr_%d\n        expr: %q\n", i, strings.ReplaceAll(expr, "$stack", ".*"))
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool(t), "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("a dashboard query does not parse: %v\n%s", err, out)
	}
	perStack := regexp.MustCompile(`(gitopsd_(stack_info|rollbacks_total|rollout_info|rollout_healthy_since_timestamp_seconds|rollout_rolled_back_info|rollout_held_info))(\{[^}]*\})?`)
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			for _, m := range perStack.FindAllStringSubmatch(target.Expr, -1) {
				if !strings.Contains(m[3], `stack=~"$stack"`) {
					t.Errorf("panel %q: %s does not filter by $stack", p.Title, m[0])
				}
			}
		}
	}
	var titles []string
	for _, p := range d.Panels {
		titles = append(titles, p.Title)
	}
	for _, want := range []string{"Hosts by revision", "Progress per wave: healthy on each revision", "Hosts that rolled back", "Hosts not reporting"} {
		if !slices.Contains(titles, want) {
			t.Errorf("%s: no panel %q (have %v)", fleetDashboardFile, want, titles)
		}
	}
}

// TestFleetAlertRulesFire runs the fleet rules' unit tests
// (testdata/fleet_alerts_test.yaml): a host absent (down, or gone from the
// scrape config), a rollout halted, a revision that has not reached the
// whole fleet in time; and none of them on the series that do not mean it.
func TestFleetAlertRulesFire(t *testing.T) {
	out, err := exec.Command(promtool(t), "test", "rules", "testdata/fleet_alerts_test.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
