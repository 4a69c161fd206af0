package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// newHarnessOn is newHarness over an extra engine of the test instead of
// the machine's: the daemon reaches it through DOCKER_HOST, the harness
// through e.Client, and the app image is built on it.
func newHarnessOn(t *testing.T, e *testenv.Engine) *harness {
	t.Helper()
	t.Setenv("DOCKER_HOST", e.Host)
	h := &harness{t: t, docker: e.Client, repo: testenv.NewGitRepo(t)}
	h.image = e.AppImage(t, "gitopsd-test-daemon:"+strings.ToLower(testenv.UniqueName(t, "v")))
	cfg := config.Default()
	cfg.Source.URL = h.repo.Bare
	cfg.Host.Name = "testhost"
	cfg.StateDir = t.TempDir()
	cfg.Socket = filepath.Join(cfg.StateDir, "gitopsd.sock")
	cfg.Metrics = ""
	h.cfg = cfg
	h.start()
	return h
}

// TestEngineRestartQuickHeal is TestEngineRestart on an engine of the
// test's own, which it may stop and start while other tests run, with the
// quick heal armed (the stack's clean look taken) when the engine goes
// down. Going down, the engine stops every container as a `docker stop`
// would (kill, then die), and its event stream outlives its listener: a
// container started then is stopped again by the shutdown and not brought
// back by the engine when it returns, even under restart: always. So no
// quick heal may run, and the stack converges after the engine is back,
// without duplicates: web (no restart policy) healed by gitopsd, worker
// (restart: always) started by the engine.
func TestEngineRestartQuickHeal(t *testing.T) {
	e := testenv.StartEngine(t)
	h := &driftHarness{harness: newHarnessOn(t, e)}
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
	h.learn()
	quick := h.d.drifts.QuickHeals()

	e.Restart(t)
	back := time.Now()

	if got, err := waitServes(h.port, "v1", 60*time.Second); err != nil {
		t.Fatalf("web does not serve v1 within 60s of the engine's return: %q, %v", got, err)
	}
	t.Logf("web serving again %s after the engine answered", time.Since(back).Round(time.Millisecond))
	h.waitDrift("web stopped, healed", 30*time.Second, func(d api.Drift) bool {
		return d.Kind == "stopped" && d.Service == "web" && d.ClosedBy == "healed"
	})
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
		if c.ID != before[fmt.Sprintf("%s#%d", c.Service, c.Number)] {
			t.Fatalf("%s: want the same container running again, got %s (before: %v)", c.Name, c.ID[:12], before)
		}
	}
	if got := h.d.drifts.QuickHeals(); got != quick {
		t.Fatalf("%d quick heals across the engine's restart, want none: its shutdown's stops are not stops by hand", got-quick)
	}
	if s := h.stackStatus(h.stack); s.Sync != "Synced" || s.Health != "Healthy" {
		t.Fatalf("status after the engine restart: %+v", s)
	}
}
