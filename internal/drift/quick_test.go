package drift

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// fakeQuick is an engine of one project's containers and a record of what
// backup jobs hold stopped.
type fakeQuick struct {
	containers map[string]QuickContainer
	held       map[string]string
	starts     []string
	heals      int
	down       error // the engine is going down
}

func (f *fakeQuick) List(_ context.Context, project string) ([]QuickContainer, error) {
	var out []QuickContainer
	for _, c := range f.containers {
		if c.Project == project {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeQuick) Inspect(_ context.Context, id string) (QuickContainer, error) {
	return f.containers[id], nil
}

func (f *fakeQuick) Start(_ context.Context, id string) error {
	f.starts = append(f.starts, id)
	c := f.containers[id]
	c.State = "running"
	f.containers[id] = c
	return nil
}

func (f *fakeQuick) Unpause(ctx context.Context, id string) error { return f.Start(ctx, id) }

func (f *fakeQuick) Up(context.Context) error { return f.down }

func (f *fakeQuick) Held(_ context.Context, _, id string) (string, error) { return f.held[id], nil }

func (f *fakeQuick) RecordHeal(context.Context, string, string, time.Time) error {
	f.heals++
	return nil
}

func (f *fakeQuick) set(id, state string) {
	c := f.containers[id]
	c.State = state
	f.containers[id] = c
}

// TestQuickHealOnlyWhatTheSettledCheckWould: a stopped container of a
// steady stack that its last clean look saw is started at once and its
// drift closed as healed by the next look; one held by a backup job, one
// of a stack not looked at or changed since, one not stopped, one of a
// stack under way, or any while the engine is going down is not touched.
func TestQuickHealOnlyWhatTheSettledCheckWould(t *testing.T) {
	rec := &record{stacks: map[string]store.StackState{
		"web": {Name: "web", Revision: "r1", Sync: string(sync.Synced), Health: string(sync.Healthy)},
	}}
	q := &fakeQuick{containers: map[string]QuickContainer{
		"c1": {ID: "c1", Name: "web-app-1", Project: "web", Service: "app", ConfigHash: "h1", State: "running"},
	}, held: map[string]string{}}
	c := &Controller{Store: rec, Rec: &crashLoop{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Backoff: NewBackoff(), Poke: func(string) {}, Quick: q}
	st := &stack.Stack{Name: "web", Options: stack.Options{Drift: stack.DriftHeal}}
	ctx := context.Background()
	state := rec.stacks["web"]

	q.set("c1", "exited")
	if c.QuickHeal(ctx, state, "r1", "c1") || len(q.starts) != 0 {
		t.Fatal("healed a stack no clean look saw")
	}
	q.set("c1", "running")
	if err := c.Check(ctx, st, state, false); err != nil {
		t.Fatal(err)
	}
	q.set("c1", "exited")
	for _, s := range []store.StackState{
		{Name: "web", Revision: "r1", Sync: string(sync.Progressing)}, // a roll under way
		{Name: "web", Revision: "r2", Sync: string(sync.Synced)},      // another revision since
	} {
		if c.QuickHeal(ctx, s, s.Revision, "c1") {
			t.Fatalf("healed a stack that is not steady at the look's revision: %+v", s)
		}
	}
	q.held["c1"] = "stopped for a snapshot"
	if c.QuickHeal(ctx, state, "r1", "c1") {
		t.Fatal("started a container a backup job's consistency stop holds")
	}
	delete(q.held, "c1")
	// An engine going down stops every container as a stop by hand
	// would, kill then die: one started under its shutdown does not come
	// back with it.
	q.down = errors.New("connect: connection refused")
	if c.QuickHeal(ctx, state, "r1", "c1") || len(q.starts) != 0 {
		t.Fatal("started a container while the engine is going down")
	}
	q.down = nil
	if !c.QuickHeal(ctx, state, "r1", "c1") || len(q.starts) != 1 || q.heals != 1 {
		t.Fatalf("a stopped container of a steady stack: starts %v, heals recorded %d", q.starts, q.heals)
	}
	if len(rec.drifts) != 1 || rec.drifts[0].Kind != string(Stopped) || !rec.drifts[0].ClosedAt.IsZero() {
		t.Fatalf("drifts %+v; want one open stopped drift", rec.drifts)
	}
	if err := c.Check(ctx, st, state, false); err != nil {
		t.Fatal(err)
	}
	if rec.drifts[0].ClosedBy != ClosedHealed {
		t.Fatalf("the settled look closed the drift as %q, want healed", rec.drifts[0].ClosedBy)
	}
	if c.QuickHeal(ctx, state, "r1", "c1") || len(q.starts) != 1 {
		t.Fatal("started a running container")
	}
	for _, s := range []string{"removing", "restarting", "dead"} {
		q.set("c1", s)
		if c.QuickHeal(ctx, state, "r1", "c1") {
			t.Fatalf("started a container that is %s", s)
		}
	}
	q.set("c1", "exited")
	q.containers["c1"] = QuickContainer{ID: "c1", Name: "web-app-1", Project: "web", Service: "app", ConfigHash: "by-hand", State: "exited"}
	if c.QuickHeal(ctx, state, "r1", "c1") {
		t.Fatal("started a container whose config hash is not the one the look saw")
	}
	c.Forget("web") // a container of it was created, removed or renamed
	q.containers["c1"] = QuickContainer{ID: "c1", Name: "web-app-1", Project: "web", Service: "app", ConfigHash: "h1", State: "exited"}
	if c.QuickHeal(ctx, state, "r1", "c1") || len(q.starts) != 1 {
		t.Fatal("healed a stack changed since its last clean look")
	}
}

// TestTellDownIsAStopNotACrash: a die after a kill (docker stop, docker
// kill) and a stop or pause tell Down; a die alone (a crash) does not; a
// create, destroy, rename or update tells Changed.
func TestTellDownIsAStopNotACrash(t *testing.T) {
	var downs, changed []string
	h := Handlers{Down: func(p, id string) { downs = append(downs, p+"/"+id) }, Changed: func(p string) { changed = append(changed, p) }}
	killed := map[string]time.Time{}
	ev := func(id string, a events.Action) {
		tell(h, killed, "web", events.Message{Action: a, Actor: events.Actor{ID: id}})
	}

	ev("crash", events.ActionDie)
	if len(downs) != 0 {
		t.Fatalf("a crash told Down: %v", downs)
	}
	ev("stopped", events.ActionKill)
	ev("stopped", events.ActionDie)
	ev("paused", events.ActionPause)
	ev("stopped", events.ActionDie) // a second die without a new kill is a crash
	if want := []string{"web/stopped", "web/paused"}; !slices.Equal(downs, want) {
		t.Fatalf("downs %v, want %v", downs, want)
	}
	ev("x", events.ActionCreate)
	ev("x", events.ActionStart)
	if !slices.Equal(changed, []string{"web"}) {
		t.Fatalf("changed %v", changed)
	}
}
