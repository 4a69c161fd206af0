package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/secrets"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestDecryptedSecretsAreRedacted: a stack whose SOPS-encrypted env file
// reaches a post_start hook that prints its environment and fails, and a
// stack whose healthcheck prints a SOPS-encrypted secret file and fails.
// Both failures are recorded, with the output that explains them, but no
// decrypted value is in status, history, the error a waiting client gets,
// the daemon's log, or the SQLite database and its WAL: each is
// [redacted]. A value shorter than secrets.MinRedactLen (PORT=5432) is
// left as it is.
func TestDecryptedSecretsAreRedacted(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Secrets.AgeKeyFile = secretFixture(t, "test.agekey")
	var logs lockedBuffer
	h.logTo = &logs
	h.stop()
	h.start() // again, with the key and the log
	hook, probe := testenv.Project(t, "redhook"), testenv.Project(t, "redprobe")
	c := runDaemon(t, h)
	// Committed once the daemon runs, so that the sync below, not the
	// reconcile at start, deploys it and a waiting client gets its error.
	h.repo.Commit(t, "a hook and a probe that print secrets", map[string]string{
		"stacks/" + hook + "/compose.yaml": simpleStack(h.image, `    env_file: secrets.env
    environment: {VERSION: v1-visible}
    post_start: [{command: ["/testapp", "env", "--exit", "3"]}]`),
		"stacks/" + hook + "/secrets.env": readFixture(t, "app.env"),
		"stacks/" + probe + "/compose.yaml": simpleStack(h.image, `    secrets: [sealed_token]
    healthcheck: {test: ["CMD", "/testapp", "check", "/run/secrets/sealed_token", "not-the-token"], interval: 300ms, timeout: 2s, retries: 2}
secrets:
  sealed_token: {file: ./token.bin}`),
		"stacks/" + probe + "/token.bin": readFixture(t, "token.bin"),
	})
	ctx := context.Background()
	syncErr := c.Sync(ctx, "", false, true)
	if syncErr == nil {
		t.Fatal("a sync whose hook and probe fail reported no error")
	}

	// The failures are recorded, with the output that explains them.
	status, err := c.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]api.StackStatus{}
	for _, s := range status.Stacks {
		byName[s.Name] = s
	}
	for name, wants := range map[string][]string{
		hook:  {`post_start hook: "/testapp env --exit 3" exited 3`, "VERSION=v1-visible", "DB_PASSWORD=" + secrets.Redacted, "API_TOKEN=" + secrets.Redacted, "PORT=5432"},
		probe: {"/run/secrets/sealed_token holds", secrets.Redacted},
	} {
		s, ok := byName[name]
		if !ok {
			t.Fatalf("stack %s is not in status", name)
		}
		if s.Sync != "Failed" {
			t.Errorf("stack %s: sync %s, want Failed", name, s.Sync)
		}
		for _, want := range wants {
			if !strings.Contains(s.Error, want) {
				t.Errorf("stack %s: status error lacks %q:\n%s", name, want, s.Error)
			}
		}
	}
	history := map[string][]api.Deployment{}
	for _, name := range []string{hook, probe} {
		if history[name], err = c.History(ctx, name, 0); err != nil {
			t.Fatal(err)
		}
		if len(history[name]) == 0 || history[name][len(history[name])-1].Outcome == "succeeded" {
			t.Errorf("history of %s does not record the failure: %+v", name, history[name])
		}
	}

	seen := map[string]string{
		"status":           mustJSON(t, status),
		"history":          mustJSON(t, history),
		"the sync's error": syncErr.Error(),
		"log":              logs.String(),
	}
	db := filepath.Join(h.cfg.StateDir, "gitopsd.db")
	for _, f := range []string{db, db + "-wal"} {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) && f != db {
			continue // checkpointed and gone: the database holds it all
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[filepath.Base(f)] = string(b)
	}
	if !strings.Contains(seen["log"], secrets.Redacted) {
		t.Errorf("the log does not show the redacted failure:\n%s", seen["log"])
	}
	for where, text := range seen {
		for _, secret := range []string{"s3cr3t=with equals and spaces", "s3cr3t", "tok_9f8e7d6c5b4a", "second line", "db.internal", "sealed-binary-secret"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds the decrypted value %q", where, secret)
			}
		}
	}
	t.Logf("searched %d outputs (%d bytes of log, %d of database) for 6 plaintexts; hook stack error: %s",
		len(seen), len(seen["log"]), len(seen["gitopsd.db"])+len(seen["gitopsd.db-wal"]), byName[hook].Error)
}
