package daemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/source"
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

// TestContainerCannotRewriteItsCheckout (issue 15, hole 8): a service that
// binds its stack folder (`.:/repo`) gets it read-only whatever the file
// says, so its write to /repo/compose.yaml fails; and a checkout changed on
// disk while gitopsd was down is put back to the revision's tree at the
// next start, so the containers keep running what the revision says.
func TestContainerCannotRewriteItsCheckout(t *testing.T) {
	h := newHarness(t, nil)
	name := testenv.Project(t, "ckout")
	file := "stacks/" + name + "/compose.yaml"
	compose := simpleStack(h.image, "    environment:\n      VERSION: v1\n    volumes:\n      - .:/repo")
	head := h.repo.Commit(t, "binds its own folder", map[string]string{file: compose})
	h.mustReconcile()
	id := h.containers(name)["app#1"]
	checkout := filepath.Join(h.cfg.StateDir, "source", "checkouts", head, filepath.FromSlash(file))

	for _, m := range h.inspect(id).Mounts {
		if m.Destination == "/repo" && m.RW {
			t.Errorf("the bind of the stack folder is writable: %+v", m)
		}
	}
	ctx := context.Background()
	code, out, err := h.d.engine.Exec(ctx, id, []string{"/testapp", "write", "/repo/compose.yaml", "services: {app: {image: evil}}\n"})
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 || !strings.Contains(out, "read-only file system") {
		t.Fatalf("the container wrote into its checkout: exit %d: %s", code, out)
	}
	if b, err := os.ReadFile(checkout); err != nil || string(b) != compose {
		t.Fatalf("the checkout changed: %q, %v", b, err)
	}
	// The stack stays in sync: the read-only bind is what gitopsd wants.
	h.mustReconcile()
	if again := h.containers(name)["app#1"]; again != id {
		t.Fatalf("a second reconcile replaced the container: %s -> %s", id, again)
	}

	// Tampered with on disk while the daemon is down.
	h.stop()
	injected := strings.Replace(compose, "VERSION: v1", "VERSION: injected", 1)
	if err := os.WriteFile(checkout, []byte(injected), 0o644); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.mustReconcile()
	if again := h.containers(name)["app#1"]; again != id {
		t.Fatalf("the tampered checkout was deployed: %s -> %s", id, again)
	}
	if env := h.env(id); !slices.Contains(env, "VERSION=v1") {
		t.Fatalf("the container runs %q", env)
	}
	if b, err := os.ReadFile(checkout); err != nil || string(b) != compose {
		t.Fatalf("the checkout was not repaired: %q, %v", b, err)
	}
}

// TestOversizedFileMakesItsStackInvalid (issue 15, hole 5): a file over the
// checkout's limit per file makes its stack Invalid, naming the file; the
// stack keeps what it runs and another stack of the revision deploys.
func TestOversizedFileMakesItsStackInvalid(t *testing.T) {
	h := newHarness(t, nil)
	small, err := source.New(source.Options{URL: h.cfg.Source.URL, Branch: h.cfg.Source.Branch, Dir: filepath.Join(h.cfg.StateDir, "source"), MaxFileBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	h.d.source = small // the defaults are 64 MiB: a test's files are smaller
	big, ok := testenv.Project(t, "big"), testenv.Project(t, "ok")
	h.repo.Commit(t, "v1", map[string]string{
		"stacks/" + big + "/compose.yaml": simpleStack(h.image, "    environment:\n      VERSION: v1"),
		"stacks/" + ok + "/compose.yaml":  simpleStack(h.image, "    environment:\n      VERSION: v1"),
	})
	h.mustReconcile()
	id := h.containers(big)["app#1"]
	rev := h.repo.Commit(t, "v2 with a big file", map[string]string{
		"stacks/" + big + "/compose.yaml": simpleStack(h.image, "    environment:\n      VERSION: v2"),
		"stacks/" + big + "/blob.bin":     strings.Repeat("x", 8192),
		"stacks/" + ok + "/compose.yaml":  simpleStack(h.image, "    environment:\n      VERSION: v2"),
	})
	if err := h.reconcile(); err == nil {
		t.Fatal("a reconcile with an oversized file reported no error")
	}
	s := h.stackStatus(big)
	want := "stacks/" + big + "/blob.bin is 8 KiB, over the limit of 4 KiB per file: left out of the checkout"
	if s.Sync != "Invalid" || !strings.Contains(s.Error, want) {
		t.Fatalf("stack with the big file: sync %s error %q; want Invalid with %q", s.Sync, s.Error, want)
	}
	if again := h.containers(big)["app#1"]; again != id || !slices.Contains(h.env(id), "VERSION=v1") {
		t.Fatalf("the Invalid stack's container changed: %s -> %s", id, again)
	}
	if _, err := os.Stat(filepath.Join(h.cfg.StateDir, "source", "checkouts", rev, "stacks", big, "blob.bin")); !os.IsNotExist(err) {
		t.Fatalf("the big file was written: %v", err)
	}
	if s := h.stackStatus(ok); s.Sync != "Synced" || !slices.Contains(h.env(h.containers(ok)["app#1"]), "VERSION=v2") {
		t.Fatalf("the other stack: %+v", s)
	}
}

// TestReadOnlyBindAndDockerCompose: forcing a bind into the stack folder
// read-only does not set gitopsd and docker compose against each other:
// `docker compose up -d` in the stack's folder changes nothing (the config
// hash is of the file as written), and a container compose recreates with
// the bind writable is taken back to read-only at the next reconcile.
func TestReadOnlyBindAndDockerCompose(t *testing.T) {
	compose := testenv.ComposeV2(t)
	h := newHarness(t, nil)
	name := testenv.Project(t, "robind")
	h.repo.Commit(t, "binds its own folder", map[string]string{
		"stacks/" + name + "/compose.yaml": simpleStack(h.image, "    volumes:\n      - .:/repo"),
	})
	h.mustReconcile()
	before := h.containers(name)
	composeUp := func(args ...string) {
		t.Helper()
		cmd := exec.Command(compose[0], append(append(compose[1:], "-p", name, "up", "-d"), args...)...)
		// As from a shell that did cd there: PWD keeps the link's path,
		// which relative binds resolve against.
		cmd.Dir = filepath.Join(h.cfg.StateDir, "live", "stacks", name)
		cmd.Env = append(slices.DeleteFunc(composeEnv(), func(kv string) bool { return strings.HasPrefix(kv, "PWD=") }), "PWD="+cmd.Dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker compose up: %v\n%s", err, out)
		}
	}
	writable := func(id string) bool {
		t.Helper()
		for _, m := range h.inspect(id).Mounts {
			if m.Destination == "/repo" {
				return m.RW
			}
		}
		t.Fatalf("container %s does not mount /repo", id)
		return false
	}
	composeUp()
	if after := h.containers(name); !mapsEqual(before, after) {
		t.Fatalf("docker compose up changed gitopsd's containers: %v -> %v", before, after)
	}

	composeUp("--force-recreate")
	byCompose := h.containers(name)["app#1"]
	if byCompose == before["app#1"] || !writable(byCompose) {
		t.Fatalf("compose did not recreate the container with the bind writable (%s)", byCompose)
	}
	h.mustSyncNow()
	now := h.containers(name)["app#1"]
	if now == byCompose || writable(now) {
		t.Fatalf("the container compose made with a writable bind of the checkout was kept (%s -> %s)", byCompose, now)
	}
}
