package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// gatedStack is one service without a healthcheck, gated by a monitor
// window: its deployment lasts at least that long. A broken one exits at
// once (an unknown subcommand of the test app), failing its gate.
func gatedStack(image string, monitor time.Duration, broken bool) string {
	command := ""
	if broken {
		command = "\n    command: [\"no-such-subcommand\"]"
	}
	return fmt.Sprintf(`services:
  app:
    image: %[1]s
    pull_policy: never%[4]s
    deploy: {update_config: {monitor: %[2]s}}
    labels: {%[3]s: "1"}
`+testenv.LabelledDefault(), image, monitor, testenv.TestLabel, command)
}

// mostAtOnce is the most deployments whose [started, finished] intervals
// overlap at one moment.
func mostAtOnce(ds []store.Deployment) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, d := range ds {
		edges = append(edges, edge{d.StartedAt, 1}, edge{d.FinishedAt, -1})
	}
	// At the same instant an end comes before a start: touching is no overlap.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	most, now := 0, 0
	for _, e := range edges {
		now += e.delta
		most = max(most, now)
	}
	return most
}

// TestInitialConvergeRunsStacksSideBySide: a first convergence of five new
// stacks, each of whose gates holds for a monitor window, with
// sync.parallel 2: their deployments overlap (one after another, none
// would), never more than two run at once, a broken stack among them fails
// alone, and each deployment records the phases that led to it.
func TestInitialConvergeRunsStacksSideBySide(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Sync.Parallel = 2
	var names []string
	files := map[string]string{}
	for i := range 5 {
		name := testenv.Project(t, fmt.Sprintf("par%d", i))
		names = append(names, name)
		files["stacks/"+name+"/compose.yaml"] = gatedStack(h.image, 1500*time.Millisecond, i == 2)
	}
	broken := names[2]
	h.repo.Commit(t, "five stacks", files)
	err := h.reconcile()
	if err == nil || !strings.Contains(err.Error(), broken) {
		t.Fatalf("the broken stack's failure should be the reconcile's error: %v", err)
	}

	var all []store.Deployment
	for _, name := range names {
		ds := h.deployments(name)
		if len(ds) != 1 || ds[0].FinishedAt.IsZero() {
			t.Fatalf("stack %s: want one finished deployment, got %+v", name, ds)
		}
		all = append(all, ds[0])
		s := h.stackStatus(name)
		if name == broken {
			if s.Sync != "Failed" || ds[0].Outcome != "failed" {
				t.Fatalf("broken stack %s: %s, deployment %s; want Failed, failed", name, s.Sync, ds[0].Outcome)
			}
			continue
		}
		if s.Sync != "Synced" || ds[0].Outcome != "succeeded" || len(h.containers(name)) != 1 {
			t.Fatalf("stack %s: %s (%s), deployment %s, containers %v; want Synced beside the broken one", name, s.Sync, s.Error, ds[0].Outcome, h.containers(name))
		}
	}
	if n := mostAtOnce(all); n != 2 {
		t.Fatalf("at most %d deployments ran at once, want 2 (sync.parallel): %+v", n, all)
	}

	// The phases come first, in the order of the path, each timed; the
	// create's step says how long the create and the start took.
	hist, err := h.d.History(context.Background(), names[0], 1)
	if err != nil || len(hist) != 1 {
		t.Fatalf("history of %s: %v %+v", names[0], err, hist)
	}
	var actions []string
	for _, s := range hist[0].Steps {
		actions = append(actions, s.Action)
		if s.At == "" || s.DurationMS < 0 {
			t.Errorf("step %s not timed: %+v", s.Action, s)
		}
	}
	want := []string{"fetch", "checkout", "load", "images", "plan"}
	if len(actions) < len(want)+1 || !slices.Equal(actions[:len(want)], want) {
		t.Fatalf("steps %v: want the phases %v first", actions, want)
	}
	if images := hist[0].Steps[3]; images.Detail != "ahead of the rolls" {
		t.Errorf("the images were not prepared ahead of the rolls: %+v", images)
	}
	create := hist[0].Steps[len(hist[0].Steps)-1]
	if create.Action != "create" || !strings.Contains(create.Detail, "(create ") || !strings.Contains(create.Detail, ", start ") || !strings.Contains(create.Detail, "passed its gate in") {
		t.Errorf("the create step does not say what its create, start and gate took: %+v", create)
	}
}

// TestExternalOrder: a stack waits only for the stacks before it that make
// a network or volume it takes as external, by name.
func TestExternalOrder(t *testing.T) {
	st := func(name string, nets, vols types.Mapping) *stack.Stack {
		p := &types.Project{Name: name, Networks: types.Networks{}, Volumes: types.Volumes{}}
		for key, ext := range nets {
			p.Networks[key] = types.NetworkConfig{Name: key, External: ext == "external"}
		}
		for key, ext := range vols {
			p.Volumes[key] = types.VolumeConfig{Name: key, External: ext == "external"}
		}
		return &stack.Stack{Name: name, Project: p}
	}
	stacks := []*stack.Stack{
		st("a-proxy", types.Mapping{"proxy": ""}, nil),
		st("b-app", types.Mapping{"proxy": "external", "b_default": ""}, types.Mapping{"shared": "external"}),
		st("c-data", nil, types.Mapping{"shared": ""}), // made after b: b does not wait for it
		st("d-app", types.Mapping{"proxy": "external"}, types.Mapping{"shared": "external"}),
		st("e-alone", types.Mapping{"elsewhere": "external"}, nil), // made by nobody here
	}
	got := externalOrder(stacks)
	want := [][]int{nil, {0}, nil, {0, 2}, nil}
	for i := range want {
		slices.Sort(got[i])
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("%s waits for %v, want %v", stacks[i].Name, got[i], want[i])
		}
	}
}

// TestInOrderOneAtATime: with a bound of 1, stacks run one after another
// in their order, as they did before sync.parallel.
func TestInOrderOneAtATime(t *testing.T) {
	var seen []int
	inOrder(1, 5, func(i int) { seen = append(seen, i) })
	if !slices.Equal(seen, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("order %v", seen)
	}
}
