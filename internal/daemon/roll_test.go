package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// jobStack is a one-shot migrate job, a web service that waits for it to
// complete, and a worker that waits for web to be healthy and restarts
// when web is recreated.
func jobStack(image, jobVersion string, jobExit int, webVersion string) string {
	return testenv.JobStack{Image: image, JobFor: "700ms", JobExit: jobExit, JobVersion: jobVersion, WebVersion: webVersion, Worker: true}.Compose()
}

func (h *harness) inspect(id string) container.InspectResponse {
	h.t.Helper()
	res, err := h.docker.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		h.t.Fatalf("inspect %s: %v", id, err)
	}
	return res.Container
}

func (h *harness) deployments(stack string) []store.Deployment {
	h.t.Helper()
	ds, err := h.d.store.Deployments(context.Background(), stack, 0)
	if err != nil {
		h.t.Fatalf("deployments of %s: %v", stack, err)
	}
	return ds
}

func parseDockerTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("parse time %q: %v", s, err)
	}
	return at
}

func TestDependsOnConditionsOrderTheRoll(t *testing.T) {
	h := newHarness(t, nil)
	a := testenv.Project(t, "deps")
	file := "stacks/" + a + "/compose.yaml"

	h.repo.Commit(t, "v1", map[string]string{file: jobStack(h.image, "v1", 0, "v1")})
	h.mustReconcile()
	cs := h.containers(a)
	job, web := h.inspect(cs["migrate#1"]), h.inspect(cs["web#1"])
	if job.State.Running || job.State.ExitCode != 0 {
		t.Fatalf("migrate should have completed: %+v", job.State)
	}
	if !parseDockerTime(t, web.State.StartedAt).After(parseDockerTime(t, job.State.FinishedAt)) {
		t.Fatalf("web started at %s, before migrate completed at %s", web.State.StartedAt, job.State.FinishedAt)
	}
	if s := h.stackStatus(a); s.Sync != "Synced" || s.Health != "Healthy" {
		t.Fatalf("a completed job should leave the stack Synced and Healthy: %+v", s)
	}

	// A completed job is done: polls do not run it again.
	deployed := len(h.deployments(a))
	h.mustReconcile()
	if again := h.inspect(cs["migrate#1"]); again.State.StartedAt != job.State.StartedAt || len(h.deployments(a)) != deployed {
		t.Fatalf("a poll ran the completed job again (started %s, then %s)", job.State.StartedAt, again.State.StartedAt)
	}

	// web changes: it is recreated, and worker (restart: true) restarted.
	worker := h.inspect(cs["worker#1"])
	h.repo.Commit(t, "web v2", map[string]string{file: jobStack(h.image, "v1", 0, "v2")})
	h.mustReconcile()
	cs2 := h.containers(a)
	if cs2["web#1"] == cs["web#1"] || cs2["migrate#1"] != cs["migrate#1"] {
		t.Fatalf("want web recreated and migrate untouched: %v -> %v", cs, cs2)
	}
	restarted := h.inspect(cs2["worker#1"])
	if cs2["worker#1"] != cs["worker#1"] || restarted.State.StartedAt == worker.State.StartedAt {
		t.Fatalf("worker should be restarted in place: %s/%s -> %s/%s", cs["worker#1"], worker.State.StartedAt, cs2["worker#1"], restarted.State.StartedAt)
	}
	steps := h.deployments(a)[0].Steps
	if last := steps[len(steps)-1]; last.Action != "restart" || last.Service != "worker" || !strings.Contains(last.Detail, "web was recreated") {
		t.Fatalf("want the worker's restart recorded last, got %+v", steps)
	}

	// A job that fails holds the roll before web and rolls the stack back.
	h.repo.Commit(t, "migrate v3 fails", map[string]string{file: jobStack(h.image, "v3", 3, "v3")})
	if err := h.reconcile(); err == nil || !strings.Contains(err.Error(), "exit code 3") {
		t.Fatalf("a failing job should fail the roll: %v", err)
	}
	cs3 := h.containers(a)
	if cs3["web#1"] != cs2["web#1"] || !slices.Contains(h.env(cs3["web#1"]), "VERSION=v2") {
		t.Fatalf("web must not roll past a failed job: %v -> %v", cs2, cs3)
	}
	if s := h.stackStatus(a); s.Sync != "Failed" || !strings.Contains(s.Error, "exit code 3") {
		t.Fatalf("status after a failed job: %+v", s)
	}
}

// replicasStack has api (3 replicas, rolled 2 at a time with the given
// failure_action) and web, which depends on api.
func replicasStack(image, version string, failAPI bool, failureAction string) string {
	fail := ""
	if failAPI {
		fail = `, FAIL_HEALTH: "1"`
	}
	return fmt.Sprintf(`services:
  api:
    image: %[1]s
    pull_policy: never
    environment: {VERSION: %[2]q%[3]s}
    healthcheck: `+probeCheck+`
    deploy:
      replicas: 3
      update_config: {parallelism: 2, failure_action: %[4]s}
      rollback_config: {order: stop-first}
    labels: {%[5]s: "1"}
  web:
    image: %[1]s
    pull_policy: never
    environment: {VERSION: %[2]q}
    healthcheck: `+probeCheck+`
    depends_on: [api]
    labels: {%[5]s: "1"}
`+testenv.LabelledDefault(), image, version, fail, failureAction, testenv.TestLabel)
}

// overlapping says whether two steps ran at the same time.
func overlapping(a, b store.Step) bool {
	return a.At.Before(b.At.Add(b.Duration)) && b.At.Before(a.At.Add(a.Duration))
}

func TestParallelismAndFailureActions(t *testing.T) {
	file := func(a string) string { return "stacks/" + a + "/compose.yaml" }
	// Each case has its own repository and daemon: a daemon converges every
	// stack of its repository, so a shared one would bring back the stacks
	// of cases that already cleaned up.

	t.Run("parallelism", func(t *testing.T) {
		h := newHarness(t, nil)
		a := testenv.Project(t, "par")
		h.repo.Commit(t, "v1", map[string]string{file(a): replicasStack(h.image, "v1", false, "rollback")})
		h.mustReconcile()
		h.repo.Commit(t, "v2", map[string]string{file(a): replicasStack(h.image, "v2", false, "rollback")})
		h.mustReconcile()
		var api []store.Step
		for _, s := range h.deployments(a)[0].Steps {
			t.Logf("step %s %s#%s at %s took %s: %s %s", s.Action, s.Service, s.Container, s.At.Format("15:04:05.000"), s.Duration, s.Detail, s.Error)
			if s.Service == "api" && s.Action == "recreate" {
				api = append(api, s)
			}
		}
		if len(api) != 3 {
			t.Fatalf("want 3 recreate steps for api, got %+v", api)
		}
		// Steps are recorded as they end: the first two ran together, the
		// third after them.
		if !overlapping(api[0], api[1]) || overlapping(api[0], api[2]) || overlapping(api[1], api[2]) {
			t.Fatalf("want two replicas rolled at once, then one: %+v", api)
		}
		for _, s := range api {
			if !strings.Contains(s.Detail, "passed its gate in") || s.Duration <= 0 {
				t.Fatalf("a step should say how long its gate took: %+v", s)
			}
		}
	})

	t.Run("pause", func(t *testing.T) {
		h := newHarness(t, nil)
		a := testenv.Project(t, "pause")
		h.repo.Commit(t, "v1", map[string]string{file(a): replicasStack(h.image, "v1", false, "pause")})
		h.mustReconcile()
		before := h.containers(a)
		h.repo.Commit(t, "v2 api unhealthy", map[string]string{file(a): replicasStack(h.image, "v2", true, "pause")})
		if err := h.reconcile(); err == nil || !strings.Contains(err.Error(), "health gate") {
			t.Fatalf("want the gate failure reported: %v", err)
		}
		if after := h.containers(a); !mapsEqual(before, after) {
			t.Fatalf("pause keeps every old container (the failed ones restored, the rest not rolled): %v -> %v", before, after)
		}
		ds := h.deployments(a)
		if ds[0].Outcome != "failed" || ds[0].Trigger == "rollback" {
			t.Fatalf("pause must not roll the stack back: %+v", ds[0])
		}
		if s := h.stackStatus(a); s.Sync != "Failed" {
			t.Fatalf("status %+v", s)
		}
		h.mustReconcile()
		if len(h.deployments(a)) != len(ds) {
			t.Fatal("a poll retried the paused revision")
		}
	})

	t.Run("continue", func(t *testing.T) {
		h := newHarness(t, nil)
		a := testenv.Project(t, "cont")
		h.repo.Commit(t, "v1", map[string]string{file(a): replicasStack(h.image, "v1", false, "continue")})
		h.mustReconcile()
		before := h.containers(a)
		h.repo.Commit(t, "v2 api unhealthy", map[string]string{file(a): replicasStack(h.image, "v2", true, "continue")})
		if err := h.reconcile(); err == nil || !strings.Contains(err.Error(), "health gate") {
			t.Fatalf("want the gate failures reported: %v", err)
		}
		after := h.containers(a)
		for _, k := range []string{"api#1", "api#2", "api#3"} {
			if after[k] != before[k] {
				t.Fatalf("a replica that failed its gate should be back on its old container: %v -> %v", before, after)
			}
		}
		if after["web#1"] == before["web#1"] || !slices.Contains(h.env(after["web#1"]), "VERSION=v2") {
			t.Fatal("continue should roll web after api's failures")
		}
		ds := h.deployments(a)
		if ds[0].Outcome != "failed" || ds[0].Trigger == "rollback" {
			t.Fatalf("continue must not roll the stack back: %+v", ds[0])
		}
	})

	t.Run("rollback uses rollback_config", func(t *testing.T) {
		h := newHarness(t, nil)
		a := testenv.Project(t, "rbcfg")
		h.repo.Commit(t, "v1", map[string]string{file(a): replicasStack(h.image, "v1", false, "rollback")})
		h.mustReconcile()
		// web fails: api (rolled start-first by update_config) goes back
		// stop-first, as its rollback_config says.
		bad := strings.Replace(replicasStack(h.image, "v2", false, "rollback"), "    depends_on: [api]\n", "    depends_on: [api]\n    command: [\"job\", \"--exit\", \"1\"]\n", 1)
		h.repo.Commit(t, "v2 web crashes", map[string]string{file(a): bad})
		if err := h.reconcile(); err == nil {
			t.Fatal("want web's failure reported")
		}
		ds := h.deployments(a)
		if ds[0].Trigger != "rollback" {
			t.Fatalf("want a rollback deployment, got %+v", ds[0])
		}
		var stopFirst int
		for _, s := range ds[0].Steps {
			if s.Service == "api" && s.Action == "recreate" && strings.Contains(s.Detail, "stopped and kept") {
				stopFirst++
			}
		}
		if stopFirst != 3 {
			t.Fatalf("want api's 3 replicas rolled back stop-first: %+v", ds[0].Steps)
		}
	})
}
