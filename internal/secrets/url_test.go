package secrets

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://user:hunter2@git.example.com/ops/fleet.git", "https://user:REDACTED@git.example.com/ops/fleet.git"},
		{"https://ghp_abc123@github.com/ops/fleet.git", "https://REDACTED@github.com/ops/fleet.git"},
		{"ssh://git@git.example.com/ops/fleet.git", "ssh://git@git.example.com/ops/fleet.git"},
		{"https://hooks.slack.com/services/T0001/B0002/XXXXyyyyZZZZ", "https://hooks.slack.com/services/REDACTED/REDACTED/REDACTED"},
		{"https://discord.com/api/webhooks/123456/abcDEF-ghi", "https://discord.com/api/webhooks/REDACTED/REDACTED"},
		{"https://ntfy.example/topic?token=s3cr3t&priority=high", "https://ntfy.example/topic?token=REDACTED&priority=high"},
		{"https://x.example/a?access_token=1&X-Amz-Signature=2&api_key=3&sig=4", "https://x.example/a?access_token=REDACTED&X-Amz-Signature=REDACTED&api_key=REDACTED&sig=REDACTED"},
		{"slack://xoxb-1234-abcd@C0123", "slack://REDACTED@C0123"},
		{"slack://hook:T0001/B0002/XXXX@webhook", "slack://hook:REDACTED@webhook"},
		{"discord://tokenvalue@1234", "discord://REDACTED@1234"},
		{"smtp://mailer:pw@smtp.example:587/?from=a@b.c", "smtp://mailer:REDACTED@smtp.example:587/?from=a@b.c"},
		{"https://api.telegram.org/bot123456:AAE-secret/sendMessage", "https://api.telegram.org/botREDACTED/sendMessage"},
		{"https://gw.example/notify/Ab3dEf6hIj9kLm2nOp5q", "https://gw.example/notify/REDACTED"},
		// Not secrets: kept so a log still says what was reached.
		{"https://git.example.com/ops/fleet-2024-production-repo.git", "https://git.example.com/ops/fleet-2024-production-repo.git"},
		{"https://reg.example/v2/app/blobs/sha256:0123456789abcdef0123456789abcdef", "https://reg.example/v2/app/blobs/sha256:0123456789abcdef0123456789abcdef"},
		{"/srv/git/fleet.git", "/srv/git/fleet.git"},
	} {
		if got := RedactURL(c.in); got != c.want {
			t.Errorf("RedactURL(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestRedactURLsInText(t *testing.T) {
	in := `Post "http://127.0.0.1:8080/hooks/pathSECRET?token=SECRET": dial tcp: connection refused`
	got := RedactURLs(in)
	if strings.Contains(got, "SECRET") || !strings.Contains(got, "127.0.0.1:8080/hooks/REDACTED?token=REDACTED") {
		t.Fatalf("RedactURLs: %q", got)
	}
}

func TestURLHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(URLHandler(slog.NewTextHandler(&buf, nil)))
	log.With("url", "https://u:pw1@h/").Warn("send to https://h/x?key=pw2 failed",
		"err", errors.New(`Post "https://h/hooks/pw3": EOF`), "took", time.Second,
		slog.Group("g", "to", "slack://pw4@chan"))
	out := buf.String()
	for _, s := range []string{"pw1", "pw2", "pw3", "pw4"} {
		if strings.Contains(out, s) {
			t.Fatalf("%s logged: %s", s, out)
		}
	}
	if !strings.Contains(out, "took=1s") {
		t.Fatalf("a duration lost its kind: %s", out)
	}
}
