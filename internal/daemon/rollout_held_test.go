package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/sync"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestHeldStackKeepsItsFilesAndIsHealed: a stack the fleet's rollout
// holds (a later wave of a time stagger whose soak does not end in the
// test) keeps the files of the revision it runs in the live view, so a
// restarted container re-reads its own bind-mounted config, not the held
// revision's; a stopped container is healed while held, at polls and on
// the look an event asks for; the live view stays on its files at the
// next commit and after a restart of the daemon; the operator's skip-wave
// moves it to the head's files.
func TestHeldStackKeepsItsFilesAndIsHealed(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	name := testenv.Project(t, "held")
	dir := "stacks/" + name + "/"
	fleetFile := "rollout:\n  waves:\n    - {name: canary, hosts: {names: [nobody]}}\n    - {name: rest}\n  soak: 1000h\n"
	compose := simpleStack(h.image, "    volumes:\n      - ./app.conf:/etc/app.conf:ro")
	h.repo.Commit(t, "v1", map[string]string{dir + "compose.yaml": compose, dir + "app.conf": "conf-v1\n"})
	h.mustReconcile() // no rollout yet: v1 goes in at once
	through := func() string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(h.cfg.StateDir, "live", "stacks", name, "app.conf"))
		if err != nil {
			t.Fatalf("read app.conf through the live view: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	// inContainer is app.conf as the container reads it, once its app
	// answers (it may have just started).
	inContainer := func(id string) string {
		t.Helper()
		var out string
		waitFor30s(t, "answer from the app in "+id[:12], func() bool {
			code, got, err := h.d.engine.Exec(ctx, id, []string{"/testapp", "get", "http://127.0.0.1:8080/file?path=/etc/app.conf"})
			out = strings.TrimSpace(got)
			return err == nil && code == 0
		})
		return out
	}
	restart := func(id string) {
		t.Helper()
		if _, err := h.docker.ContainerRestart(ctx, id, client.ContainerRestartOptions{}); err != nil {
			t.Fatalf("docker restart: %v", err)
		}
	}
	id := h.containers(name)["app#1"]
	if got := inContainer(id); got != "conf-v1" {
		t.Fatalf("v1 runs with app.conf %q", got)
	}

	// v2 brings the rollout, in which this host is in the later wave.
	c2 := h.repo.Commit(t, "v2 of the config", map[string]string{"fleet.yaml": fleetFile, dir + "app.conf": "conf-v2\n"})
	h.mustReconcile()
	s := h.stackStatus(name)
	if !strings.HasPrefix(s.Hold, "held by rollout") || s.Target != c2 {
		t.Fatalf("v2 not held by the rollout: %+v", s)
	}
	if got := through(); got != "conf-v1" {
		t.Fatalf("while v2 is held the live view shows app.conf %q, want the running revision's", got)
	}
	restart(id)
	if got := inContainer(id); got != "conf-v1" {
		t.Fatalf("a container of the held stack restarted and read app.conf %q", got)
	}

	// A stopped container is healed while held: on the look an event asks
	// for, and at a poll.
	stopped := func() {
		t.Helper()
		if _, err := h.docker.ContainerStop(ctx, h.containers(name)["app#1"], client.ContainerStopOptions{}); err != nil {
			t.Fatalf("docker stop: %v", err)
		}
	}
	running := func(how string) {
		t.Helper()
		id := h.containers(name)["app#1"]
		res, err := h.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil || !res.Container.State.Running {
			t.Fatalf("%s: the stopped container of the held stack was not healed (%v)", how, err)
		}
		if got := inContainer(id); got != "conf-v1" {
			t.Fatalf("%s: the healed container reads app.conf %q", how, got)
		}
	}
	stopped()
	if err := h.d.checkStack(ctx, name, false); err != nil {
		t.Fatalf("drift check of the held stack: %v", err)
	}
	running("event")
	stopped()
	h.mustReconcile()
	running("poll")
	if s := h.stackStatus(name); !strings.HasPrefix(s.Hold, "held by rollout") {
		t.Fatalf("the heal ended the hold: %+v", s)
	}

	// Another commit, with a stack held by a daemon that was gated since
	// the rollout was read, and after a restart, which knows no rollout
	// until its first poll has read it.
	c3 := h.repo.Commit(t, "v3, elsewhere", map[string]string{"README.md": "v3\n"})
	h.mustReconcile()
	if got := through(); got != "conf-v1" {
		t.Fatalf("at the next commit, the held stack's live view shows app.conf %q", got)
	}
	h.stop()
	h.start()
	h.mustReconcile()
	if got := through(); got != "conf-v1" {
		t.Fatalf("after a restart, the held stack's live view shows app.conf %q", got)
	}
	if s := h.stackStatus(name); !strings.HasPrefix(s.Hold, "held by rollout") || s.Target != c3 {
		t.Fatalf("after a restart v3 is not held: %+v", s)
	}

	// The operator lets v3 (and so v2's config) through: its files, for the stack and its containers.
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := h.d.reconcile(waitCtx, sync.TriggerSkipWave, name); err != nil {
		t.Fatalf("skip-wave of v2: %v", err)
	}
	if s := h.stackStatus(name); s.Revision != c3 || s.Hold != "" {
		t.Fatalf("after skip-wave: %+v", s)
	}
	if got := through(); got != "conf-v2" {
		t.Fatalf("after skip-wave the live view shows app.conf %q", got)
	}
	id = h.containers(name)["app#1"]
	restart(id)
	if got := inContainer(id); got != "conf-v2" {
		t.Fatalf("after skip-wave a restarted container reads app.conf %q", got)
	}
}
