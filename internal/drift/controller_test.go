package drift

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// record is an in-memory Store.
type record struct {
	stacks map[string]store.StackState
	drifts []store.Drift
}

func (r *record) Stack(_ context.Context, name string) (store.StackState, bool, error) {
	s, ok := r.stacks[name]
	return s, ok, nil
}

func (r *record) Stacks(context.Context) ([]store.StackState, error) {
	var out []store.StackState
	for _, s := range r.stacks {
		out = append(out, s)
	}
	return out, nil
}

func (r *record) OpenDrifts(_ context.Context, name string) ([]store.Drift, error) {
	var out []store.Drift
	for _, d := range r.drifts {
		if d.Stack == name && d.ClosedAt.IsZero() {
			out = append(out, d)
		}
	}
	return out, nil
}

func (r *record) OpenDrift(_ context.Context, d store.Drift) (int64, bool, error) {
	for _, o := range r.drifts {
		if o.ClosedAt.IsZero() && o.Stack == d.Stack && o.Service == d.Service && o.Container == d.Container && o.Kind == d.Kind {
			return o.ID, false, nil
		}
	}
	d.ID = int64(len(r.drifts) + 1)
	r.drifts = append(r.drifts, d)
	return d.ID, true, nil
}

func (r *record) CloseDrift(_ context.Context, id int64, by string, at time.Time) error {
	r.drifts[id-1].ClosedAt, r.drifts[id-1].ClosedBy = at, by
	return nil
}

// crashLoop is a Reconciler whose service app is stopped until a heal
// works; heals fail while failing is set. It keeps what the last check
// marked.
type crashLoop struct {
	stopped bool
	failing bool
	heals   int
	marked  checked
}

// checked is what a check told MarkChecked.
type checked struct {
	health  sync.Health
	drifted bool
	healErr error
}

func (c *crashLoop) MarkChecked(_ context.Context, _ string, h sync.Health, _ sync.Plan, drifted bool, healErr error) (error, error) {
	c.marked = checked{health: h, drifted: drifted, healErr: healErr}
	return nil, nil
}

func (c *crashLoop) Compare(_ context.Context, st *stack.Stack, _ string, _ sync.ImageMode) (sync.Plan, sync.Health, error) {
	if !c.stopped {
		return sync.Plan{Stack: st.Name}, sync.Healthy, nil
	}
	return sync.Plan{Stack: st.Name, Actions: []sync.Action{{Kind: sync.ActStart, Service: "app", Number: 1, Name: st.Name + "-app-1", Reasons: []string{"container exited"}}}}, sync.Degraded, nil
}

func (c *crashLoop) Heal(context.Context, *stack.Stack, string, map[string]bool) error {
	c.heals++
	if c.failing {
		return errors.New("container exited at once")
	}
	c.stopped = false
	return nil
}

// TestControllerBacksOffByItsClock drives the drift controller with fakes
// and an injected clock: a heal that fails holds the service back for the
// backoff's delay on that clock (the stack shows Degraded meanwhile and a
// poke is set for when the pause ends), the drift is recorded once, and a
// heal that works closes it as healed and the stack is marked healthy.
func TestControllerBacksOffByItsClock(t *testing.T) {
	rec := &record{stacks: map[string]store.StackState{
		"web": {Name: "web", Revision: "r1", Sync: string(sync.Synced), Health: string(sync.Healthy)},
	}}
	eng := &crashLoop{stopped: true, failing: true}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	var opened []Finding
	c := &Controller{
		Store: rec, Rec: eng, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Long delays: the retry timers Check sets never fire in the test.
		Backoff: &Backoff{Base: time.Hour, Max: 4 * time.Hour, Quiet: time.Hour},
		Now:     func() time.Time { return now },
		Poke:    func(string) {},
		Opened:  func(f Finding) { opened = append(opened, f) },
	}
	st := &stack.Stack{Name: "web", Options: stack.Options{Drift: stack.DriftHeal}}
	check := func() checked {
		t.Helper()
		if err := c.Check(context.Background(), st, rec.stacks["web"], false); err != nil && !eng.failing {
			t.Fatalf("check: %v", err)
		}
		return eng.marked
	}

	if m := check(); eng.heals != 1 || m.health != sync.Degraded || m.healErr == nil || !m.drifted {
		t.Fatalf("first look: %d heals, marked %+v; want one failed heal and a Degraded stack saying so", eng.heals, m)
	}
	c.retryMu.Lock()
	due := c.retryAt["web"]
	c.retryMu.Unlock()
	if !due.Equal(t0.Add(time.Hour)) {
		t.Fatalf("the next look is due at %s, want %s (the backoff's delay on the controller's clock)", due, t0.Add(time.Hour))
	}
	now = t0.Add(30 * time.Minute)
	if m := check(); eng.heals != 1 || m.health != sync.Degraded {
		t.Fatalf("within the pause: %d heals, marked %+v; want no heal and Degraded", eng.heals, m)
	}
	now, eng.failing = t0.Add(61*time.Minute), false
	if m := check(); eng.heals != 2 || m.health != sync.Healthy || m.healErr != nil || m.drifted {
		t.Fatalf("after the pause: %d heals, marked %+v; want a second heal that works and a healthy stack", eng.heals, m)
	}
	if len(opened) != 1 || opened[0].Kind != Stopped || len(rec.drifts) != 1 || rec.drifts[0].ClosedBy != ClosedHealed || !rec.drifts[0].ClosedAt.Equal(now) {
		t.Fatalf("drifts opened %v, recorded %+v; want one stopped drift, closed as healed at %s", opened, rec.drifts, now)
	}
}
