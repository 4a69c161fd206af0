package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// syncBackend records the sync requests it is given; the rest is unused.
type syncBackend struct {
	Backend
	mu    sync.Mutex
	calls []syncCall
}

type syncCall struct {
	stack       string
	retry, wait bool
}

func (b *syncBackend) Sync(_ context.Context, stack string, retry, wait bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, syncCall{stack, retry, wait})
	return nil
}

func serve(t *testing.T, b Backend) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	srv, err := Listen(sock, b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve() //nolint:errcheck // Shutdown ends it
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return sock
}

func TestSyncRetryParameter(t *testing.T) {
	b := &syncBackend{}
	sock := serve(t, b)
	c := NewClient(sock)
	ctx := context.Background()
	if err := c.Sync(ctx, "web", true, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx, "", false, false); err != nil {
		t.Fatal(err)
	}
	// A client from before --retry sends no retry parameter: a plain sync.
	old := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	resp, err := old.Post("http://gitopsd/v1/sync?stack=db&wait=true", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"queued":true`) {
		t.Fatalf("sync without retry: %s %s", resp.Status, body)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	want := []syncCall{{"web", true, true}, {"", false, false}, {"db", false, true}}
	if len(b.calls) != len(want) {
		t.Fatalf("calls %+v, want %+v", b.calls, want)
	}
	for i := range want {
		if b.calls[i] != want[i] {
			t.Errorf("call %d: %+v, want %+v", i, b.calls[i], want[i])
		}
	}
}

// skipWaveBackend records `sync --skip-wave` requests apart from plain ones.
type skipWaveBackend struct {
	syncBackend
	skipped []string
}

func (b *skipWaveBackend) SyncSkipWave(_ context.Context, stack string, wait bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.skipped = append(b.skipped, fmt.Sprintf("%s wait=%v", stack, wait))
	return nil
}

// TestSyncSkipWaveParameter: skip_wave=true reaches the backend's
// SyncSkipWave, and nothing else does; a held stack of the rollout is
// named with the way out.
func TestSyncSkipWaveParameter(t *testing.T) {
	b := &skipWaveBackend{}
	c := NewClient(serve(t, b))
	ctx := context.Background()
	if _, err := c.SyncWith(ctx, SyncRequest{Stack: "web", SkipWave: true, Wait: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx, "web", false, true); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.skipped) != 1 || b.skipped[0] != "web wait=true" || len(b.calls) != 1 {
		t.Errorf("skip-wave calls %v, plain calls %+v", b.skipped, b.calls)
	}
	he := &HeldError{Stacks: []HeldStack{{Stack: "web", Reason: "held by rollout: waiting: wave canary 0/1 healthy", ByRollout: true}}}
	if got := he.Error(); got != "stack web is held by rollout: waiting: wave canary 0/1 healthy; `gitopsd sync web --skip-wave` applies it now" {
		t.Errorf("HeldError: %q", got)
	}
}
