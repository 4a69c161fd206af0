package source

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestPruneConsolidatesPacks: every fetch writes a packfile; past maxPacks
// Prune packs them into one, keeping every object: a revision the branch
// lost to a force push still checks out (a pinned stack or a rollback may
// ask for it), and so does the head.
func TestPruneConsolidatesPacks(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	s := newSource(t, Options{URL: repo.Bare})
	first := repo.Commit(t, "v0", map[string]string{"stacks/web/compose.yaml": "services: {} # 0\n"})
	mustFetch(t, s)
	var last string
	for i := 1; i <= maxPacks+1; i++ {
		last = repo.Commit(t, "v", map[string]string{"stacks/web/compose.yaml": fmt.Sprintf("services: {} # %d\n", i)})
		mustFetch(t, s)
	}
	packs := func() []string {
		t.Helper()
		found, err := filepath.Glob(filepath.Join(s.opts.Dir, mirrorName, "objects", "pack", "*.pack"))
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	if n := len(packs()); n <= maxPacks {
		t.Fatalf("want more than %d packfiles before the prune, found %d", maxPacks, n)
	}
	// As if someone force-pushed main back to the first commit.
	if out, err := exec.Command("git", "-C", repo.Bare, "update-ref", "refs/heads/main", first).CombinedOutput(); err != nil {
		t.Fatalf("git update-ref: %v\n%s", err, out)
	}
	if rev := mustFetch(t, s); rev.SHA != first {
		t.Fatalf("head after the force push %s, want %s", rev.SHA, first)
	}
	if err := s.Prune(); err != nil {
		t.Fatalf("prune: %v", err)
	}
	if got := packs(); len(got) != 1 {
		t.Fatalf("after the prune %d packfiles, want 1: %v", len(got), got)
	}
	// The deleted packs are closed too, or they stay on disk while the
	// daemon runs.
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasSuffix(target, ".pack (deleted)") {
			t.Fatalf("a deleted packfile is still open: %s", target)
		}
	}
	// The mirror goes on fetching into the merged pack's company.
	next := repo.Commit(t, "after", map[string]string{"stacks/web/compose.yaml": "services: {} # after\n"})
	if rev := mustFetch(t, s); rev.SHA != next {
		t.Fatalf("head after the merge %s, want %s", rev.SHA, next)
	}
	for rev, want := range map[string]string{last: fmt.Sprintf("services: {} # %d\n", maxPacks+1), first: "services: {} # 0\n", next: "services: {} # after\n"} {
		dir, err := s.Checkout(context.Background(), rev)
		if err != nil {
			t.Fatalf("checkout %s after the packs were merged: %v", rev, err)
		}
		if got, err := os.ReadFile(filepath.Join(dir, "stacks/web/compose.yaml")); err != nil || string(got) != want {
			t.Fatalf("checkout %s: %q, %v; want %q", rev, got, err, want)
		}
	}
}
