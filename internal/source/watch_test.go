package source

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// watch runs WatchLocal on the repository's main branch until the test
// ends; each call sends on the returned channel.
func watch(t *testing.T, r *testenv.GitRepo) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	calls, done := make(chan struct{}, 100), make(chan error, 1)
	go func() {
		done <- WatchLocal(ctx, r.Bare, "main", slog.New(slog.NewTextHandler(io.Discard, nil)), func() { calls <- struct{}{} })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchLocal: %v", err)
		}
	})
	// The watch is in place once a write of the ref is seen.
	first := r.Commit(t, "v0", map[string]string{"a": "0"})
	for {
		updateRef(t, r, first)
		select {
		case <-calls:
			drain(calls, 2*watchSettle)
			return calls
		case <-time.After(time.Second):
		}
	}
}

// updateRef points main at sha the way git writes a ref: a lock file
// renamed over the ref.
func updateRef(t *testing.T, r *testenv.GitRepo, sha string) {
	t.Helper()
	if out, err := exec.Command("git", "-C", r.Bare, "update-ref", "refs/heads/main", sha).CombinedOutput(); err != nil {
		t.Fatalf("git update-ref: %v\n%s", err, out)
	}
}

// drain empties calls once none has come for quiet.
func drain(calls <-chan struct{}, quiet time.Duration) {
	for {
		select {
		case <-calls:
		case <-time.After(quiet):
			return
		}
	}
}

// TestWatchLocalPushedWithoutPause: a branch that moves again and again,
// with no pause as long as the settle time between its moves, is still
// announced while it moves, and its last move once more after it: the
// first change calls at once rather than when the burst has settled,
// which never comes.
func TestWatchLocalPushedWithoutPause(t *testing.T) {
	r := testenv.NewGitRepo(t)
	calls := watch(t, r)
	a := r.Commit(t, "a", map[string]string{"a": "a"})
	b := r.Commit(t, "b", map[string]string{"a": "b"})
	called := false
	for i := 0; i < 500 && !called; i++ {
		updateRef(t, r, []string{a, b}[i%2])
		select {
		case <-calls:
			called = true
		default:
		}
	}
	if !called {
		t.Fatal("500 moves of the branch without a pause called nothing while they went on")
	}
	drain(calls, 2*watchSettle)
	// Two moves (git writes nothing for a ref set to what it names).
	c := r.Commit(t, "c", map[string]string{"a": "c"})
	drain(calls, 2*watchSettle)
	updateRef(t, r, a)
	updateRef(t, r, c)
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("a push after a quiet time called nothing")
	}
	select {
	case <-calls: // the second move, within the settle time, at its end
	case <-time.After(10 * time.Second):
		t.Fatal("the last move of a burst was not announced after it")
	}
}
