package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// engineRestartEnv opts in to TestEngineRestart: it stops and starts the
// machine's dockerd, which would break any other test running beside it, so
// `make test` runs it on its own after the rest of the suite.
const engineRestartEnv = "GITOPSD_TEST_ENGINE_RESTART"

// restartStack has a web service without a restart policy (it stays down
// after the engine restarts, until gitopsd heals it) and a worker with
// restart: always (the engine starts it again by itself: gitopsd must not
// make a second one).
func restartStack(image string, port int) string {
	return fmt.Sprintf(`services:
  web:
    image: %[1]s
    pull_policy: never
    ports: ["127.0.0.1:%[2]d:8080"]
    environment: {VERSION: v1}
    healthcheck: `+probeCheck+`
    labels: {%[3]s: "1"}
  worker:
    image: %[1]s
    pull_policy: never
    restart: always
    environment: {VERSION: v1}
    labels: {%[3]s: "1"}
`+testenv.LabelledDefault(), image, port, testenv.TestLabel)
}

// TestEngineRestart: the Docker engine restarts under a running gitopsd;
// gitopsd reconnects to its events and the stack converges, without
// duplicate containers.
func TestEngineRestart(t *testing.T) {
	if os.Getenv(engineRestartEnv) != "1" {
		t.Skipf("restarts dockerd: run alone with %s=1 (make test does, after the rest)", engineRestartEnv)
	}
	h := &driftHarness{harness: newHarness(t, nil)}
	engineRestarted(t, h, func() { restartDockerd(t, h.docker) })
}

// engineRestarted deploys restartStack with h's daemon (not run yet), arms
// the quick heal (the stack's clean look), has restart restart the engine
// under it, and checks that the stack converges after it: the same web
// and worker running, none more, Synced and Healthy, and no quick heal
// across the restart.
func engineRestarted(t *testing.T, h *driftHarness, restart func()) {
	t.Helper()
	h.stack = testenv.Project(t, "restart")
	h.port = testenv.FreePort(t)
	h.cfg.Drift.CheckInterval = time.Minute // events alone must bring it back
	h.repo.Commit(t, "v1", map[string]string{"stacks/" + h.stack + "/compose.yaml": restartStack(h.image, h.port)})
	h.api = runDaemon(t, h.harness)
	if err := h.api.Sync(context.Background(), "", false, true); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	before := h.containers(h.stack)
	if len(before) != 2 {
		t.Fatalf("want web and worker, got %v", before)
	}

	// The quick heal armed, as when the engine goes down under a steady
	// stack: its shutdown's stops must start nothing.
	h.learn()
	quick := h.d.drifts.QuickHeals()

	restart()
	back := time.Now()

	if got, err := waitServes(h.port, "v1", 60*time.Second); err != nil {
		t.Fatalf("web does not serve v1 within 60s of the engine's return: %q, %v", got, err)
	}
	t.Logf("web serving again %s after the engine answered", time.Since(back).Round(time.Millisecond))
	h.waitDrift("web stopped, healed", 30*time.Second, func(d api.Drift) bool {
		return d.Kind == "stopped" && d.Service == "web" && d.ClosedBy == "healed"
	})
	// web and worker may be put back by different checks once the event
	// stream is back (the quick heal starts nothing of an engine going
	// down): wait for both, then look.
	var cs []engine.Container
	waitFor30s(t, "web and worker running again", func() bool {
		var err error
		if cs, err = h.d.engine.Containers(context.Background(), h.stack); err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.State != "running" {
				return false
			}
		}
		return true
	})
	if len(cs) != 2 {
		t.Fatalf("want exactly one web and one worker after the restart, got %d: %+v", len(cs), cs)
	}
	for _, c := range cs {
		if c.ID != before[fmt.Sprintf("%s#%d", c.Service, c.Number)] || c.State != "running" {
			t.Fatalf("%s: want the same container running again, got %s %s (before: %v)", c.Name, c.ID[:12], c.State, before)
		}
	}
	if got := h.d.drifts.QuickHeals(); got != quick {
		t.Fatalf("%d quick heals across the engine's restart, want none: its shutdown's stops are not stops by hand", got-quick)
	}
	if s := h.stackStatus(h.stack); s.Sync != "Synced" || s.Health != "Healthy" {
		t.Fatalf("status after the engine restart: %+v", s)
	}
}

// restartDockerd stops the engine (SIGTERM, as systemctl restart would)
// and starts it again with the same command line and environment, then
// waits until it answers.
func restartDockerd(t *testing.T, cli *client.Client) {
	t.Helper()
	pid := dockerdPID(t)
	argv := procStrings(t, pid, "cmdline")
	env := procStrings(t, pid, "environ")
	t.Logf("restarting dockerd (pid %d): %s", pid, strings.Join(argv, " "))
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stop dockerd: %v", err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("dockerd (pid %d) did not stop within 90s", pid)
		}
		time.Sleep(100 * time.Millisecond) // waiting for another process to exit
	}
	logFile, err := os.OpenFile(filepath.Join(os.TempDir(), "gitopsd-test-dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr, cmd.Dir = env, logFile, logFile, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives the test
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd again: %v (the machine has no engine now)", err)
	}
	_ = cmd.Process.Release()
	deadline = time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Ping(ctx, client.PingOptions{})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd does not answer 90s after its restart: %v (log: %s)", err, logFile.Name())
		}
		time.Sleep(100 * time.Millisecond) // waiting for another process to come up
	}
}

// dockerdPID reads dockerd's pid file, or finds the process by name.
func dockerdPID(t *testing.T) int {
	t.Helper()
	if b, err := os.ReadFile("/var/run/docker.pid"); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
			return pid
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(comm)) == "dockerd" {
			return pid
		}
	}
	t.Fatal("no dockerd process on this machine: the engine is not local")
	return 0
}

func procStrings(t *testing.T, pid int, file string) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		t.Fatalf("read dockerd's %s: %v", file, err)
	}
	var out []string
	for _, f := range bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0}) {
		out = append(out, string(f))
	}
	return out
}
