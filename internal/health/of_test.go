package health

import (
	"testing"

	"github.com/moby/moby/api/types/container"

	"github.com/gitopsd/gitopsd/internal/engine"
)

// TestOf: a container's health at a glance, and a stack's as the worst of
// its containers', no Docker involved.
func TestOf(t *testing.T) {
	job := func(exit int) engine.Container {
		return engine.Container{State: "exited", Labels: map[string]string{engine.LabelOneShot: "true"},
			Inspect: container.InspectResponse{State: &container.State{ExitCode: exit}}}
	}
	for _, tc := range []struct {
		name string
		c    engine.Container
		want Status
	}{
		{"running, no healthcheck", engine.Container{State: "running"}, Healthy},
		{"running, healthy", engine.Container{State: "running", Health: "healthy"}, Healthy},
		{"running, starting", engine.Container{State: "running", Health: "starting"}, Progressing},
		{"running, unhealthy", engine.Container{State: "running", Health: "unhealthy"}, Degraded},
		{"created", engine.Container{State: "created"}, Progressing},
		{"restarting", engine.Container{State: "restarting"}, Progressing},
		{"exited", engine.Container{State: "exited"}, Degraded},
		{"paused", engine.Container{State: "paused"}, Degraded},
		{"a one-shot job that completed", job(0), Healthy},
		{"a one-shot job that failed", job(1), Degraded},
	} {
		if got := Of(tc.c); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	up, starting, down := engine.Container{State: "running"}, engine.Container{State: "created"}, engine.Container{State: "exited"}
	for _, tc := range []struct {
		cs   []engine.Container
		want Status
	}{
		{nil, Unknown},
		{[]engine.Container{up}, Healthy},
		{[]engine.Container{up, starting}, Progressing},
		{[]engine.Container{down, starting, up}, Degraded},
	} {
		if got := OfAll(tc.cs); got != tc.want {
			t.Errorf("OfAll(%d containers): %s, want %s", len(tc.cs), got, tc.want)
		}
	}
}
