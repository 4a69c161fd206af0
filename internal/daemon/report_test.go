package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/report"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestCommitStatuses: a real daemon on the real engine, with report: set
// for each provider, against a server on 127.0.0.1 that checks every
// request against that provider's API. Each host and stack has its own
// context; a good commit goes pending then success on both stacks; a
// commit whose health gate fails goes pending then failure with the
// reason for its stack, and success for the other, which it does not
// break; a revision that does not load is a failure saying Invalid. The token
// reaches neither the log, nor the metrics, nor the state database.
func TestCommitStatuses(t *testing.T) {
	for _, kind := range []string{"github", "gitlab", "gitea"} {
		t.Run(kind, func(t *testing.T) { testCommitStatuses(t, kind) })
	}
}

func testCommitStatuses(t *testing.T, kind string) {
	const token = "st4tus-t0ken-do-not-leak"
	h := newHarness(t, hostedURL(t, "ops/fleet.git"))
	srv := testenv.StartStatusServer(t, kind, "ops/fleet", token)
	tokenFile := filepath.Join(t.TempDir(), "status_token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	h.stop()
	h.cfg.Report.Provider, h.cfg.Report.URL, h.cfg.Report.TokenFile = kind, srv.URL, tokenFile
	h.logTo = &logs
	h.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.d.runReporter(ctx)

	a, b := testenv.Project(t, "sta"), testenv.Project(t, "stb")
	pa, pb := testenv.FreePort(t), testenv.FreePort(t)
	fa, fb := "stacks/"+a+"/compose.yaml", "stacks/"+b+"/compose.yaml"
	good := h.repo.Commit(t, "v1", map[string]string{fa: portStack(h.image, pa, "v1", false), fb: portStack(h.image, pb, "v1", false)})
	h.mustReconcile()
	ctxA, ctxB := report.Context("testhost", a), report.Context("testhost", b)
	running, failure := "pending", "failure"
	if kind == "gitlab" {
		running, failure = "running", "failed"
	}
	got := srv.Wait(t, 30*time.Second, "success on both stacks", func(g []testenv.StatusRequest) bool {
		return lastState(g, ctxA, good) == "success" && lastState(g, ctxB, good) == "success"
	})
	for _, c := range []string{ctxA, ctxB} {
		if seq := states(got, c, good); len(seq) != 2 || seq[0] != running || seq[1] != "success" {
			t.Errorf("%s on %s: %v, want [%s success]", c, good, seq, running)
		}
	}

	bad := h.repo.Commit(t, "v2 of a, unhealthy", map[string]string{fa: portStack(h.image, pa, "v2", true)})
	if err := h.reconcile(); err == nil || !strings.Contains(err.Error(), "health gate") {
		t.Fatalf("reconcile of an unhealthy revision: %v", err)
	}
	got = srv.Wait(t, 30*time.Second, "failure of the rolled-back revision", func(g []testenv.StatusRequest) bool {
		return lastState(g, ctxA, bad) == failure
	})
	if seq := states(got, ctxA, bad); len(seq) != 2 || seq[0] != running || seq[1] != failure {
		t.Errorf("%s on %s: %v, want [%s %s]", ctxA, bad, seq, running, failure)
	}
	for _, r := range got {
		if r.Context == ctxA && r.SHA == bad && r.State == failure && !strings.Contains(r.Description, "rolled back") {
			t.Errorf("the failure says %q, want the reason (rolled back)", r.Description)
		}
	}
	// The other stack moves to the new commit, where it is healthy.
	got = srv.Wait(t, 30*time.Second, "the other stack's success", func(g []testenv.StatusRequest) bool {
		return lastState(g, ctxB, bad) == "success"
	})
	if s := lastState(got, ctxB, good); s != "success" {
		t.Errorf("%s on %s ends %q", ctxB, good, s)
	}
	// A revision whose files do not load is a failure on it, saying so.
	invalid := h.repo.Commit(t, "b does not load", map[string]string{fb: "services: [\n"})
	if err := h.reconcile(); err == nil {
		t.Fatal("reconcile of an invalid revision: no error")
	}
	got = srv.Wait(t, 30*time.Second, "failure of the invalid revision", func(g []testenv.StatusRequest) bool {
		return lastState(g, ctxB, invalid) == failure
	})
	if r := got[len(got)-1]; r.Context != ctxB || !strings.HasPrefix(r.Description, "Invalid on testhost: ") {
		t.Errorf("the invalid revision's status: %+v", r)
	}
	// Polls that change nothing send nothing again.
	n := len(srv.Requests())
	h.reconcile() // b stays invalid
	h.reconcile()
	h.d.reportStacks(context.Background(), "")
	// The reporter sends in order: once the marker arrives, anything the
	// polls queued would have arrived before it.
	h.d.reporter.Set(report.Update{Stack: "marker", SHA: good, State: report.Success})
	got = srv.Wait(t, 30*time.Second, "the marker", func(g []testenv.StatusRequest) bool {
		return len(g) > 0 && g[len(g)-1].Context == report.Context("testhost", "marker")
	})
	if len(got) != n+1 {
		t.Errorf("polls that changed nothing sent %d statuses: %+v", len(got)-n-1, got[n:])
	}

	if strings.Contains(logs.String(), token) {
		t.Errorf("the token is in the daemon's log")
	}
	rec := httptest.NewRecorder()
	h.d.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if strings.Contains(rec.Body.String(), token) || !strings.Contains(rec.Body.String(), `gitopsd_host_info{host="testhost"} 1`) {
		t.Errorf("metrics: the token is there, or gitopsd_host_info is not")
	}
	if !strings.Contains(rec.Body.String(), `gitopsd_stack_last_outcome_info{outcome="rolled_back",stack="`+a+`"} 1`) {
		t.Errorf("metrics: no rolled_back last outcome for %s", a)
	}
	h.stop()
	files, _ := filepath.Glob(filepath.Join(h.cfg.StateDir, "gitopsd.db*"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(token)) {
			t.Errorf("the token is in %s", f)
		}
	}
}

// TestStatusOf: which status each stack row means, and on which commit.
func TestStatusOf(t *testing.T) {
	r1, r2 := strings.Repeat("1", 40), strings.Repeat("2", 40)
	for _, tc := range []struct {
		row   store.StackState
		state report.State
		sha   string
		hold  string
	}{
		{store.StackState{Name: "web", Revision: r1, Target: r1, Sync: "Synced", Health: "Healthy"}, report.Success, r1, ""},
		{store.StackState{Name: "web", Revision: r1, Target: r1, Sync: "Synced", Health: "Progressing"}, "", "", ""},
		{store.StackState{Name: "web", Revision: r1, Target: r2, Sync: "Failed", Health: "Healthy", FailedRevision: r2, Error: "revision 222222222222 failed its health gate and was rolled back"}, report.Failure, r2, ""},
		{store.StackState{Name: "web", Revision: r1, Target: r2, Sync: "Invalid", Error: "compose.yaml: line 3"}, report.Failure, r2, ""},
		{store.StackState{Name: "web", Revision: r1, Target: r2, Sync: "Progressing"}, report.Running, r2, ""},
		{store.StackState{Name: "web", Revision: r1, Target: r2, Sync: "OutOfSync"}, "", "", ""},
		{store.StackState{Name: "web", Revision: "abc", Target: "abc", Sync: "Synced", Health: "Healthy"}, "", "", ""}, // not a commit
		{store.StackState{Name: "web", Revision: r1, Target: r2, Sync: "OutOfSync"}, report.Pending, r2, "held by rollout: 222222222222 rolled back on edge-00 (canary)"},
	} {
		u, ok := statusOf(tc.row, "edge-01", tc.hold)
		if ok != (tc.state != "") || (ok && (u.State != tc.state || u.SHA != tc.sha || u.Stack != "web")) {
			t.Errorf("%+v: %+v %v, want %s on %s", tc.row, u, ok, tc.state, tc.sha)
		}
		if ok && u.State == report.Pending && !strings.Contains(u.Description, tc.hold) {
			t.Errorf("%+v: pending without the hold: %q", tc.row, u.Description)
		}
		if ok && u.State == report.Failure && !strings.Contains(u.Description, tc.row.Error) {
			t.Errorf("%+v: failure without the reason: %q", tc.row, u.Description)
		}
	}
}

// hostedURL serves the harness's repository over smart HTTP under path
// (owner/name.git), as a Git host names it: the reporter reads the owner
// and repository from source.url.
func hostedURL(t *testing.T, path string) func(*testenv.GitRepo) string {
	return func(r *testenv.GitRepo) string {
		served, err := url.Parse(r.ServeHTTP(t, ""))
		if err != nil {
			t.Fatal(err)
		}
		proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: served.Scheme, Host: served.Host})
		strip := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			rest, ok := strings.CutPrefix(req.URL.Path, "/"+path)
			if !ok {
				http.NotFound(w, req)
				return
			}
			req.URL.Path, req.URL.RawPath = served.Path+rest, ""
			proxy.ServeHTTP(w, req)
		})
		srv := httptest.NewServer(strip)
		t.Cleanup(srv.Close)
		return srv.URL + "/" + path
	}
}

// lastState is the last state context received for sha ("" none).
func lastState(got []testenv.StatusRequest, context, sha string) string {
	s := states(got, context, sha)
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

func states(got []testenv.StatusRequest, context, sha string) []string {
	var out []string
	for _, r := range got {
		if r.Context == context && r.SHA == sha {
			out = append(out, r.State)
		}
	}
	return out
}

// TestReportRefusedAtStart: a token file that cannot be read, or a
// source.url that names no hosted repository, stops the daemon at start,
// naming the key, rather than at the first roll.
func TestReportRefusedAtStart(t *testing.T) {
	testenv.Docker(t)
	repo := testenv.NewGitRepo(t)
	token := filepath.Join(t.TempDir(), "status_token")
	for _, tc := range []struct {
		source, token, want string
	}{
		{"https://git.example.com/ops/fleet.git", token, "config: report.token_file"},
		{repo.Bare, "", "config: report: the repository from source.url"},
	} {
		if tc.token == "" {
			if err := os.WriteFile(token, []byte("t0ken\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cfg := config.Default()
		cfg.Source.URL, cfg.Host.Name, cfg.StateDir, cfg.Metrics = tc.source, "testhost", t.TempDir(), ""
		cfg.Socket = filepath.Join(cfg.StateDir, "gitopsd.sock")
		cfg.Report.Provider, cfg.Report.TokenFile = "github", token
		d, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil {
			d.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("source %s: %v, want %q", tc.source, err, tc.want)
		}
	}
}
