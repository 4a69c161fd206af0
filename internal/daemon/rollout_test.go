package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/fleet"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// TestHealthySinceSurvivesARestart: since when a stack has run its
// revision healthy (the soak a later wave waits for) is kept in the store:
// a daemon started again on the same state keeps it; another revision, or
// a stack that is not healthy, starts it again or drops it.
func TestHealthySinceSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gitopsd.db")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	open := func(at time.Time) *Daemon {
		st, err := store.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return &Daemon{store: st, now: func() time.Time { return at }, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	healthy := []store.StackState{{Name: "web", Revision: "aaa", Sync: "Synced", Health: "Healthy"}}
	d := open(t0)
	got, err := d.noteHealthy(ctx, healthy)
	if err != nil || got["web"].Revision != "aaa" || !got["web"].Since.Equal(t0) {
		t.Fatalf("first look: %+v %v", got, err)
	}
	d.store.Close()

	d = open(t0.Add(time.Hour)) // a restart, an hour later
	if got, err = d.noteHealthy(ctx, healthy); err != nil || !got["web"].Since.Equal(t0) {
		t.Fatalf("after a restart: %+v %v, want since %s", got, err, t0)
	}
	healthy[0].Revision = "bbb"
	if got, err = d.noteHealthy(ctx, healthy); err != nil || got["web"].Revision != "bbb" || !got["web"].Since.Equal(t0.Add(time.Hour)) {
		t.Fatalf("another revision: %+v %v", got, err)
	}
	healthy[0].Health = "Degraded"
	if got, err = d.noteHealthy(ctx, healthy); err != nil || len(got) != 0 {
		t.Fatalf("degraded: %+v %v", got, err)
	}
	if rows, err := d.store.HealthySinces(ctx); err != nil || len(rows) != 0 {
		t.Fatalf("degraded: rows left %+v %v", rows, err)
	}
}

// TestRolloutMetricsSayWaveRollbackAndHold: the rollout metrics of a stack
// say its wave, the revision held as rolled back and the revision the
// rollout holds, with the verdict.
func TestRolloutMetricsSayWaveRollbackAndHold(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "gitopsd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := &Daemon{store: st, now: time.Now}
	for _, s := range []store.StackState{
		{Name: "web", Revision: "aaa", Target: "ccc", Sync: "OutOfSync", Health: "Healthy", FailedRevision: "bbb"},
		{Name: "db", Revision: "aaa", Sync: "Synced", Health: "Healthy"},
		{Name: "new", Sync: "Synced", Health: "Healthy"}, // no rollout read yet: left out
	} {
		if err := st.PutStack(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	r := &fleet.Rollout{Waves: []fleet.Wave{{Name: "canary", Kind: fleet.SelectNames, Names: []string{"edge-00"}}, {Name: "rest", Kind: fleet.SelectAll}}}
	d.rollouts.stacks = map[string]*stackRollout{
		"web": {rollout: r, wave: 1, held: "ccc", decision: fleet.Decision{Verdict: fleet.Wait, Reason: "waiting: ..."}},
		"db":  {},
	}
	ms, err := d.rolloutMetrics(ctx)
	if err != nil || len(ms) != 2 {
		t.Fatalf("%+v %v", ms, err)
	}
	for _, m := range ms {
		switch m.Stack {
		case "web":
			if m.Wave != "rest" || m.RolledBack != "bbb" || m.HeldRevision != "ccc" || m.HeldVerdict != "wait" || m.HealthyRevision != "" {
				t.Errorf("web: %+v", m)
			}
		case "db":
			if m.Wave != "" || m.HealthyRevision != "aaa" || m.HeldRevision != "" || m.RolledBack != "" {
				t.Errorf("db: %+v", m)
			}
		}
	}
	if got := d.rolloutHold("web"); got != "held by rollout: waiting: ..." {
		t.Errorf("status hold: %q", got)
	}
}

// TestGatedStackIsJudgedAtTheHead: a stack the rollout may hold is
// loaded from the files it runs, but its rollout, validity and targets
// are the head's: a head whose fleet.yaml does not load makes it Invalid,
// its rollout is read from the head's fleet.yaml, and one the head no
// longer targets at this host is dropped, so apply removes it.
func TestGatedStackIsJudgedAtTheHead(t *testing.T) {
	ctx := context.Background()
	write := func(dir string, files map[string]string) {
		t.Helper()
		for name, body := range files {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	app := "services:\n  app:\n    image: busybox\n"
	head := t.TempDir()
	write(head, map[string]string{
		"fleet.yaml":                 "rollout:\n  waves:\n    - {name: canary, hosts: {names: [nobody]}}\n    - {name: rest}\n  soak: 1h\n",
		"stacks/web/compose.yaml":    app,
		"stacks/gone/compose.yaml":   app + "x-gitopsd:\n  targets: {hosts: [other]}\n",
		"stacks/pinned/compose.yaml": app,
		"stacks/broken/compose.yaml": "services: [\n",
	})
	d := &Daemon{host: stack.Host{Name: "edge-00"}}
	old := []*stack.Stack{{Name: "web"}, {Name: "gone"}, {Name: "pinned"}, {Name: "broken"}} // as loaded from the files they run
	res := stack.Result{Stacks: old, Invalid: map[string]error{}}
	views := map[string]string{"web": "abc", "gone": "abc", "pinned": "abc", "broken": "abc"}
	d.loadRollouts(ctx, &res, liveView{dir: head, views: views, gated: map[string]bool{"web": true, "gone": true, "broken": true}})
	var left []string
	for _, st := range res.Stacks {
		left = append(left, st.Name)
	}
	if strings.Join(left, ",") != "web,pinned" {
		t.Errorf("stacks left: %v, want web and pinned", left)
	}
	if res.Invalid["broken"] == nil || len(res.Invalid) != 1 {
		t.Errorf("invalid: %v, want broken alone", res.Invalid)
	}
	if sr := d.rollouts.stacks["web"]; sr == nil || sr.rollout == nil || sr.waveName() != "rest" {
		t.Errorf("web's rollout: %+v, want the head's, wave rest", sr)
	}

	write(head, map[string]string{"fleet.yaml": "rollout:\n  waves:\n    - {name: a, percent: 110}\n"})
	res = stack.Result{Stacks: []*stack.Stack{{Name: "web"}}, Invalid: map[string]error{}}
	d.loadRollouts(ctx, &res, liveView{dir: head, views: map[string]string{"web": "abc"}, gated: map[string]bool{"web": true}})
	if err := res.Invalid["web"]; err == nil || !strings.Contains(err.Error(), "fleet.yaml:3") {
		t.Errorf("web under a head whose fleet.yaml does not load: %v, want Invalid", err)
	}
}

// TestFleetFileThatDoesNotLoadInvalidatesTheRevision: a fleet.yaml that
// does not load makes every stack of the revision Invalid, naming the file
// and line; a stack shown at another revision (pinned) is left alone.
func TestFleetFileThatDoesNotLoadInvalidatesTheRevision(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fleet.yaml"), []byte("rollout:\n  waves:\n    - {name: a, percent: 110}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{host: stack.Host{Name: "edge-00"}}
	res := stack.Result{Stacks: []*stack.Stack{{Name: "web"}, {Name: "pinned"}}, Invalid: map[string]error{}}
	d.loadRollouts(context.Background(), &res, liveView{dir: dir, views: map[string]string{"pinned": "abc"}})
	if err := res.Invalid["web"]; err == nil || !strings.Contains(err.Error(), "fleet.yaml:3: rollout.waves.0.percent") {
		t.Errorf("web: %v, want Invalid naming fleet.yaml:3", err)
	}
	if len(res.Stacks) != 1 || res.Stacks[0].Name != "pinned" {
		t.Errorf("stacks left: %+v", res.Stacks)
	}
}
