package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// versionStack is one service whose VERSION the caller chooses.
func versionStack(image, version string) string {
	return fmt.Sprintf(`services:
  app:
    image: %[1]s
    pull_policy: never
    environment: {VERSION: %[2]q}
    deploy:
      update_config:
        monitor: 1s
    labels:
      %[3]s: "1"
`+testenv.LabelledDefault(), image, version, testenv.TestLabel)
}

// TestEmptyRecordHoldsUntilAdopt: the database comes back empty (0 bytes,
// no WAL) while the stack this gitopsd deployed runs, and the branch has
// moved meanwhile. The daemon touches nothing: its reconcile refuses,
// naming `state adopt`, the container stays as it was, and status says why.
// `gitopsd state adopt` (through the socket) then lets it converge.
func TestEmptyRecordHoldsUntilAdopt(t *testing.T) {
	h := newHarness(t, nil)
	name := testenv.Project(t, "lost")
	file := "stacks/" + name + "/compose.yaml"
	h.repo.Commit(t, "v1", map[string]string{file: versionStack(h.image, "v1")})
	h.mustReconcile()
	v1 := h.containers(name)["app#1"]
	if v1 == "" {
		t.Fatalf("v1 did not deploy: %v", h.containers(name))
	}
	started := h.inspect(v1).State.StartedAt
	h.repo.Commit(t, "v2", map[string]string{file: versionStack(h.image, "v2")})

	h.stop()
	db := h.cfg.StateDir + "/gitopsd.db"
	if err := os.Truncate(db, 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{db + "-wal", db + "-shm"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	h.start()
	api := runDaemon(t, h)
	ctx := context.Background()
	err := api.Sync(ctx, "", false, true)
	if err == nil || !strings.Contains(err.Error(), "gitopsd state adopt") {
		t.Fatalf("sync with a lost record: %v; want a refusal naming `gitopsd state adopt`", err)
	}
	if got := h.containers(name); len(got) != 1 || got["app#1"] != v1 {
		t.Fatalf("a daemon with a lost record touched the stack: %v, want only %s", got, v1)
	}
	if st := h.inspect(v1).State; !st.Running || st.StartedAt != started {
		t.Fatalf("the v1 container was restarted or stopped: %+v", st)
	}
	st, err := api.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Hold, "gitopsd state adopt") || !strings.Contains(st.Hold, name) || !strings.Contains(st.Hold, db) {
		t.Fatalf("status hold = %q; want it to name the database, the stack and `gitopsd state adopt`", st.Hold)
	}

	if err := api.StateAdopt(ctx, true); err != nil {
		t.Fatalf("state adopt: %v", err)
	}
	got := h.containers(name)
	if len(got) != 1 || !slices.Contains(h.env(got["app#1"]), "VERSION=v2") {
		t.Fatalf("after adopt the stack did not converge to v2: %v", got)
	}
	if st, err := api.Status(ctx, ""); err != nil || st.Hold != "" || len(st.Stacks) != 1 || st.Stacks[0].Sync != "Synced" {
		t.Fatalf("status after adopt: %+v, %v", st, err)
	}
}

// TestDamagedRecordRefusesStart: a database with a damaged page stops the
// start with an error that names the file and both ways out (restore a
// state backup, or reset and adopt).
func TestDamagedRecordRefusesStart(t *testing.T) {
	h := newHarness(t, nil)
	name := testenv.Project(t, "damaged")
	h.repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": versionStack(h.image, "v1")})
	h.mustReconcile()
	h.stop()
	db := h.cfg.StateDir + "/gitopsd.db"
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	if len(b) < 3*page {
		t.Fatalf("database of %d bytes: want a few pages to damage", len(b))
	}
	for i := 2 * page; i < 3*page; i++ { // page 3: a table's b-tree
		b[i] = 0xA5
	}
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := New(context.Background(), h.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		d.Close()
		t.Fatal("a daemon started on a damaged database")
	}
	for _, want := range []string{db, "malformed", "gitopsd state backup", db + "-wal", "gitopsd state adopt"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start error lacks %q:\n%v", want, err)
		}
	}
}
