package api

import (
	"context"
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
