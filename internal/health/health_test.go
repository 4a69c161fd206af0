package health_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// start runs the test app with env and an optional probe healthcheck.
func start(t *testing.T, cli *client.Client, image string, withCheck bool, env ...string) string {
	t.Helper()
	ctx := context.Background()
	cfg := &container.Config{Image: image, Env: env, Labels: map[string]string{testenv.TestLabel: "1"}}
	if withCheck {
		cfg.Healthcheck = &container.HealthConfig{Test: []string{"CMD", "/testapp", "probe"}, Interval: 300 * time.Millisecond, Timeout: time.Second, Retries: 2}
	}
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: &container.HostConfig{NetworkMode: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	return res.ID
}

func TestGate(t *testing.T) {
	cli := testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-health:"+testenv.UniqueName(t, "v"))
	gate := health.Gate{HasHealthcheck: true, Deadline: 20 * time.Second, Monitor: 1500 * time.Millisecond}
	cases := []struct {
		name      string
		withCheck bool
		env       []string
		fail      string // "" passes
	}{
		{"healthy", true, nil, ""},
		{"unhealthy", true, []string{"FAIL_HEALTH=1"}, "unhealthy: probe exit 1"},
		{"crashes before healthy", true, []string{"FAIL_HEALTH=1", "CRASH_AFTER=200ms"}, "exited"},
		{"keeps running", false, nil, ""},
		{"crashes in the monitor window", false, []string{"CRASH_AFTER=500ms"}, "exited (exit code 1)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := start(t, cli, image, c.withCheck, c.env...)
			g := gate
			g.HasHealthcheck = c.withCheck
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := health.Wait(ctx, cli, id, g)
			if c.fail == "" {
				if err != nil {
					t.Fatalf("gate failed: %v", err)
				}
				return
			}
			if !health.IsFailure(err) || !strings.Contains(err.Error(), c.fail) {
				t.Fatalf("want a gate failure containing %q, got %v", c.fail, err)
			}
		})
	}
}

func TestDeadlineFromHealthcheck(t *testing.T) {
	h := health.GateFor(loadService(t, "healthcheck: {test: [CMD, x], interval: 2s, timeout: 1s, retries: 2, start_period: 5s}"))
	// 5s start + 3 probes of (2s + 1s) + 5s slack
	if !h.HasHealthcheck || h.Deadline != 19*time.Second {
		t.Fatalf("gate %+v", h)
	}
	m := health.GateFor(loadService(t, "deploy: {update_config: {monitor: 3s}}"))
	if m.HasHealthcheck || m.Monitor != 3*time.Second {
		t.Fatalf("gate %+v", m)
	}
	if d := health.GateFor(loadService(t, "healthcheck: {disable: true}")); d.HasHealthcheck {
		t.Fatalf("a disabled healthcheck gates: %+v", d)
	}
}
