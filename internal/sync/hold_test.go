package sync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
)

// TestHealthOfNoContainersIsUnknown: a stack with nothing running (nothing
// created yet, a first roll that failed, every service scaled to 0) is not
// Healthy; the worst of its containers is still what the others get.
func TestHealthOfNoContainersIsUnknown(t *testing.T) {
	web := service("s", "web", "h1", 1)
	up := running(web.Specs[0], web, 1, "c1")
	starting := up
	starting.Health = "starting"
	exited := up
	exited.State = "exited"
	for _, tc := range []struct {
		name string
		cs   []engine.Container
		want Health
	}{
		{"none", nil, Unknown},
		{"empty", []engine.Container{}, Unknown},
		{"running", []engine.Container{up}, Healthy},
		{"starting", []engine.Container{up, starting}, HealthProgressing},
		{"exited", []engine.Container{starting, exited}, Degraded},
	} {
		if got := healthOf(tc.cs); got != tc.want {
			t.Errorf("%s: health %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestPlanUsesAVolumeNotMadeForTheStack: a declared volume that exists
// under its name without the project's labels (engine.DeclaredVolume) is
// not created again, which would find it there and leave the plan never
// empty; the plan warns of it as compose does, naming the key.
func TestPlanUsesAVolumeNotMadeForTheStack(t *testing.T) {
	web := service("s", "web", "h1", 1)
	desired := Desired{Stack: "s", Services: []DesiredService{web}, Volumes: []string{"data"}}
	observed := Observed{Containers: []engine.Container{running(web.Specs[0], web, 1, "c1")}}

	p, err := MakePlan(desired, observed)
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(p); !slices.Equal(got, []string{"create-volume data"}) || p.Warning() != "" {
		t.Fatalf("volume missing: plan %v, warning %q", got, p.Warning())
	}

	foreign := `volume "s_data" already exists but was not created by Docker Compose`
	observed.Volumes = []engine.Volume{{Name: "s_data", Key: "data", Foreign: foreign}}
	if p, err = MakePlan(desired, observed); err != nil {
		t.Fatal(err)
	}
	if !p.Empty() || len(p.OrphanVolumes) != 0 {
		t.Fatalf("hand-made volume: plan %v, orphans %v; want nothing to do", kinds(p), p.OrphanVolumes)
	}
	if w := p.Warning(); !strings.HasPrefix(w, "volumes.data: "+foreign) || !strings.Contains(w, "external: true") {
		t.Fatalf("warning %q; want it to name volumes.data, say what compose says, and the fix", w)
	}
}

// TestHolds: what holds a revision (a failed gate, a container the engine
// would not start) and what does not (the engine unreachable, a reconcile
// cut off), through the wrapping a roll adds.
func TestHolds(t *testing.T) {
	bind := errors.New("driver failed programming external connectivity: bind: address already in use")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"gate", &health.Failure{Container: "s-web-1", Reason: "unhealthy"}, true},
		{"start", startFailed("s-web-1", fmt.Errorf("start: %w", bind)), true},
		{"start, restored, in a step", fmt.Errorf("recreate web#1: %w", errors.Join(startFailed("s-web-1", bind), ErrRestored)), true},
		{"cut off", startFailed("s-web-1", fmt.Errorf("start: %w", context.Canceled)), false},
		{"other", errors.New("record step: disk full"), false},
	} {
		if got := Holds(tc.err); got != tc.want {
			t.Errorf("%s: Holds(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
		if got := WantsRollback(tc.err); got != tc.want {
			t.Errorf("%s: WantsRollback = %v, want %v", tc.name, got, tc.want)
		}
	}
	if err := startFailed("s-web-1", bind); !strings.Contains(err.Error(), "s-web-1") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("start failure %q: want the container and the engine's reason", err)
	}
}
