package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

func TestWebhookChecksEveryForge(t *testing.T) {
	var triggered []string
	srv := httptest.NewServer(Handler([]byte("s3cret"), "main", func(src string) { triggered = append(triggered, src) }, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	push := `{"ref":"refs/heads/main"}`
	other := `{"ref":"refs/heads/feature"}`
	for _, tc := range []struct {
		name    string
		path    string
		body    string
		headers map[string]string
		code    int
		trigger string
	}{
		{"github push", "/webhook", push, map[string]string{"X-Hub-Signature-256": "sha256=" + sign("s3cret", push), "X-GitHub-Event": "push"}, 202, "github"},
		{"github wrong secret", "/webhook", push, map[string]string{"X-Hub-Signature-256": "sha256=" + sign("other", push), "X-GitHub-Event": "push"}, 401, ""},
		{"github signature of another body", "/webhook", push, map[string]string{"X-Hub-Signature-256": "sha256=" + sign("s3cret", other), "X-GitHub-Event": "push"}, 401, ""},
		{"github ping", "/webhook", `{}`, map[string]string{"X-Hub-Signature-256": "sha256=" + sign("s3cret", `{}`), "X-GitHub-Event": "ping"}, 200, ""},
		{"github push to another branch", "/webhook", other, map[string]string{"X-Hub-Signature-256": "sha256=" + sign("s3cret", other), "X-GitHub-Event": "push"}, 200, ""},
		{"gitlab push", "/webhook", push, map[string]string{"X-Gitlab-Token": "s3cret", "X-Gitlab-Event": "Push Hook"}, 202, "gitlab"},
		{"gitlab wrong token", "/webhook", push, map[string]string{"X-Gitlab-Token": "nope", "X-Gitlab-Event": "Push Hook"}, 401, ""},
		{"gitea push", "/webhook", push, map[string]string{"X-Gitea-Signature": sign("s3cret", push), "X-Gitea-Event": "push"}, 202, "gitea"},
		{"forgejo push", "/webhook", push, map[string]string{"X-Forgejo-Signature": sign("s3cret", push), "X-Forgejo-Event": "push"}, 202, "forgejo"},
		{"forgejo bad signature", "/webhook", push, map[string]string{"X-Forgejo-Signature": "zz", "X-Forgejo-Event": "push"}, 401, ""},
		{"unsigned", "/webhook", push, nil, 401, ""},
		{"bearer sync", "/sync", "", map[string]string{"Authorization": "Bearer s3cret"}, 202, "sync"},
		{"bad bearer", "/sync", "", map[string]string{"Authorization": "Bearer s3cre"}, 401, ""},
		{"body too large", "/webhook", strings.Repeat("x", MaxBody+1), map[string]string{"X-Gitlab-Token": "s3cret"}, 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			triggered = nil
			req, _ := http.NewRequest(http.MethodPost, srv.URL+tc.path, strings.NewReader(tc.body))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if (tc.trigger == "") != (len(triggered) == 0) || (tc.trigger != "" && triggered[0] != tc.trigger) {
				t.Fatalf("triggered %v, want %q", triggered, tc.trigger)
			}
		})
	}
}
