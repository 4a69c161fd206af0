package daemon

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestNoChangePollReadsNothing (issue 20): once every stack runs the head,
// a poll that finds the same head asks the engine nothing and loads no
// stack: it is the ref check alone. A new commit is deployed as before.
func TestNoChangePollReadsNothing(t *testing.T) {
	testenv.Docker(t)                    // the tests' shared client talks to the engine, not to this test's proxy
	calls := testenv.CountDockerCalls(t) // before the harness makes its engine client
	h := newHarness(t, nil)
	a, b := testenv.Project(t, "quiet-a"), testenv.Project(t, "quiet-b")
	h.repo.Commit(t, "two stacks", map[string]string{
		"stacks/" + a + "/compose.yaml": simpleStack(h.image, ""),
		"stacks/" + b + "/compose.yaml": simpleStack(h.image, ""),
	})
	h.mustReconcile()

	before, loads := calls.Snapshot(), h.d.stacks.Loads()
	h.mustReconcile()
	if made := testenv.Since(before, calls.Snapshot()); len(made) != 0 {
		t.Fatalf("a poll that found nothing new called the engine: %v", made)
	}
	if n := h.d.stacks.Loads() - loads; n != 0 {
		t.Fatalf("a poll that found nothing new loaded %d stacks", n)
	}

	// A commit is a change: b gets another environment, a stays.
	h.repo.Commit(t, "b changes", map[string]string{
		"stacks/" + b + "/compose.yaml": simpleStack(h.image, "    environment: {VERSION: v2}"),
	})
	ids := h.containers(a)
	h.mustReconcile()
	if got := h.env(h.containers(b)["app#1"]); !slices.Contains(got, "VERSION=v2") {
		t.Fatalf("b after its commit runs env %q", got)
	}
	if !mapsEqual(h.containers(a), ids) {
		t.Fatalf("a was replaced by a commit to b: %v, then %v", ids, h.containers(a))
	}
}

// TestPeriodicCheckListsOnce (issue 20): the periodic drift check lists the
// engine once for every stack, and compares only a stack whose objects
// changed since it was last compared: here a container stopped by hand
// (no event stream runs in this harness), which it heals.
func TestPeriodicCheckListsOnce(t *testing.T) {
	testenv.Docker(t)
	calls := testenv.CountDockerCalls(t)
	h := newHarness(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b := testenv.Project(t, "periodic-a"), testenv.Project(t, "periodic-b")
	h.repo.Commit(t, "two stacks", map[string]string{
		"stacks/" + a + "/compose.yaml": simpleStack(h.image, ""),
		"stacks/" + b + "/compose.yaml": simpleStack(h.image, ""),
	})
	h.mustReconcile()
	periodic := func() map[string]int {
		t.Helper()
		before := calls.Snapshot()
		h.d.poke(periodicCheck)
		h.d.runChecks(ctx)
		return testenv.Since(before, calls.Snapshot())
	}
	periodic() // the first compares both
	want := map[string]int{"GET /containers/json": 1, "GET /networks": 1, "GET /volumes": 1}
	if got := periodic(); !maps.Equal(got, want) {
		t.Fatalf("a periodic check of unchanged stacks made %v, want %v", got, want)
	}

	id := h.containers(b)["app#1"]
	if _, err := h.docker.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
		t.Fatal(err)
	}
	periodic()
	in, err := h.docker.ContainerInspect(ctx, h.containers(b)["app#1"], client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !in.Container.State.Running {
		t.Fatalf("a container stopped by hand was not healed by the periodic check: %s", in.Container.State.Status)
	}
	open, err := h.d.store.OpenDrifts(ctx, b)
	if err != nil || len(open) != 0 {
		t.Fatalf("open drifts of %s after the heal: %+v, %v", b, open, err)
	}
}
