package sync

import (
	"errors"
	"testing"

	"github.com/gitopsd/gitopsd/internal/store"
)

// TestStateTransitions: the transitions the daemon calls change only what
// they name in the stack's row.
func TestStateTransitions(t *testing.T) {
	w := newWorld(t)
	put := func(s store.StackState) {
		if err := w.st.PutStack(w.ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.rec.Adopt(w.ctx, "s", "v1"); err != nil {
		t.Fatal(err)
	}
	if s := w.state(); s.LastHealthyRevision != "v1" || SyncState(s.Sync) != OutOfSync || Health(s.Health) != Unknown {
		t.Fatalf("adopted: %+v", s)
	}
	put(store.StackState{Name: "s", Revision: "v2", Sync: string(Synced)})
	if err := w.rec.Adopt(w.ctx, "s", "v1"); err != nil || w.state().Revision != "v2" {
		t.Fatalf("adopting a recorded stack changed it: %v, %+v", err, w.state())
	}

	if err := w.rec.Pin(w.ctx, "s", "v0"); err != nil {
		t.Fatal(err)
	}
	if s := w.state(); !s.Pinned || s.Target != "v0" || s.Revision != "v2" {
		t.Fatalf("pinned: %+v", s)
	}
	if err := w.rec.Unpin(w.ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if s := w.state(); s.Pinned || s.Target != "v0" {
		t.Fatalf("unpinned: %+v", s)
	}

	warned := Plan{Warnings: []string{"volume made by hand"}}
	drifted := Plan{Actions: []Action{{Kind: ActStart, Service: "web"}}}
	for _, tc := range []struct {
		name    string
		before  store.StackState
		health  Health
		plan    Plan
		healErr error
		want    store.StackState
	}{
		{"a failure before any change clears", store.StackState{Sync: string(Failed), Error: "registry away", Revision: "v2"}, Healthy, Plan{},
			nil, store.StackState{Sync: string(Synced), Revision: "v2", LastHealthyRevision: "v2", Health: string(Healthy)}},
		{"a held failure stays", store.StackState{Sync: string(Failed), Error: "gate", FailedRevision: "v3", Revision: "v2"}, Healthy, Plan{},
			nil, store.StackState{Sync: string(Failed), Error: "gate", FailedRevision: "v3", Revision: "v2", Health: string(Healthy)}},
		{"a failed heal is said", store.StackState{Sync: string(Synced), Revision: "v2"}, Degraded, drifted,
			errors.New("boom"), store.StackState{Sync: string(Synced), Revision: "v2", Error: "heal failed: boom", Health: string(Degraded)}},
		{"drift keeps the error", store.StackState{Sync: string(Synced), Revision: "v2", Error: "earlier"}, Degraded, drifted,
			nil, store.StackState{Sync: string(Synced), Revision: "v2", Error: "earlier", Health: string(Degraded)}},
		{"no drift shows the warning", store.StackState{Sync: string(Synced), Revision: "v2"}, Healthy, warned,
			nil, store.StackState{Sync: string(Synced), Revision: "v2", Error: "volume made by hand", LastHealthyRevision: "v2", Health: string(Healthy)}},
	} {
		tc.before.Name, tc.want.Name = "s", "s"
		put(tc.before)
		if wrote, err := w.rec.MarkChecked(w.ctx, "s", tc.health, tc.plan, len(tc.plan.Actions) > 0, tc.healErr); err != nil || wrote != nil {
			t.Fatal(err, wrote)
		}
		got := w.state()
		got.UpdatedAt = tc.want.UpdatedAt
		if got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}
