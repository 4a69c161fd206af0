package sync

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/stack"
)

// The entry points other than a roll (Diff, Compare, Heal, Remove,
// MarkInvalid) and the image phase, on the in-memory engine.

// loadWith loads stack s from compose plus other files of its folder.
func (w *world) loadWith(compose string, files map[string]string) *stack.Stack {
	w.t.Helper()
	repo := w.t.TempDir()
	dir := filepath.Join(repo, "stacks", "s")
	files["compose.yaml"] = compose
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			w.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
	st, err := stack.Load(w.ctx, repo, "s", stack.Host{Name: "h"})
	if err != nil {
		w.t.Fatalf("load: %v", err)
	}
	return st
}

// without is calls without the gates, which every start is followed by.
func without(calls []string, prefix string) []string {
	return slices.DeleteFunc(calls, func(c string) bool { return strings.HasPrefix(c, prefix) })
}

// TestImageModes: what each ImageMode may do to the images of a stack
// that builds one service and pulls another with pull_policy: always. A
// drift check never builds nor tags, whatever mode it is given; a dry run
// asks nothing; a deploy pulls and builds and records both.
func TestImageModes(t *testing.T) {
	compose := `services:
  api:
    build: ./api
  web:
    image: app:9
    pull_policy: always
`
	files := map[string]string{"api/Dockerfile": "FROM scratch\n"}
	for _, tc := range []struct {
		name      string
		run       func(w *world, st *stack.Stack) error
		wantCalls []string
	}{
		{"Diff is a dry run", func(w *world, st *stack.Stack) error {
			p, err := w.rec.Diff(w.ctx, st, "v1")
			if err == nil && len(p.Actions) != 3 { // network, api, web
				t.Errorf("plan %v", kinds(p))
			}
			return err
		}, nil},
		{"Compare dry", func(w *world, st *stack.Stack) error {
			_, _, err := w.rec.Compare(w.ctx, st, "v1", ImageDryRun)
			return err
		}, nil},
		{"Compare pulls, never builds", func(w *world, st *stack.Stack) error {
			_, _, err := w.rec.Compare(w.ctx, st, "v1", ImageCheck)
			return err
		}, []string{"pull app:9"}},
		{"Compare given a deploy mode still never builds", func(w *world, st *stack.Stack) error {
			_, _, err := w.rec.Compare(w.ctx, st, "v1", ImageDeploy)
			return err
		}, []string{"pull app:9"}},
		{"PrepareImages dry run", func(w *world, st *stack.Stack) error {
			ids, err := w.rec.PrepareImages(w.ctx, st, "v1", ImageDryRun)
			if err == nil && (!strings.HasPrefix(ids["api"], unbuiltPrefix) || ids["web"] != "sha256:app-9-old") {
				t.Errorf("images %v", ids)
			}
			return err
		}, nil},
		{"Sync deploys: builds and pulls", func(w *world, st *stack.Stack) error {
			if err := w.rec.Sync(w.ctx, st, "v1", TriggerPoll); err != nil {
				return err
			}
			if _, ok, _ := w.st.LastPull(w.ctx, "app:9"); !ok {
				t.Error("the pull is not recorded")
			}
			return nil
		}, []string{"build s-api", "pull app:9", "create-network s_default", "create s-api-1", "start s-api-1", "create s-web-1", "start s-web-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.rt.AddImage("app:9", "sha256:app-9-old")
			w.rt.Publish("app:9", "sha256:app-9-new")
			if err := tc.run(w, w.loadWith(compose, files)); err != nil {
				t.Fatal(err)
			}
			if got := without(w.rt.Calls(), "gate "); !slices.Equal(got, tc.wantCalls) {
				t.Errorf("calls %v, want %v", got, tc.wantCalls)
			}
		})
	}
}

// TestBuiltImageIsReused: a second deploy of the same build context builds
// nothing, and a dry run then names the image built.
func TestBuiltImageIsReused(t *testing.T) {
	w := newWorld(t)
	st := w.loadWith("services:\n  api:\n    build:\n      context: ./api\n      tags: [\"api:extra\"]\n", map[string]string{"api/Dockerfile": "FROM scratch\n"})
	first, err := w.rec.PrepareImages(w.ctx, st, "v1", ImageDeploy)
	if err != nil {
		t.Fatal(err)
	}
	w.rt.AddImage("s-api", "sha256:other") // the tag moved since
	w.rt.ResetCalls()
	again, err := w.rec.PrepareImages(w.ctx, st, "v2", ImageDeploy)
	if err != nil || again["api"] != first["api"] {
		t.Fatalf("again: %v, %v, want %v", again, err, first)
	}
	if got := w.rt.Calls(); !slices.Equal(got, []string{"tag s-api", "tag api:extra"}) {
		t.Errorf("calls %v: want the tags put back, no build", got)
	}
	dry, err := w.rec.PrepareImages(w.ctx, st, "v3", ImageDryRun)
	if err != nil || dry["api"] != first["api"] {
		t.Errorf("dry run: %v, %v", dry, err)
	}
}

// TestDryRunForgivesOnlyAMissingImage: an image the host lacks has no ID
// in a dry run, but an engine that fails to answer fails it.
func TestDryRunForgivesOnlyAMissingImage(t *testing.T) {
	w := newWorld(t)
	st := w.load("services:\n  web:\n    image: app:404\n")
	ids, err := w.rec.PrepareImages(w.ctx, st, "v1", ImageDryRun)
	if err != nil || ids["web"] != "" {
		t.Fatalf("missing image: %v, %v", ids, err)
	}
	broken := errors.New("engine unreachable")
	w.rt.Before = func(call string) error {
		if strings.HasPrefix(call, "inspect-image ") {
			return broken
		}
		return nil
	}
	if _, err := w.rec.Diff(w.ctx, st, "v1"); !errors.Is(err, broken) {
		t.Fatalf("diff with a failing engine: %v", err)
	}
}

// TestSyncFailsBeforeAnyChange: an image neither the host nor the registry
// has fails the sync before anything is touched; the failed attempt is
// recorded once per revision and error, not at every poll.
func TestSyncFailsBeforeAnyChange(t *testing.T) {
	w := newWorld(t)
	st := w.load("services:\n  web:\n    image: app:404\n")
	for range 2 {
		if err := w.rec.Sync(w.ctx, st, "v1", TriggerPoll); err == nil {
			t.Fatal("sync of a missing image succeeded")
		}
	}
	s := w.state()
	if SyncState(s.Sync) != Failed || !strings.Contains(s.Error, "app:404") || s.FailedRevision != "" || Health(s.Health) != Unknown {
		t.Errorf("stack %+v", s)
	}
	ds, _ := w.st.Deployments(w.ctx, "s", 10)
	if len(ds) != 1 || ds[0].Outcome != string(OutcomeFailed) || len(w.rt.Calls()) != 0 {
		t.Errorf("deployments %+v, calls %v", ds, w.rt.Calls())
	}
}

// TestStartFailures: a new container the engine will not start is removed
// and holds the revision; a host port another process holds keeps the old
// container of a stop-first roll running, untouched.
func TestStartFailures(t *testing.T) {
	t.Run("new stack", func(t *testing.T) {
		w := newWorld(t)
		w.rt.Before = func(call string) error {
			if call == "start s-web-1" {
				return errors.New("bind: address already in use")
			}
			return nil
		}
		err := w.rec.Sync(w.ctx, w.load(web("app:1", 1, "")), "v1", TriggerPoll)
		if !IsStartFailure(err) || !WantsRollback(err) {
			t.Fatalf("sync: %v", err)
		}
		if got := w.images(); len(got) != 0 {
			t.Errorf("left behind: %v", got)
		}
		if s := w.state(); s.FailedRevision != "v1" || w.lastDeployment().Outcome != string(OutcomeFailed) {
			t.Errorf("stack %+v, deployment %+v", s, w.lastDeployment())
		}
	})
	t.Run("port held, stop-first", func(t *testing.T) {
		w := newWorld(t)
		compose := func(img string) string { return web(img, 1, "") + "    ports: [\"8080:80\"]\n" }
		if err := w.rec.Sync(w.ctx, w.load(compose("app:1")), "v1", TriggerPoll); err != nil {
			t.Fatal(err)
		}
		w.rt.PortsHeld = []string{"8080"}
		w.rt.ResetCalls()
		err := w.rec.Sync(w.ctx, w.load(compose("app:2")), "v2", TriggerPoll)
		if !IsStartFailure(err) || !errors.Is(err, ErrRestored) || !strings.Contains(err.Error(), "8080") {
			t.Fatalf("sync: %v", err)
		}
		if len(w.rt.Calls()) != 0 || w.lastDeployment().Outcome != string(OutcomeRolledBack) {
			t.Errorf("calls %v, deployment %+v", w.rt.Calls(), w.lastDeployment())
		}
	})
	t.Run("start-first create refused", func(t *testing.T) {
		w := newWorld(t)
		if err := w.rec.Sync(w.ctx, w.load(web("app:1", 1, "")), "v1", TriggerPoll); err != nil {
			t.Fatal(err)
		}
		w.rt.Before = func(call string) error {
			if strings.HasPrefix(call, "start ") {
				return errors.New("no such device")
			}
			return nil
		}
		err := w.rec.Sync(w.ctx, w.load(web("app:2", 1, "")), "v2", TriggerPoll)
		if !IsStartFailure(err) || !errors.Is(err, ErrRestored) {
			t.Fatalf("sync: %v", err)
		}
		if got := w.images(); !equalMaps(got, map[string]string{"s-web-1": "app:1 running"}) {
			t.Errorf("containers %v", got)
		}
	})
}

// TestHooks: post_start hooks run before the gate and a failing one fails
// it; pre_stop hooks run before a stop, and a failing one does not keep
// the old container.
func TestHooks(t *testing.T) {
	compose := func(img string) string {
		return web(img, 1, "{order: stop-first}") + "    post_start: [{command: [\"true\"]}]\n    pre_stop: [{command: [\"true\"]}]\n"
	}
	w := newWorld(t)
	if err := w.rec.Sync(w.ctx, w.load(compose("app:1")), "v1", TriggerPoll); err != nil {
		t.Fatal(err)
	}
	if got := w.rt.Calls(); !slices.Contains(got, "hook s-web-1") || slices.Index(got, "hook s-web-1") > slices.Index(got, "gate s-web-1") {
		t.Errorf("calls %v: want the post_start hook before the gate", got)
	}
	w.rt.ResetCalls()
	w.rt.Before = func(call string) error {
		if strings.HasPrefix(call, "hook ") {
			return errors.New("hook exited 1")
		}
		return nil
	}
	err := w.rec.Sync(w.ctx, w.load(compose("app:2")), "v2", TriggerPoll)
	if !health.IsFailure(err) || !strings.Contains(err.Error(), "post_start hook") {
		t.Fatalf("sync: %v", err)
	}
	if got := w.images(); !equalMaps(got, map[string]string{"s-web-1": "app:1 running"}) {
		t.Errorf("containers %v", got)
	}
}

// TestDriftCompareAndHeal: Compare finds a stopped and a paused container
// as drift without touching them; Heal puts back only the services named,
// as a deployment with trigger heal that never marks the revision failed.
func TestDriftCompareAndHeal(t *testing.T) {
	compose := "services:\n  web:\n    image: app:1\n  db:\n    image: app:1\n  cache:\n    image: app:1\n"
	w := newWorld(t)
	st := w.load(compose)
	if err := w.rec.Sync(w.ctx, st, "v1", TriggerPoll); err != nil {
		t.Fatal(err)
	}
	w.rt.SetState("s-web-1", "exited")
	w.rt.SetState("s-db-1", "paused")
	w.rt.ResetCalls()
	plan, h, err := w.rec.Compare(w.ctx, st, "v1", ImageDryRun)
	if err != nil || !slices.Equal(kinds(plan), []string{"unpause db#1", "start web#1"}) || h != Degraded {
		t.Fatalf("compare: %v, health %s, %v", kinds(plan), h, err)
	}
	if err := w.rec.Heal(w.ctx, st, "v1", map[string]bool{"web": true}); err != nil {
		t.Fatal(err)
	}
	if got := w.images(); got["s-web-1"] != "app:1 running" || got["s-db-1"] != "app:1 paused" {
		t.Errorf("after healing web: %v", got)
	}
	if d := w.lastDeployment(); d.Trigger != string(TriggerHeal) || d.Outcome != string(OutcomeSucceeded) {
		t.Errorf("deployment %+v", d)
	}
	w.rt.Gate = failImage("app:1")
	if err := w.rec.Heal(w.ctx, st, "v1", map[string]bool{"db": true}); !health.IsFailure(err) {
		t.Fatalf("heal of a failing gate: %v", err)
	}
	if d, s := w.lastDeployment(), w.state(); d.Outcome != string(OutcomeFailed) || s.FailedRevision != "" {
		t.Errorf("deployment %+v, stack %+v", d, s)
	}
	w.rt.ResetCalls()
	if err := w.rec.Heal(w.ctx, st, "v1", map[string]bool{"cache": true}); err != nil || len(w.rt.Calls()) != 0 {
		t.Errorf("heal of what did not drift: %v, calls %v", err, w.rt.Calls())
	}
}

// TestHealRecreatesSharers: healing a container recreates the services
// that run in its network namespace, after it.
func TestHealRecreatesSharers(t *testing.T) {
	w := newWorld(t)
	st := w.load("services:\n  web:\n    image: app:1\n  side:\n    image: app:1\n    network_mode: service:web\n")
	if err := w.rec.Sync(w.ctx, st, "v1", TriggerPoll); err != nil {
		t.Fatal(err)
	}
	w.rt.Vanish("s-web-1")
	w.rt.ResetCalls()
	if err := w.rec.Heal(w.ctx, st, "v1", map[string]bool{"web": true}); err != nil {
		t.Fatal(err)
	}
	calls := without(w.rt.Calls(), "gate ")
	// side cannot run twice in one namespace: it is recreated stop-first.
	if i, j := slices.Index(calls, "create s-web-1"), slices.Index(calls, "create s-side-1"); i < 0 || j < i {
		t.Errorf("calls %v: want web created, then side recreated", calls)
	}
	if got := w.images(); len(got) != 2 || got["s-side-1"] != "app:1 running" {
		t.Errorf("containers %v", got)
	}
}

// TestRemoveAndMarkInvalid: Remove takes the containers and networks and
// forgets the stack; MarkInvalid records why a revision did not load and
// touches nothing.
func TestRemoveAndMarkInvalid(t *testing.T) {
	w := newWorld(t)
	if err := w.rec.Sync(w.ctx, w.load("services:\n  web:\n    image: app:1\n    volumes: [data:/data]\nvolumes:\n  data: {}\n"), "v1", TriggerPoll); err != nil {
		t.Fatal(err)
	}
	if err := w.rec.MarkInvalid(w.ctx, "s", "v2", errors.New("compose.yaml line 3: bad")); err != nil {
		t.Fatal(err)
	}
	if s := w.state(); SyncState(s.Sync) != Invalid || s.Target != "v2" || s.Revision != "v1" || !strings.Contains(s.Error, "line 3") || Health(s.Health) != Healthy {
		t.Errorf("invalid: %+v", s)
	}
	if err := w.rec.Remove(w.ctx, "s", "v3", TriggerPoll); err != nil {
		t.Fatal(err)
	}
	if got := w.images(); len(got) != 0 {
		t.Errorf("left: %v", got)
	}
	nets, _ := w.rt.Networks(w.ctx, "s")
	vols, _ := w.rt.Volumes(w.ctx, "s")
	if len(nets) != 0 || len(vols) != 1 {
		t.Errorf("networks %v (want none), volumes %v (want kept)", nets, vols)
	}
	if _, ok, _ := w.st.Stack(w.ctx, "s"); ok {
		t.Error("the stack is still recorded")
	}
	if d := w.lastDeployment(); d.To != "v3" || d.Outcome != string(OutcomeSucceeded) {
		t.Errorf("deployment %+v", d)
	}
}

// TestRollCutOffIsGated: a stack left Progressing (a roll cut off by a
// crash) has its containers put through their gates although the plan is
// empty; one that fails holds the revision.
func TestRollCutOffIsGated(t *testing.T) {
	for _, fails := range []bool{false, true} {
		w := newWorld(t)
		st := w.load(web("app:1", 1, ""))
		if err := w.rec.Sync(w.ctx, st, "v1", TriggerPoll); err != nil {
			t.Fatal(err)
		}
		s := w.state()
		s.Sync = string(Progressing)
		if err := w.st.PutStack(w.ctx, s); err != nil {
			t.Fatal(err)
		}
		if fails {
			w.rt.Gate = failImage("app:1")
		}
		w.rt.ResetCalls()
		err := w.rec.Sync(w.ctx, st, "v1", TriggerPoll)
		if !slices.Equal(w.rt.Calls(), []string{"gate s-web-1"}) || health.IsFailure(err) != fails {
			t.Fatalf("fails %v: %v, calls %v", fails, err, w.rt.Calls())
		}
		if s := w.state(); (SyncState(s.Sync) == Failed) != fails || (s.FailedRevision == "v1") != fails {
			t.Errorf("fails %v: stack %+v", fails, s)
		}
	}
}

// TestRollbackTakesTheImagesItRan: a rollback takes the image the good
// revision's containers run, not what its tag names since a later pull
// moved it, and names it by the tag again.
func TestRollbackTakesTheImagesItRan(t *testing.T) {
	w := newWorld(t)
	w.rt.AddImage("app:x", "sha256:good")
	v1 := w.load("services:\n  web:\n    image: app:x\n    environment: [V=1]\n")
	if err := w.rec.Sync(w.ctx, v1, "v1", TriggerPoll); err != nil {
		t.Fatal(err)
	}
	w.rt.AddImage("app:x", "sha256:moved")
	w.rt.Gate = func(c engine.Container, _ health.Gate) error {
		if c.ImageID == "sha256:moved" {
			return &health.Failure{Container: c.Name, Reason: "unhealthy"}
		}
		return nil
	}
	cause := w.rec.Sync(w.ctx, w.load("services:\n  web:\n    image: app:x\n    environment: [V=2]\n"), "v2", TriggerPoll)
	if !WantsRollback(cause) {
		t.Fatalf("sync v2: %v", cause)
	}
	if err := w.rec.Rollback(w.ctx, v1, "v1", "v2", cause); err != nil {
		t.Fatal(err)
	}
	cs, _ := w.rt.Containers(w.ctx, "s")
	if len(cs) != 1 || cs[0].ImageID != "sha256:good" || cs[0].Labels[engine.LabelRevision] != "v1" {
		t.Errorf("containers %+v", cs)
	}
	if id, _, _ := w.rt.LocalImage(w.ctx, "app:x"); id != "sha256:good" {
		t.Errorf("app:x names %s after the rollback", id)
	}
}

// TestBuildFailureHolds: a build that fails fails the sync before anything
// changes, is recorded with the builder's error, and holds the revision
// (the same build fails the same way) unless the sync is a retry.
func TestBuildFailureHolds(t *testing.T) {
	w := newWorld(t)
	st := w.loadWith("services:\n  api:\n    build: ./api\n", map[string]string{"api/Dockerfile": "FROM scratch\n"})
	w.rt.Before = func(call string) error {
		if strings.HasPrefix(call, "build ") {
			return &engine.BuildError{Msg: "COPY failed", Lines: []string{"step 2/3"}}
		}
		return nil
	}
	if err := w.rec.Sync(w.ctx, st, "v1", TriggerPoll); err == nil {
		t.Fatal("sync with a failing build succeeded")
	}
	if s := w.state(); SyncState(s.Sync) != Failed || s.FailedRevision != "v1" || !strings.Contains(s.Error, "COPY failed") {
		t.Errorf("stack %+v", s)
	}
	if d := w.lastDeployment(); d.Outcome != string(OutcomeFailed) || !strings.Contains(d.Error, "step 2/3") {
		t.Errorf("deployment %+v", d)
	}
	w.rt.Before = nil
	if err := w.rec.Sync(w.ctx, st, "v1", TriggerPoll); err != nil || len(w.images()) != 0 {
		t.Fatalf("a poll of the held revision: %v, %v", err, w.images())
	}
	if err := w.rec.Sync(w.ctx, st, "v1", TriggerRetry); err != nil || w.images()["s-api-1"] == "" {
		t.Fatalf("retry: %v, %v", err, w.images())
	}
	if s := w.state(); SyncState(s.Sync) != Synced || s.FailedRevision != "" {
		t.Errorf("after the retry: %+v", s)
	}
}

// TestHealWithoutItsRecord: with StoreFailed set, a heal whose deployment
// cannot be recorded (a full or broken state_dir) heals all the same and
// says what it could not record.
func TestHealWithoutItsRecord(t *testing.T) {
	w := newWorld(t)
	st := w.load("services:\n  web:\n    image: app:1\n")
	if err := w.rec.Sync(w.ctx, st, "v1", TriggerPoll); err != nil {
		t.Fatal(err)
	}
	var lost []string
	w.rec.StoreFailed = func(what string, err error) { lost = append(lost, what) }
	w.rt.SetState("s-web-1", "exited")
	if err := w.st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.rec.Heal(w.ctx, st, "v1", map[string]bool{"web": true}); err != nil {
		t.Fatalf("heal: %v", err)
	}
	if got := w.images(); got["s-web-1"] != "app:1 running" {
		t.Errorf("not healed: %v", got)
	}
	if !slices.Equal(lost, []string{"record a heal of stack s"}) {
		t.Errorf("reported %v", lost)
	}
}
