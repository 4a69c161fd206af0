package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/store"
)

// TestRolloutMetrics: the rollout metrics carry the host's own name and
// say each stack's wave, since when it runs a revision healthy, the
// revision it holds as rolled back and the one the rollout holds; absent
// until the daemon hands them over.
func TestRolloutMetrics(t *testing.T) {
	m := New(fakeState{open: &[]store.Drift{}})
	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	if s := scrape(); strings.Contains(s, "gitopsd_rollout_") {
		t.Fatalf("rollout metrics before SetRollouts:\n%s", s)
	}
	since := time.Unix(1700000000, 500_000_000)
	m.SetRollouts("edge-01", func(context.Context) ([]RolloutStack, error) {
		return []RolloutStack{
			{Stack: "web", Wave: "rest", HealthyRevision: "aaa", HealthySince: since, RolledBack: "bbb", HeldRevision: "ccc", HeldVerdict: "halted"},
			{Stack: "db"},
		}, nil
	})
	s := scrape()
	for _, want := range []string{
		`gitopsd_rollout_info{host="edge-01",stack="web",wave="rest"} 1`,
		`gitopsd_rollout_info{host="edge-01",stack="db",wave=""} 1`,
		`gitopsd_rollout_healthy_since_timestamp_seconds{host="edge-01",revision="aaa",stack="web",wave="rest"} 1.7000000005e+09`,
		`gitopsd_rollout_rolled_back_info{host="edge-01",revision="bbb",stack="web",wave="rest"} 1`,
		`gitopsd_rollout_held_info{host="edge-01",revision="ccc",stack="web",verdict="halted",wave="rest"} 1`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Count(s, "gitopsd_rollout_held_info{") != 1 || strings.Count(s, "gitopsd_rollout_healthy_since_timestamp_seconds{") != 1 {
		t.Errorf("series for the stack with nothing to say:\n%s", s)
	}
}
