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
func start(t *testing.T, cli *client.Client, image string, withCheck bool, cmd []string, env ...string) string {
	t.Helper()
	ctx := context.Background()
	cfg := &container.Config{Image: image, Cmd: cmd, Env: env, Labels: map[string]string{testenv.TestLabel: "1"}}
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
		cmd       []string
		completes bool // a one-shot job
		needCheck bool // a dependent waits for service_healthy
	}{
		{name: "healthy", withCheck: true},
		{name: "unhealthy", withCheck: true, env: []string{"FAIL_HEALTH=1"}, fail: "unhealthy: probe exit 1"},
		{name: "crashes before healthy", withCheck: true, env: []string{"FAIL_HEALTH=1", "CRASH_AFTER=200ms"}, fail: "exited"},
		{name: "keeps running"},
		{name: "crashes in the monitor window", env: []string{"CRASH_AFTER=500ms"}, fail: "exited (exit code 1)"},
		{name: "job completes", cmd: []string{"job", "--for", "500ms"}, completes: true},
		{name: "job completed before the gate looked", cmd: []string{"job"}, completes: true},
		{name: "job fails", cmd: []string{"job", "--for", "300ms", "--exit", "3"}, completes: true, fail: "exited (exit code 3)"},
		{name: "job that is not a one-shot", cmd: []string{"job", "--for", "300ms"}, fail: "exit code 0"},
		{name: "service_healthy without healthcheck", needCheck: true, fail: "has no healthcheck"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := start(t, cli, image, c.withCheck, c.cmd, c.env...)
			if len(c.cmd) == 1 {
				// Let the job finish before the gate looks.
				w := cli.ContainerWait(context.Background(), id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
				select {
				case err := <-w.Error:
					t.Fatal(err)
				case <-w.Result:
				}
			}
			g := gate
			g.HasHealthcheck = c.withCheck
			g.Completes, g.RequireHealthcheck = c.completes, c.needCheck
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
