package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// replicatedStack is a 2-replica healthchecked web service without a fixed
// host port: gitopsd rolls it start-first.
func replicatedStack(image, version string) string { return replicatedStackN(image, version, 2) }

// replicatedStackN is replicatedStack with n replicas.
func replicatedStackN(image, version string, n int) string {
	return fmt.Sprintf(`services:
  web:
    image: %s
    pull_policy: never
    environment: {VERSION: %q, STOP_DELAY: 300ms}
    deploy: {replicas: %d}
    healthcheck: `+probeCheck+`
    labels: {%s: "1"}
networks:
  default:
    labels: {%s: "1"}
`, image, version, n, testenv.TestLabel, testenv.TestLabel)
}

// loadResult is what `testapp load` prints.
type loadResult struct {
	Requests  int      `json:"requests"`
	Failures  int      `json:"failures"`
	Fallbacks int      `json:"fallbacks"`
	Errors    []string `json:"errors"`
}

// startLoad runs a client on the stack's network that requests the service
// by name until the returned function stops it and returns its result (or
// for at most d).
func startLoad(t *testing.T, h *harness, project, image string, d time.Duration) func() loadResult {
	t.Helper()
	ctx := context.Background()
	res, err := h.docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image: image, Tty: true, Labels: map[string]string{testenv.TestLabel: "1"},
			// A connect timeout per address: see testapp's load and the
			// README's "Zero-downtime rolls" for the Docker DNS window it covers.
			Cmd: []string{"load", "http://web:8080/", "--duration", d.String(), "--interval", "10ms", "--connect-timeout", "500ms"},
		},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(project + "_default")},
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			project + "_default": {},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Registered after CleanupProjects, so it runs before the network goes.
	t.Cleanup(func() {
		_, _ = h.docker.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := h.docker.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	return func() loadResult {
		// SIGTERM ends the client's run; it prints its result and exits.
		if _, err := h.docker.ContainerStop(ctx, res.ID, client.ContainerStopOptions{Signal: "SIGTERM"}); err != nil {
			t.Fatalf("stop the load client: %v", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		w := h.docker.ContainerWait(wctx, res.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
		select {
		case err := <-w.Error:
			t.Fatalf("wait for the load client: %v", err)
		case <-w.Result:
		}
		logs, err := h.docker.ContainerLogs(ctx, res.ID, client.ContainerLogsOptions{ShowStdout: true})
		if err != nil {
			t.Fatal(err)
		}
		defer logs.Close()
		b, _ := io.ReadAll(logs)
		var lr loadResult
		if err := json.Unmarshal([]byte(strings.TrimSpace(string(b))), &lr); err != nil {
			t.Fatalf("load client output %q: %v", b, err)
		}
		return lr
	}
}

func TestStartFirstRollKeepsServing(t *testing.T) {
	testenv.RunAlone(t)
	h := newHarness(t, nil)
	a := testenv.Project(t, "roll")
	file := "stacks/" + a + "/compose.yaml"
	h.repo.Commit(t, "v1", map[string]string{file: replicatedStack(h.image, "v1")})
	h.mustReconcile()
	before := h.containers(a)
	if len(before) != 2 {
		t.Fatalf("want 2 replicas, got %v", before)
	}

	result := startLoad(t, h, a, h.image, 5*time.Minute)
	h.repo.Commit(t, "v2", map[string]string{file: replicatedStack(h.image, "v2")})
	began := time.Now()
	h.mustReconcile()
	rolled := time.Since(began)
	after := h.containers(a)
	for _, k := range []string{"web#1", "web#2"} {
		if after[k] == "" || after[k] == before[k] {
			t.Fatalf("replica %s was not rolled: %v -> %v", k, before, after)
		}
		if !slices.Contains(h.env(after[k]), "VERSION=v2") {
			t.Fatalf("replica %s does not run v2", k)
		}
	}
	cs, _ := h.d.engine.Containers(context.Background(), a)
	for _, c := range cs {
		if c.Name != fmt.Sprintf("%s-web-%d", a, c.Number) {
			t.Fatalf("replica %d is named %s", c.Number, c.Name)
		}
	}
	lr := result()
	t.Logf("roll of 2 replicas took %s; load: %d requests, %d failed, %d connects moved to another replica",
		rolled.Round(time.Millisecond), lr.Requests, lr.Failures, lr.Fallbacks)
	if lr.Requests < 30 || lr.Failures > 0 {
		t.Fatalf("load during the roll: %+v", lr)
	}
}
