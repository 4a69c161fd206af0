package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// StatusRequest is one commit status a StatusServer received, as the
// provider understood it.
type StatusRequest struct {
	SHA, Context, State, Description string
	At                               time.Time
}

// StatusServer is an HTTP server on 127.0.0.1 that checks every request
// against one Git provider's documented commit-status API (path, auth
// header, JSON fields and states) and records it. A request that breaks
// the API fails the test and gets a 400.
type StatusServer struct {
	URL  string // what report.url is set to (GitLab: with /api/v4)
	t    testing.TB
	kind string
	repo string // owner/name (GitLab: the project's full path)
	tok  string
	mu   sync.Mutex
	got  []StatusRequest
	// fails are status codes to answer first, in order.
	fails []int
}

// StartStatusServer serves kind's API ("github", "gitlab" or "gitea") for
// the repository repo (owner/name; GitLab: group/sub/project) with token.
func StartStatusServer(t testing.TB, kind, repo, token string) *StatusServer {
	t.Helper()
	s := &StatusServer{t: t, kind: kind, repo: repo, tok: token}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	if kind == "gitlab" {
		s.URL += "/api/v4"
	}
	return s
}

// FailFirst makes the server answer the next requests with these codes
// (a 429 with Retry-After: 1), in order, before accepting.
func (s *StatusServer) FailFirst(codes ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, codes...)
}

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

func (s *StatusServer) serve(w http.ResponseWriter, r *http.Request) {
	bad := func(format string, a ...any) {
		s.t.Errorf("%s: "+format, append([]any{s.kind}, a...)...)
		http.Error(w, "bad request", http.StatusBadRequest)
	}
	if r.Method != http.MethodPost {
		bad("method %s", r.Method)
		return
	}
	var prefix, authHeader, wantAuth, ctxField string
	var states []string
	owner, name, _ := strings.Cut(s.repo, "/")
	switch s.kind {
	case "github": // docs.github.com: REST, commits/statuses, "Create a commit status"
		prefix, authHeader, wantAuth, ctxField = "/repos/"+owner+"/"+name+"/statuses/", "Authorization", "Bearer "+s.tok, "context"
		states = []string{"error", "failure", "pending", "success"}
		if r.Header.Get("Accept") != "application/vnd.github+json" {
			bad("Accept %q", r.Header.Get("Accept"))
			return
		}
	case "gitlab": // docs.gitlab.com: Commits API, "Set the pipeline status of a commit"
		prefix, authHeader, wantAuth, ctxField = "/api/v4/projects/"+url.PathEscape(s.repo)+"/statuses/", "PRIVATE-TOKEN", s.tok, "name"
		states = []string{"pending", "running", "success", "failed", "canceled", "skipped"}
	case "gitea": // Gitea/Forgejo swagger: repoCreateStatus, CreateStatusOption
		prefix, authHeader, wantAuth, ctxField = "/api/v1/repos/"+owner+"/"+name+"/statuses/", "Authorization", "token "+s.tok, "context"
		states = []string{"pending", "success", "error", "failure", "warning"}
	default:
		bad("unknown provider")
		return
	}
	sha, ok := strings.CutPrefix(r.URL.EscapedPath(), prefix)
	if !ok || !fullSHA.MatchString(sha) {
		bad("path %s, want %s<full SHA>", r.URL.EscapedPath(), prefix)
		return
	}
	if got := r.Header.Get(authHeader); got != wantAuth {
		bad("%s header %q", authHeader, got)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		bad("Content-Type %q", r.Header.Get("Content-Type"))
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		bad("body: %v", err)
		return
	}
	allowed := map[string]bool{"state": true, "description": true, "target_url": true, ctxField: true}
	if s.kind == "gitlab" {
		allowed["ref"], allowed["pipeline_id"], allowed["coverage"], allowed["context"] = true, true, true, true
	}
	for k, v := range body {
		if _, ok := v.(string); !ok || !allowed[k] {
			bad("field %s = %v", k, v)
			return
		}
	}
	state, _ := body["state"].(string)
	known := false
	for _, st := range states {
		known = known || st == state
	}
	if !known {
		bad("state %q not one of %v", state, states)
		return
	}
	statusContext, _ := body[ctxField].(string)
	if statusContext == "" {
		bad("no %s", ctxField)
		return
	}
	desc, _ := body["description"].(string)
	if limit := map[string]int{"github": 140, "gitlab": 255, "gitea": 255}[s.kind]; len([]rune(desc)) > limit {
		bad("description of %d characters", len([]rune(desc)))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, StatusRequest{SHA: sha, Context: statusContext, State: state, Description: desc, At: time.Now()})
	if len(s.fails) > 0 {
		code := s.fails[0]
		s.fails = s.fails[1:]
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, `{"message":"try later"}`, code)
		return
	}
	w.WriteHeader(http.StatusCreated)
	fmt.Fprint(w, `{}`)
}

// Requests are the statuses received so far, failed attempts included.
func (s *StatusServer) Requests() []StatusRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StatusRequest(nil), s.got...)
}

// Wait waits up to limit until pred holds of what the server received.
func (s *StatusServer) Wait(t testing.TB, limit time.Duration, what string, pred func([]StatusRequest) bool) []StatusRequest {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := s.Requests()
		if pred(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out waiting for %s; got %+v", s.kind, what, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
