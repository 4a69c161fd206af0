package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync/synctest"
)

// The executor's tests: real stacks loaded from compose files, a real
// store, and the in-memory engine of package synctest, whose gates the
// tests script. The daemon's tests run the same paths against Docker.

var _ Runtime = (*synctest.Runtime)(nil)

// world is one host: a fake engine with images app:1, app:2 and job:1,
// a store, and a reconciler on both.
type world struct {
	t   *testing.T
	ctx context.Context
	rt  *synctest.Runtime
	st  *store.Store
	rec *Reconciler
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rt := synctest.New()
	for _, ref := range []string{"app:1", "app:2", "app:3", "job:1"} {
		rt.AddImage(ref, "sha256:"+strings.ReplaceAll(ref, ":", "-"))
	}
	return &world{t: t, ctx: ctx, rt: rt, st: st, rec: &Reconciler{Runtime: rt, Store: st, Log: slog.New(slog.DiscardHandler)}}
}

// load loads stack s from compose as a revision's checkout would hold it.
func (w *world) load(compose string) *stack.Stack {
	w.t.Helper()
	repo := w.t.TempDir()
	dir := filepath.Join(repo, "stacks", "s")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		w.t.Fatal(err)
	}
	st, err := stack.Load(w.ctx, repo, "s", stack.Host{Name: "h"})
	if err != nil {
		w.t.Fatalf("load:\n%s\n%v", compose, err)
	}
	return st
}

// images is what runs: container name -> image reference, for every
// container of the stack.
func (w *world) images() map[string]string {
	w.t.Helper()
	cs, err := w.rt.Containers(w.ctx, "s")
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range cs {
		out[c.Name] = c.Image + " " + c.State
	}
	return out
}

func (w *world) state() store.StackState {
	w.t.Helper()
	s, _, err := w.st.Stack(w.ctx, "s")
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

func (w *world) lastDeployment() store.Deployment {
	w.t.Helper()
	ds, err := w.st.Deployments(w.ctx, "s", 1)
	if err != nil || len(ds) == 0 {
		w.t.Fatalf("deployments: %v, %v", ds, err)
	}
	return ds[0]
}

// failImage fails the gate of every container that runs ref.
func failImage(ref string) func(engine.Container, health.Gate) error {
	return func(c engine.Container, _ health.Gate) error {
		if c.Image == ref {
			return &health.Failure{Container: c.Name, Reason: "unhealthy"}
		}
		return nil
	}
}

// failReplica fails the gate of the new container of replica name that
// runs ref (under its own or its temporary name).
func failReplica(name, ref string) func(engine.Container, health.Gate) error {
	return func(c engine.Container, _ health.Gate) error {
		if c.Image == ref && (c.Name == name || strings.HasSuffix(c.Name, "_"+name)) {
			return &health.Failure{Container: c.Name, Reason: "unhealthy"}
		}
		return nil
	}
}

// web is a stack of one service web with replicas, running image, rolled
// by update (a YAML mapping, "" for defaults).
func web(image string, replicas int, update string) string {
	s := fmt.Sprintf("services:\n  web:\n    image: %s\n    deploy:\n      replicas: %d\n", image, replicas)
	if update != "" {
		s += "      update_config: " + update + "\n"
	}
	return s
}

// TestRoll drives a roll from app:1 to app:2 through every failure_action,
// order and parallelism, and checks where each leaves the containers, the
// stack's row and its deployment.
func TestRoll(t *testing.T) {
	type want struct {
		rollback    bool              // WantsRollback(err)
		keptForward bool              // errors.Is(err, ErrKeptForward)
		running     map[string]string // container -> "image state"
		sync        SyncState
		revision    string // the stack's recorded revision
		failed      string // FailedRevision
		outcome     Outcome
		maxGates    int // at most this many gates waited for at once (0: any)
	}
	all := func(image string, n int) map[string]string {
		m := map[string]string{}
		for i := 1; i <= n; i++ {
			m[fmt.Sprintf("s-web-%d", i)] = image + " running"
		}
		return m
	}
	mixed := func(n int, images map[int]string) map[string]string {
		m := all("app:1", n)
		for i, img := range images {
			m[fmt.Sprintf("s-web-%d", i)] = img + " running"
		}
		return m
	}
	tests := []struct {
		name   string
		update string
		n      int
		gate   func(engine.Container, health.Gate) error
		want   want
	}{
		{
			name: "start-first succeeds", n: 2, update: "{order: start-first}",
			want: want{running: all("app:2", 2), sync: Synced, revision: "v2", outcome: OutcomeSucceeded, maxGates: 1},
		},
		{
			name: "stop-first succeeds", n: 2, update: "{order: stop-first}",
			want: want{running: all("app:2", 2), sync: Synced, revision: "v2", outcome: OutcomeSucceeded, maxGates: 1},
		},
		{
			name: "parallelism 2 rolls two at a time", n: 4, update: "{parallelism: 2}",
			want: want{running: all("app:2", 4), sync: Synced, revision: "v2", outcome: OutcomeSucceeded, maxGates: 2},
		},
		{
			name: "parallelism 0 rolls all at once", n: 3, update: "{parallelism: 0}",
			want: want{running: all("app:2", 3), sync: Synced, revision: "v2", outcome: OutcomeSucceeded, maxGates: 3},
		},
		{
			name: "rollback (default) stops at the first failed batch, start-first", n: 3, gate: failImage("app:2"),
			want: want{rollback: true, running: all("app:1", 3), sync: Failed, revision: "v1", failed: "v2", outcome: OutcomeRolledBack},
		},
		{
			name: "rollback, stop-first: the old container is put back", n: 2, update: "{order: stop-first}", gate: failImage("app:2"),
			want: want{rollback: true, running: all("app:1", 2), sync: Failed, revision: "v1", failed: "v2", outcome: OutcomeRolledBack},
		},
		{
			name: "pause midway through a batch", n: 4, update: "{parallelism: 2, failure_action: pause}", gate: failReplica("s-web-2", "app:2"),
			want: want{keptForward: true, running: mixed(4, map[int]string{1: "app:2"}), sync: Failed, revision: "v2", failed: "v2", outcome: OutcomeFailed, maxGates: 2},
		},
		{
			name: "pause midway through a batch, stop-first", n: 4, update: "{parallelism: 2, failure_action: pause, order: stop-first}", gate: failReplica("s-web-2", "app:2"),
			want: want{keptForward: true, running: mixed(4, map[int]string{1: "app:2"}), sync: Failed, revision: "v2", failed: "v2", outcome: OutcomeFailed, maxGates: 2},
		},
		{
			name: "continue rolls the rest", n: 4, update: "{failure_action: continue}", gate: failReplica("s-web-2", "app:2"),
			want: want{keptForward: true, running: mixed(4, map[int]string{1: "app:2", 3: "app:2", 4: "app:2"}), sync: Failed, revision: "v2", failed: "v2", outcome: OutcomeFailed, maxGates: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			if err := w.rec.Sync(w.ctx, w.load(web("app:1", tc.n, tc.update)), "v1", TriggerPoll); err != nil {
				t.Fatalf("sync v1: %v", err)
			}
			w.rt.Gate = tc.gate
			err := w.rec.Sync(w.ctx, w.load(web("app:2", tc.n, tc.update)), "v2", TriggerPoll)
			if (err != nil) != (tc.want.rollback || tc.want.keptForward) {
				t.Fatalf("sync v2: %v", err)
			}
			if got := WantsRollback(err); got != tc.want.rollback {
				t.Errorf("WantsRollback = %v, want %v (%v)", got, tc.want.rollback, err)
			}
			if got := errors.Is(err, ErrKeptForward); got != tc.want.keptForward {
				t.Errorf("kept forward = %v, want %v (%v)", got, tc.want.keptForward, err)
			}
			if got := w.images(); !equalMaps(got, tc.want.running) {
				t.Errorf("containers %v\nwant %v\ncalls %v", got, tc.want.running, w.rt.Calls())
			}
			s := w.state()
			if SyncState(s.Sync) != tc.want.sync || s.Revision != tc.want.revision || s.FailedRevision != tc.want.failed || s.Target != "v2" {
				t.Errorf("stack %+v, want sync %s revision %s failed %q", s, tc.want.sync, tc.want.revision, tc.want.failed)
			}
			if d := w.lastDeployment(); d.Outcome != string(tc.want.outcome) || d.From != "v1" || d.To != "v2" || d.Trigger != string(TriggerPoll) {
				t.Errorf("deployment %+v, want outcome %s", d, tc.want.outcome)
			}
			if max := w.rt.MaxConcurrentGates(); tc.want.maxGates > 0 && max > tc.want.maxGates {
				t.Errorf("%d gates at once, want at most %d", max, tc.want.maxGates)
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRollOrder: start-first starts the new container beside the old one
// and stops the old one only after the gate; stop-first parks and stops the
// old one first; a fixed host port forces stop-first whatever the file asks.
func TestRollOrder(t *testing.T) {
	startFirst := []string{"create ID_next_s-web-1", "start ID_next_s-web-1", "gate ID_next_s-web-1", "stop s-web-1", "remove s-web-1", "rename ID_next_s-web-1 s-web-1"}
	stopFirst := []string{"rename s-web-1 ID_s-web-1", "create s-web-1", "stop ID_s-web-1", "start s-web-1", "gate s-web-1", "remove ID_s-web-1"}
	for _, tc := range []struct {
		name    string
		compose func(image string) string
		want    []string
	}{
		{"default is start-first", func(img string) string { return web(img, 1, "") }, startFirst},
		{"stop-first asked", func(img string) string { return web(img, 1, "{order: stop-first}") }, stopFirst},
		{"a fixed host port cannot run twice", func(img string) string {
			return web(img, 1, "{order: start-first}") + "    ports: [\"8080:80\"]\n"
		}, stopFirst},
		{"a container_name cannot run twice", func(img string) string {
			return strings.Replace(web(img, 1, ""), "    image:", "    container_name: s-web-1\n    image:", 1)
		}, stopFirst},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			if err := w.rec.Sync(w.ctx, w.load(tc.compose("app:1")), "v1", TriggerPoll); err != nil {
				t.Fatal(err)
			}
			cs, _ := w.rt.Containers(w.ctx, "s")
			w.rt.ResetCalls()
			if err := w.rec.Sync(w.ctx, w.load(tc.compose("app:2")), "v2", TriggerPoll); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range w.rt.Calls() {
				got = append(got, strings.ReplaceAll(c, ids.Short(cs[0].ID), "ID"))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("calls\n%v\nwant\n%v", got, tc.want)
			}
		})
	}
}

// TestStopFirstFailedGateStartsTheOldFirst: when the new container of a
// stop-first roll fails its gate, it is killed and the old one starts at
// once, under its parked name; the failed one's removal and the old one's
// name follow.
func TestStopFirstFailedGateStartsTheOldFirst(t *testing.T) {
	w := newWorld(t)
	if err := w.rec.Sync(w.ctx, w.load(web("app:1", 1, "{order: stop-first}")), "v1", TriggerPoll); err != nil {
		t.Fatal(err)
	}
	cs, _ := w.rt.Containers(w.ctx, "s")
	w.rt.ResetCalls()
	w.rt.Gate = failImage("app:2")
	if err := w.rec.Sync(w.ctx, w.load(web("app:2", 1, "{order: stop-first}")), "v2", TriggerPoll); !WantsRollback(err) {
		t.Fatalf("sync v2: %v, want a failed gate", err)
	}
	var got []string
	for _, c := range w.rt.Calls() {
		got = append(got, strings.ReplaceAll(c, ids.Short(cs[0].ID), "ID"))
	}
	want := []string{"rename s-web-1 ID_s-web-1", "create s-web-1", "stop ID_s-web-1", "start s-web-1", "gate s-web-1",
		"stop s-web-1", "start ID_s-web-1", "remove s-web-1", "rename ID_s-web-1 s-web-1"}
	if !slices.Equal(got, want) {
		t.Errorf("calls\n%v\nwant\n%v", got, want)
	}
	if got := w.images(); !equalMaps(got, map[string]string{"s-web-1": "app:1 running"}) {
		t.Errorf("containers %v", got)
	}
}

// TestRollbackPaths: after a failed roll the daemon calls Rollback; the
// stack runs its last healthy revision again and stays Failed with both
// reasons, also when the rollback's own roll fails.
func TestRollbackPaths(t *testing.T) {
	for _, tc := range []struct {
		name        string
		update      string
		gate        func(engine.Container, health.Gate) error
		wantImages  map[string]string
		wantErr     bool
		wantMessage []string
	}{
		{
			name: "the rollback rolls the replicas back", update: "{order: stop-first}",
			gate: failReplica("s-web-2", "app:2"), wantImages: map[string]string{"s-web-1": "app:1 running", "s-web-2": "app:1 running"},
			wantMessage: []string{"revision v2 failed its health gate and was rolled back to v1"},
		},
		{
			name: "a rollback whose own roll fails", update: "",
			// After v2 failed on replica 2, app:1 no longer passes either:
			// the rollback of replica 1 fails and pauses (rollback_config's
			// default), leaving it on app:2.
			gate:       failReplica("s-web-2", "app:2"),
			wantImages: map[string]string{"s-web-1": "app:2 running", "s-web-2": "app:1 running"},
			wantErr:    true,
			wantMessage: []string{
				"revision v2 failed its health gate and was rolled back to v1",
				"; the rollback failed too: ",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			v1 := w.load(web("app:1", 2, tc.update))
			if err := w.rec.Sync(w.ctx, v1, "v1", TriggerPoll); err != nil {
				t.Fatal(err)
			}
			w.rt.Gate = tc.gate
			cause := w.rec.Sync(w.ctx, w.load(web("app:2", 2, tc.update)), "v2", TriggerPoll)
			if !WantsRollback(cause) {
				t.Fatalf("sync v2: %v", cause)
			}
			if tc.wantErr {
				w.rt.Gate = failImage("app:1")
			}
			err := w.rec.Rollback(w.ctx, v1, "v1", "v2", cause)
			if (err != nil) != tc.wantErr {
				t.Fatalf("rollback: %v", err)
			}
			if got := w.images(); !equalMaps(got, tc.wantImages) {
				t.Errorf("containers %v, want %v", got, tc.wantImages)
			}
			s := w.state()
			if SyncState(s.Sync) != Failed || s.FailedRevision != "v2" || s.Target != "v2" {
				t.Errorf("stack %+v", s)
			}
			for _, m := range tc.wantMessage {
				if !strings.Contains(s.Error, m) {
					t.Errorf("error %q lacks %q", s.Error, m)
				}
			}
			if d := w.lastDeployment(); d.Trigger != string(TriggerRollback) || d.To != "v1" {
				t.Errorf("last deployment %+v, want the rollback", d)
			}
			// The failed revision is held: polls leave it alone.
			w.rt.Gate, w.rt.Before = nil, nil
			w.rt.ResetCalls()
			if err := w.rec.Sync(w.ctx, w.load(web("app:2", 2, tc.update)), "v2", TriggerPoll); err != nil || len(w.rt.Calls()) != 0 {
				t.Errorf("a poll of the held revision: %v, calls %v", err, w.rt.Calls())
			}
		})
	}
}

// TestOneShotDependencyFails: a job others wait for with
// service_completed_successfully that exits non-zero fails the sync before
// its dependents are created, and holds the revision.
func TestOneShotDependencyFails(t *testing.T) {
	compose := `services:
  migrate:
    image: job:1
  web:
    image: app:1
    depends_on:
      migrate: {condition: service_completed_successfully}
`
	for _, tc := range []struct {
		name  string
		fails bool
	}{{"completes", false}, {"exits 1", true}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			var completes bool
			w.rt.Gate = func(c engine.Container, g health.Gate) error {
				if c.Service == "migrate" {
					completes = g.Completes
					if tc.fails {
						return &health.Failure{Container: c.Name, Reason: "exited (exit code 1)"}
					}
				}
				return nil
			}
			err := w.rec.Sync(w.ctx, w.load(compose), "v1", TriggerPoll)
			if !completes {
				t.Error("the job's gate does not wait for completion")
			}
			_, webMade := w.images()["s-web-1"]
			s := w.state()
			if !tc.fails {
				if err != nil || !webMade || SyncState(s.Sync) != Synced || Health(s.Health) != Healthy {
					t.Fatalf("sync: %v, web made %v, stack %+v", err, webMade, s)
				}
				return
			}
			if !health.IsFailure(err) || !WantsRollback(err) {
				t.Fatalf("sync: %v", err)
			}
			if webMade {
				t.Error("web was created although the job it waits for failed")
			}
			if SyncState(s.Sync) != Failed || s.FailedRevision != "v1" || !strings.Contains(s.Error, "exit code 1") {
				t.Errorf("stack %+v", s)
			}
			if d := w.lastDeployment(); d.Outcome != string(OutcomeFailed) {
				t.Errorf("deployment %+v", d)
			}
		})
	}
}

// TestStartFirstOldVanished: the old container is removed by hand while
// its start-first successor passes its gate. The sync fails without
// holding the revision (it says nothing of the revision), and the next
// sync converges on one container with the canonical name.
func TestStartFirstOldVanished(t *testing.T) {
	w := newWorld(t)
	if err := w.rec.Sync(w.ctx, w.load(web("app:1", 1, "")), "v1", TriggerPoll); err != nil {
		t.Fatal(err)
	}
	w.rt.Gate = func(c engine.Container, _ health.Gate) error {
		if c.Image == "app:2" {
			w.rt.Vanish("s-web-1")
		}
		return nil
	}
	v2 := w.load(web("app:2", 1, ""))
	err := w.rec.Sync(w.ctx, v2, "v2", TriggerPoll)
	if err == nil || Holds(err) || WantsRollback(err) || !errors.Is(err, synctest.ErrNotFound) {
		t.Fatalf("sync: %v", err)
	}
	if s := w.state(); SyncState(s.Sync) != Failed || s.FailedRevision != "" {
		t.Errorf("stack %+v: failed, not held", s)
	}
	w.rt.Gate = nil
	if err := w.rec.Sync(w.ctx, v2, "v2", TriggerPoll); err != nil {
		t.Fatalf("next sync: %v", err)
	}
	if got, want := w.images(), map[string]string{"s-web-1": "app:2 running"}; !equalMaps(got, want) {
		t.Errorf("containers %v, want %v", got, want)
	}
	if s := w.state(); SyncState(s.Sync) != Synced || s.Revision != "v2" {
		t.Errorf("stack %+v", s)
	}
}
