package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Provider is the Git host whose commit-status API is used.
type Provider string

const (
	GitHub Provider = "github"
	GitLab Provider = "gitlab"
	Gitea  Provider = "gitea" // also Forgejo, which keeps Gitea's API
)

// State is what gitopsd says of a revision of a stack on a host.
type State string

const (
	Running State = "running" // a roll runs (GitHub, Gitea: pending)
	Pending State = "pending" // held by the rollout
	Success State = "success" // Synced and Healthy
	Failure State = "failure" // rolled back, failed or Invalid
)

// Update is one status to set on a commit.
type Update struct {
	Stack       string
	SHA         string
	State       State
	Description string // the reason; truncated to the provider's limit
	TargetURL   string // optional link
}

// Config says where statuses go.
type Config struct {
	Provider Provider
	// URL is the API's base: https://api.github.com (GitHub Enterprise:
	// https://HOST/api/v3), https://HOST/api/v4 (GitLab), https://HOST
	// (Gitea, Forgejo). "": derived from SourceURL (api.github.com for
	// github.com).
	URL       string
	TokenFile string
	// SourceURL is the repository's URL (source.url): the owner and
	// repository, or GitLab's project path, come from it.
	SourceURL string
	Host      string // this host's name, in every context
	HTTP      *http.Client
	Log       *slog.Logger
	// MaxAttempts bounds the tries of one status (default 6); backoff
	// doubles from MinBackoff (default 1s) to 1m, or waits what
	// Retry-After says (at most 5m).
	MaxAttempts int
	MinBackoff  time.Duration
}

// Reporter sends commit statuses in the background, one context per host
// and stack (gitopsd/<host>/<stack>). Updates are coalesced per context
// and commit: while one is waiting or being retried, a newer one for the
// same context and commit replaces it, so only the latest state is sent,
// and a state equal to the last one sent is not sent again.
type Reporter struct {
	cfg  Config
	repo repoRef
	base string

	mu      sync.Mutex
	pending map[key]Update
	order   []key
	sent    map[key]Update
	wake    chan struct{}
}

type key struct{ context, sha string }

// Context is the status context of a host and a stack.
func Context(host, stack string) string { return "gitopsd/" + host + "/" + stack }

// New checks the configuration; the token is read at each send, so a
// rotated token file is used without a restart.
func New(cfg Config) (*Reporter, error) {
	switch cfg.Provider {
	case GitHub, GitLab, Gitea:
	default:
		return nil, fmt.Errorf("report.provider %q: want github, gitlab or gitea", cfg.Provider)
	}
	repo, err := parseRepo(cfg.SourceURL)
	if err != nil {
		return nil, fmt.Errorf("report: the repository from source.url: %w", err)
	}
	base := strings.TrimRight(cfg.URL, "/")
	if base == "" {
		base = defaultBase(cfg.Provider, repo)
	}
	if _, err := readToken(cfg.TokenFile); err != nil {
		return nil, err
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 6
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	return &Reporter{cfg: cfg, repo: repo, base: base, pending: map[key]Update{}, sent: map[key]Update{}, wake: make(chan struct{}, 1)}, nil
}

// Set queues u; it never blocks on the network.
func (r *Reporter) Set(u Update) {
	k := key{Context(r.cfg.Host, u.Stack), u.SHA}
	r.mu.Lock()
	if _, queued := r.pending[k]; !queued {
		r.order = append(r.order, k)
	}
	r.pending[k] = u
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run sends queued statuses until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	for {
		u, k, ok := r.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			}
			continue
		}
		if err := r.send(ctx, k, u); err != nil && ctx.Err() == nil {
			r.cfg.Log.Warn("commit status not sent", "stack", u.Stack, "revision", u.SHA, "state", string(u.State), "err", err)
		}
	}
}

func (r *Reporter) next() (Update, key, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.order) > 0 {
		k := r.order[0]
		r.order = r.order[1:]
		u, ok := r.pending[k]
		delete(r.pending, k)
		if ok && r.sent[k] != u {
			return u, k, true
		}
	}
	return Update{}, key{}, false
}

// newer takes a newer update queued for k while u was being retried.
func (r *Reporter) newer(k key) (Update, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.pending[k]
	if ok {
		delete(r.pending, k)
	}
	return u, ok
}

func (r *Reporter) send(ctx context.Context, k key, u Update) error {
	backoff := r.cfg.MinBackoff
	var err error
	for attempt := 1; attempt <= r.cfg.MaxAttempts; attempt++ {
		var wait time.Duration
		wait, err = r.post(ctx, k.context, u)
		if err == nil {
			r.mu.Lock()
			r.sent[k] = u
			r.mu.Unlock()
			r.cfg.Log.Debug("commit status sent", "stack", u.Stack, "revision", u.SHA, "state", string(u.State))
			return nil
		}
		if wait < 0 || attempt == r.cfg.MaxAttempts {
			break // not worth retrying
		}
		if wait == 0 {
			wait = backoff
			backoff = min(2*backoff, time.Minute)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if nu, ok := r.newer(k); ok {
			u = nu // only the latest state is worth sending
		}
	}
	return err
}

// post sends one status. wait is how long to wait before a retry: 0 the
// backoff's choice, > 0 the server's (Retry-After), < 0 no retry.
func (r *Reporter) post(ctx context.Context, statusContext string, u Update) (time.Duration, error) {
	token, err := readToken(r.cfg.TokenFile)
	if err != nil {
		return -1, err
	}
	endpoint, body, err := r.request(statusContext, u)
	if err != nil {
		return -1, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return -1, fmt.Errorf("status %s of %s: %w", statusContext, u.SHA, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gitopsd")
	switch r.cfg.Provider {
	case GitHub:
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
		req.Header.Set("Authorization", "Bearer "+token)
	case GitLab:
		req.Header.Set("PRIVATE-TOKEN", token)
	case Gitea:
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "token "+token)
	}
	resp, err := r.cfg.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("status %s of %s: POST %s: %w", statusContext, u.SHA, endpoint, err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	err = fmt.Errorf("status %s of %s: POST %s: HTTP %d: %s", statusContext, u.SHA, endpoint, resp.StatusCode, strings.Join(strings.Fields(strings.ReplaceAll(string(text), token, "[token]")), " "))
	retryAfter := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return retryAfter, err
	case resp.StatusCode == http.StatusForbidden && retryAfter > 0:
		return retryAfter, err // GitHub's secondary rate limit
	}
	return -1, err
}

// parseRetryAfter reads Retry-After (seconds or an HTTP date), at most 5m.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), 5*time.Minute)
}

func readToken(file string) (string, error) {
	if file == "" {
		return "", errors.New("report.token_file: required")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The path is named, never the content.
		return "", fmt.Errorf("report.token_file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("report.token_file %s: empty", file)
	}
	return t, nil
}

// Description limits: GitHub refuses more than 140 characters, GitLab
// stores 255; Gitea sets none, 255 keeps statuses readable there too.
func descriptionLimit(p Provider) int {
	if p == GitHub {
		return 140
	}
	return 255
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// request is the URL and JSON body of a status, in the provider's terms.
func (r *Reporter) request(statusContext string, u Update) (string, []byte, error) {
	desc := truncate(u.Description, descriptionLimit(r.cfg.Provider))
	sha := url.PathEscape(u.SHA)
	var endpoint string
	body := map[string]string{"description": desc}
	if u.TargetURL != "" {
		body["target_url"] = u.TargetURL
	}
	switch r.cfg.Provider {
	case GitHub, Gitea:
		prefix := ""
		if r.cfg.Provider == Gitea {
			prefix = "/api/v1"
		}
		if r.repo.owner == "" {
			return "", nil, fmt.Errorf("status %s: source.url %s names no owner/repository", statusContext, r.cfg.SourceURL)
		}
		endpoint = fmt.Sprintf("%s%s/repos/%s/%s/statuses/%s", r.base, prefix, url.PathEscape(r.repo.owner), url.PathEscape(r.repo.name), sha)
		body["context"] = statusContext
		body["state"] = string(u.State)
		if u.State == Running {
			body["state"] = string(Pending)
		}
	case GitLab:
		endpoint = fmt.Sprintf("%s/projects/%s/statuses/%s", r.base, url.PathEscape(r.repo.path()), sha)
		body["name"] = statusContext
		body["state"] = map[State]string{Running: "running", Pending: "pending", Success: "success", Failure: "failed"}[u.State]
	}
	if body["state"] == "" {
		return "", nil, fmt.Errorf("status %s: unknown state %q", statusContext, u.State)
	}
	b, err := json.Marshal(body)
	return endpoint, b, err
}
