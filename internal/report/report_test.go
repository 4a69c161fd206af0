package report

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

const token = "s3cr3t-t0ken-value"
const sha = "0123456789abcdef0123456789abcdef01234567"

// provider is a testenv.StatusServer for one provider's API, on the
// repository the reporters' source.url names.
type provider struct {
	*testenv.StatusServer
	kind Provider
}

func newProvider(t *testing.T, kind Provider) *provider {
	repo := "ops/fleet"
	if kind == GitLab {
		repo = "ops/sub/fleet"
	}
	return &provider{testenv.StartStatusServer(t, string(kind), repo, token), kind}
}

func (p *provider) waitRequests(t *testing.T, what string, pred func([]testenv.StatusRequest) bool) []testenv.StatusRequest {
	t.Helper()
	return p.Wait(t, 30*time.Second, what, pred)
}

func newReporter(t *testing.T, p *provider, host string, logs *bytes.Buffer) *Reporter {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	source := "https://git.example.com/ops/fleet.git"
	base := p.URL
	if p.kind == GitLab {
		source = "git@gitlab.example.com:ops/sub/fleet.git"
	}
	r, err := New(Config{Provider: p.kind, URL: base, TokenFile: tokenFile, SourceURL: source, Host: host,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), MinBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func wantState(p Provider, s State) string {
	switch {
	case p == GitLab && s == Failure:
		return "failed"
	case p != GitLab && s == Running:
		return "pending"
	}
	return string(s)
}

// TestStatusLifecycle: for each provider, a host and stack go from a
// running roll to success, a rollback from pending to failure with the
// reason, and each host and stack has its own context.
func TestStatusLifecycle(t *testing.T) {
	for _, kind := range []Provider{GitHub, GitLab, Gitea} {
		t.Run(string(kind), func(t *testing.T) {
			p := newProvider(t, kind)
			var logs bytes.Buffer
			a := newReporter(t, p, "edge-01", &logs)
			b := newReporter(t, p, "edge-02", &logs)
			a.Set(Update{Stack: "web", SHA: sha, State: Running, Description: "rolling web"})
			p.waitRequests(t, "running", func(g []testenv.StatusRequest) bool { return len(g) == 1 })
			a.Set(Update{Stack: "web", SHA: sha, State: Success, Description: "Synced, Healthy"})
			b.Set(Update{Stack: "web", SHA: sha, State: Pending, Description: "held by rollout: waiting for wave canary"})
			p.waitRequests(t, "three statuses", func(g []testenv.StatusRequest) bool { return len(g) == 3 })
			long := "rolled back: health gate failed: " + strings.Repeat("app unhealthy; ", 30)
			b.Set(Update{Stack: "web", SHA: sha, State: Failure, Description: long})
			a.Set(Update{Stack: "db", SHA: sha, State: Success, Description: "Synced, Healthy"})
			got := p.waitRequests(t, "five statuses", func(g []testenv.StatusRequest) bool { return len(g) == 5 })

			last := map[string]testenv.StatusRequest{}
			var order []string
			for _, r := range got {
				order = append(order, r.Context+"="+r.State)
				last[r.Context] = r
			}
			if len(last) != 3 {
				t.Errorf("contexts %v, want one per host and stack", order)
			}
			if r := last["gitopsd/edge-01/web"]; r.State != "success" {
				t.Errorf("edge-01/web ends %q (%v)", r.State, order)
			}
			if r := last["gitopsd/edge-01/db"]; r.State != "success" {
				t.Errorf("edge-01/db ends %q (%v)", r.State, order)
			}
			r := last["gitopsd/edge-02/web"]
			if r.State != wantState(kind, Failure) || !strings.HasPrefix(r.Description, "rolled back: health gate failed") || !strings.HasSuffix(r.Description, "…") {
				t.Errorf("edge-02/web ends %q %q (%v)", r.State, r.Description, order)
			}
			if got[0].Context != "gitopsd/edge-01/web" || got[0].State != wantState(kind, Running) {
				t.Errorf("first status %+v, want edge-01/web %s", got[0], wantState(kind, Running))
			}
			var pendingSeen bool
			for _, r := range got {
				pendingSeen = pendingSeen || (r.Context == "gitopsd/edge-02/web" && r.State == "pending")
			}
			if !pendingSeen {
				t.Errorf("edge-02/web was never pending: %v", order)
			}
			if strings.Contains(logs.String(), token) {
				t.Errorf("the token is in the log:\n%s", logs.String())
			}
		})
	}
}

// TestCoalescing: 10 rapid updates of one context send at most 2
// requests, the last update's state winning; the same state again sends
// nothing.
func TestCoalescing(t *testing.T) {
	p := newProvider(t, GitHub)
	var logs bytes.Buffer
	r := newReporter(t, p, "edge-01", &logs)
	for i := range 10 {
		st := Running
		if i == 9 {
			st = Success
		}
		r.Set(Update{Stack: "web", SHA: sha, State: st, Description: "step " + string(rune('0'+i))})
	}
	got := p.waitRequests(t, "the last state", func(g []testenv.StatusRequest) bool { return len(g) > 0 && g[len(g)-1].State == "success" })
	if len(got) > 2 || got[len(got)-1].Description != "step 9" {
		t.Errorf("10 rapid updates sent %d requests: %+v", len(got), got)
	}
	n := len(got)
	r.Set(Update{Stack: "web", SHA: sha, State: Success, Description: "step 9"}) // already sent
	r.Set(Update{Stack: "db", SHA: sha, State: Success, Description: "marker"})
	got = p.waitRequests(t, "the marker", func(g []testenv.StatusRequest) bool { return len(g) > 0 && g[len(g)-1].Description == "marker" })
	if len(got) != n+1 {
		t.Errorf("a repeated state was sent again: %+v", got)
	}
}

// TestRetryAfter: a 429 with Retry-After: 1 and a 502 are retried, the
// first not before the second the server asked for; errors and logs never
// carry the token.
func TestRetryAfter(t *testing.T) {
	p := newProvider(t, Gitea)
	p.FailFirst(http.StatusTooManyRequests, http.StatusBadGateway)
	var logs bytes.Buffer
	r := newReporter(t, p, "edge-01", &logs)
	r.Set(Update{Stack: "web", SHA: sha, State: Success, Description: "Synced, Healthy"})
	got := p.waitRequests(t, "three attempts", func(g []testenv.StatusRequest) bool { return len(g) == 3 })
	if gap := got[1].At.Sub(got[0].At); gap < 900*time.Millisecond {
		t.Errorf("retried %s after a 429 with Retry-After: 1", gap)
	}
	for _, g := range got {
		if g.State != "success" || g.Context != "gitopsd/edge-01/web" {
			t.Errorf("attempt %+v", g)
		}
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the token is in the log:\n%s", logs.String())
	}
}

// TestGivesUpWithoutTheToken: a refused token (401) is not retried, and
// the error logged names the context and HTTP status, never the token;
// the API echoing the token back does not leak it either.
func TestGivesUpWithoutTheToken(t *testing.T) {
	var calls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		http.Error(w, `{"message":"Bad credentials: `+r.Header.Get("Authorization")+`"}`, http.StatusUnauthorized)
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(token), 0o600)
	var logs syncBuffer
	r, err := New(Config{Provider: GitHub, URL: srv.URL, TokenFile: tokenFile, SourceURL: "https://github.com/ops/fleet", Host: "edge-01",
		Log: slog.New(slog.NewTextHandler(&logs, nil)), MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, perr := r.post(context.Background(), Context("edge-01", "web"), Update{Stack: "web", SHA: sha, State: Success})
	if perr == nil || strings.Contains(perr.Error(), token) || !strings.Contains(perr.Error(), "HTTP 401") || !strings.Contains(perr.Error(), "gitopsd/edge-01/web") {
		t.Errorf("error %v: want HTTP 401 naming the context, without the token", perr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	r.Set(Update{Stack: "web", SHA: sha, State: Failure, Description: "x"})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "commit status not sent") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("%d requests, want 2 (one by post, one by Run, no retry of a 401)", calls)
	}
	if !strings.Contains(logs.String(), "commit status not sent") || strings.Contains(logs.String(), token) {
		t.Errorf("log:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestParseRepo(t *testing.T) {
	for src, want := range map[string]string{
		"https://github.com/ops/fleet.git":          "https://api.github.com ops/fleet",
		"git@github.com:ops/fleet.git":              "https://api.github.com ops/fleet",
		"ssh://git@git.example.com:2222/ops/fleet":  "https://git.example.com/api/v3 ops/fleet",
		"https://gitlab.example.com/a/b/c/proj.git": "https://gitlab.example.com/api/v3 a/b/c/proj",
	} {
		r, err := parseRepo(src)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		if got := defaultBase(GitHub, r) + " " + r.path(); got != want {
			t.Errorf("%s: %s, want %s", src, got, want)
		}
	}
	for _, src := range []string{"/srv/git/fleet", "file:///srv/fleet.git", "https://github.com/fleet"} {
		if _, err := parseRepo(src); err == nil {
			t.Errorf("%s: no error", src)
		}
	}
}
