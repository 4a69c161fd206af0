package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// serveDaemon runs the harness's daemon (API, metrics on a fresh port,
// request loop) until the returned stop is called or the test ends, so a
// test can stop it and start another over the same state.
func serveDaemon(t *testing.T, h *harness) (*api.Client, func()) {
	t.Helper()
	h.cfg.Source.Interval = time.Hour
	h.cfg.Metrics = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	h.d.watchLocal = false
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- h.d.Run(ctx, func() { close(ready) }) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}
	t.Cleanup(stop)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon stopped before it listened: %v", err)
	}
	return api.NewClient(h.cfg.Socket), stop
}

// TestReplayedSignedHeadIsRefused (issue 15, hole 7): with source.verify,
// a force-push of an older commit the allowed key signed is refused like an
// unsigned head: the applied revision keeps running, status, the log and
// the metrics say why, also after a restart; `rollback --to` the older
// commit still works; and with source.verify.allow_rewrite it applies.
func TestReplayedSignedHeadIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	key := testenv.NewSSHKey(t)
	h.cfg.Source.Verify.AllowedSigners = filepath.Join(t.TempDir(), "allowed_signers")
	testenv.WriteAllowedSigners(t, h.cfg.Source.Verify.AllowedSigners, key)
	var logs lockedBuffer
	h.logTo = &logs
	h.stop()
	h.start()
	name := testenv.Project(t, "replay")
	version := func(v string) map[string]string {
		return map[string]string{"stacks/" + name + "/compose.yaml": simpleStack(h.image, "    environment:\n      VERSION: "+v)}
	}
	c, stop := serveDaemon(t, h)
	ctx := context.Background()
	sync := func() {
		t.Helper()
		if err := c.Sync(ctx, "", false, true); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
	runs := func(v string) string {
		t.Helper()
		id := h.containers(name)["app#1"]
		if env := h.env(id); !slices.Contains(env, "VERSION="+v) {
			t.Fatalf("the stack does not run %s: %q", v, env)
		}
		return id
	}
	source := func() (head, why string) {
		t.Helper()
		st, err := c.Status(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		return st.Source.Head, st.Source.Error
	}

	a := h.repo.CommitSigned(t, key, "A", version("A"))
	sync()
	runs("A")
	b := h.repo.CommitSigned(t, key, "B", version("B"))
	sync()
	idB := runs("B")

	// The replay: A, signed by the allowed key, pushed back over B.
	h.repo.Git(t, "push", "-q", "-f", "origin", a+":main")
	why := fmt.Sprintf("head %s does not descend from the applied %s: refused, history rewritten? set source.verify.allow_rewrite to accept", a[:12], b[:12])
	refused := func(when string) {
		t.Helper()
		sync()
		if id := runs("B"); id != idB {
			t.Fatalf("%s: B's container was replaced", when)
		}
		if head, err := source(); head != b || err != why {
			t.Fatalf("%s: status source head %s error %q; want B kept and %q", when, head, err, why)
		}
		page := scrape(t, h.cfg.Metrics)
		if !strings.Contains(page, "gitopsd_source_head_trusted 0") || !strings.Contains(page, "gitopsd_source_untrusted_total 1") {
			t.Fatalf("%s: metrics do not say so:\n%s", when, grepLines(page, "gitopsd_source_"))
		}
		if !strings.Contains(logs.String(), "does not descend from the applied") {
			t.Fatalf("%s: the log does not say why:\n%s", when, logs.String())
		}
	}
	refused("replayed head")

	// The operator's way back to the older signed revision still works.
	if err := c.Rollback(ctx, name, a, false, true); err != nil {
		t.Fatalf("rollback --to A: %v", err)
	}
	runs("A")
	if err := c.Unpin(ctx, name, true); err != nil {
		t.Fatalf("unpin: %v", err)
	}
	idB = runs("B")

	// A restart remembers the applied head.
	stop()
	h.stop()
	logs = lockedBuffer{}
	h.start()
	c, stop = serveDaemon(t, h)
	refused("after a restart")

	// A repository that rewrites history on purpose says so.
	stop()
	h.stop()
	h.cfg.Source.Verify.AllowRewrite = true
	h.start()
	c, _ = serveDaemon(t, h)
	sync()
	runs("A")
	if head, err := source(); head != a || err != "" {
		t.Fatalf("with allow_rewrite: status source head %s error %q; want A applied", head, err)
	}
	if page := scrape(t, h.cfg.Metrics); !strings.Contains(page, "gitopsd_source_head_trusted 1") {
		t.Fatalf("with allow_rewrite: metrics\n%s", grepLines(page, "gitopsd_source_"))
	}
}
