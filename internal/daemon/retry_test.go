package daemon

import (
	"context"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// runDaemon runs the harness's daemon loop and returns a client of its
// socket. Neither a timer poll nor the watch of the local repository runs
// within the test (unless h.watch): the test's own requests decide what
// happens when.
func runDaemon(t testing.TB, h *harness) *api.Client {
	t.Helper()
	h.cfg.Source.Interval = time.Hour
	h.d.watchLocal = h.watch
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- h.d.Run(ctx, func() { close(ready) }) }()
	var once gosync.Once
	h.halt = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon: %v", err)
			}
		})
	}
	// Registered after newHarness's Close, so it runs before it.
	t.Cleanup(h.halt)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon stopped before it listened: %v", err)
	}
	return api.NewClient(h.cfg.Socket)
}

// TestSyncRetry: a revision that failed its gate stays held through a plain
// `sync`, and only `sync --retry` tries it again; both go through the
// socket API and the daemon's request loop.
func TestSyncRetry(t *testing.T) {
	h := newHarness(t, nil)
	a := testenv.Project(t, "retry")
	port := testenv.FreePort(t)
	file := "stacks/" + a + "/compose.yaml"
	good := h.repo.Commit(t, "v1", map[string]string{file: portStack(h.image, port, "v1", false)})
	c := runDaemon(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.Sync(ctx, a, false, true); err != nil {
		t.Fatalf("sync of v1: %v", err)
	}
	before := h.containers(a)["web#1"]

	bad := h.repo.Commit(t, "v2, unhealthy", map[string]string{file: portStack(h.image, port, "v2", true)})
	if err := c.Sync(ctx, a, false, true); err == nil || !strings.Contains(err.Error(), "health gate") {
		t.Fatalf("first sync of an unhealthy revision: %v", err)
	}
	hist := h.history(a)
	s := h.stackStatus(a)
	if !s.Held || s.Pinned || s.Revision != good || s.Target != bad || s.Head != bad || s.BranchAhead != 1 {
		t.Fatalf("status after the failed gate: %+v", s)
	}

	// A plain sync polls, leaves the failed revision alone, and says so.
	if err := c.Sync(ctx, a, false, true); err == nil || !strings.Contains(err.Error(), "stack "+a+" is held") {
		t.Fatalf("plain sync of a held stack: %v, want it to say the stack is held", err)
	}
	if got := h.history(a); len(got) != len(hist) {
		t.Fatalf("a plain sync retried the failed revision: %+v", got[0])
	}
	if id := h.containers(a)["web#1"]; id != before {
		t.Fatalf("a plain sync touched the container: %s -> %s", before, id)
	}

	// --retry rolls to it again; it fails again and the old container serves.
	if err := c.Sync(ctx, a, true, true); err == nil || !strings.Contains(err.Error(), "health gate") {
		t.Fatalf("sync --retry of an unhealthy revision: %v", err)
	}
	got := h.history(a)
	if len(got) != len(hist)+1 || got[0].Trigger != "retry" || got[0].To != bad || got[0].Outcome != "rolled_back" {
		t.Fatalf("history after sync --retry: %+v", got[0])
	}
	if answer, err := waitServes(port, "v1", 5*time.Second); err != nil {
		t.Fatalf("after the retry failed, the old container answers %q, %v", answer, err)
	}
	if s := h.stackStatus(a); !s.Held || s.Revision != good {
		t.Fatalf("status after a failed retry: %+v", s)
	}
}

func (h *harness) history(stackName string) []api.Deployment {
	h.t.Helper()
	ds, err := h.d.History(context.Background(), stackName, 0)
	if err != nil {
		h.t.Fatalf("history of %s: %v", stackName, err)
	}
	return ds
}
