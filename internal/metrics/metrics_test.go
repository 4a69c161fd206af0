package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/store"
)

func TestDriftGaugeFollowsOpenDrifts(t *testing.T) {
	open := []store.Drift{
		{Stack: "web", Service: "app", Container: "web-app-1", Kind: "stopped"},
		{Stack: "web", Service: "app", Container: "web-app-2", Kind: "stopped"}, // same series: still 1
		{Stack: "web", Kind: "behind"},
	}
	m := New(fakeState{open: &open})
	m.DriftEvents.WithLabelValues("web", "stopped").Add(2)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	scrape := func() string {
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	body := scrape()
	for _, want := range []string{
		`gitopsd_drift{kind="stopped",service="app",stack="web"} 1`,
		`gitopsd_drift{kind="behind",service="",stack="web"} 1`,
		`gitopsd_drift_events_total{kind="stopped",stack="web"} 2`,
		`gitopsd_stack_info{health="Healthy",revision="abc",stack="web",sync="Synced"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("missing %s in:\n%s", want, body)
		}
	}
	open = open[2:]
	if body := scrape(); strings.Contains(body, `kind="stopped",service="app"`) {
		t.Errorf("a closed drift's series is still exposed:\n%s", body)
	}
	resp, err := srv.Client().Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

// fakeState is the store as the collectors read it.
type fakeState struct{ open *[]store.Drift }

func (f fakeState) OpenDrifts(context.Context, string) ([]store.Drift, error) { return *f.open, nil }
func (f fakeState) Stacks(context.Context) ([]store.StackState, error) {
	return []store.StackState{{Name: "web", Revision: "abc", Sync: "Synced", Health: "Healthy"}}, nil
}
func (f fakeState) SourceState(context.Context) (store.SourceState, error) {
	return store.SourceState{}, nil
}
func (f fakeState) LastDeployment(_ context.Context, stack string) (store.Deployment, bool, error) {
	return store.Deployment{Stack: stack, Outcome: "rolled_back"}, true, nil
}
