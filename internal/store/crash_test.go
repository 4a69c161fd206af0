package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crashChildEnv names the database the child process of
// TestCrashKeepsCommitted works on; unset, TestCrashChild does nothing.
const crashChildEnv = "GITOPSD_STORE_CRASH_CHILD"

const crashCommitted = 3

// TestCrashKeepsCommitted runs this test binary as a child that commits some
// deployments, then opens a large write transaction (large enough that SQLite
// spills uncommitted pages into the WAL) and is killed with SIGKILL before
// committing it. Reopening must show every committed row, none of the
// uncommitted ones, and a sound database.
func TestCrashKeepsCommitted(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("in the child")
	}
	path := filepath.Join(t.TempDir(), "gitopsd.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			t.Fatalf("child ended before it was ready: %s", stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("child not ready after 60s: %s", stderr.String())
	}
	// The committed rows are only in the WAL at this point (the child never
	// checkpointed), and so are spilled pages of the open transaction: its
	// ~1 MB of steps cannot fit a two-page cache.
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() < 512<<10 {
		t.Fatalf("WAL before the kill: %v, %v; want uncommitted pages spilled into it", fi, err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child exit = %v, want killed", err)
	}

	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer s.Close()
	var check string
	if err := s.db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
	ds, err := s.Deployments(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != crashCommitted {
		t.Fatalf("%d deployments after the crash, want the %d committed", len(ds), crashCommitted)
	}
	for _, d := range ds {
		if d.Stack != "committed" || d.Outcome != "succeeded" || len(d.Steps) != 2 {
			t.Errorf("deployment after the crash: %+v", d)
		}
	}
	var n int
	s.db.QueryRow(`SELECT count(*) FROM deployment_steps`).Scan(&n)
	if n != 2*crashCommitted {
		t.Errorf("%d steps after the crash, want %d", n, 2*crashCommitted)
	}
	if st, ok, _ := s.Stack(ctx, "uncommitted"); ok {
		t.Errorf("uncommitted stack survived: %+v", st)
	}
}

// TestCrashChild is the child side of TestCrashKeepsCommitted.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("only run as the child of TestCrashKeepsCommitted")
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fail(err)
	}
	for i := range crashCommitted {
		id, err := s.StartDeployment(ctx, Deployment{Stack: "committed", Trigger: "poll", To: fmt.Sprint(i)})
		if err != nil {
			fail(err)
		}
		for range 2 {
			if _, err := s.AddStep(ctx, Step{DeploymentID: id, Action: "create"}); err != nil {
				fail(err)
			}
		}
		if err := s.FinishDeployment(ctx, id, "succeeded", "", time.Now()); err != nil {
			fail(err)
		}
	}

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		fail(err)
	}
	// A tiny page cache makes SQLite write uncommitted pages to the WAL
	// before the commit: the kill then leaves uncommitted frames behind.
	if _, err := tx.Exec("PRAGMA cache_size = 2"); err != nil {
		fail(err)
	}
	res, err := tx.Exec(`INSERT INTO deployments (stack, started_at, outcome) VALUES ('uncommitted', '2025-01-01T00:00:00.000000000Z', 'running')`)
	if err != nil {
		fail(err)
	}
	id, _ := res.LastInsertId()
	detail := strings.Repeat("x", 2000)
	for range 500 {
		if _, err := tx.Exec(`INSERT INTO deployment_steps (deployment_id, at, action, detail) VALUES (?, '2025-01-01T00:00:00.000000000Z', 'create', ?)`, id, detail); err != nil {
			fail(err)
		}
	}
	if _, err := tx.Exec(`UPDATE deployments SET outcome = 'rolled_back', error = 'uncommitted' WHERE stack = 'committed'`); err != nil {
		fail(err)
	}
	if _, err := tx.Exec(`INSERT INTO stacks (name) VALUES ('uncommitted')`); err != nil {
		fail(err)
	}
	fmt.Println("READY")
	time.Sleep(time.Hour) // until SIGKILL
}
