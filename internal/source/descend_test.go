package source

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestCheckDescends: a head descends from an older head of its own branch;
// an ancestor pushed back over it, or a commit of another branch, does not.
func TestCheckDescends(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	a := repo.Commit(t, "a", map[string]string{"stacks/web/compose.yaml": "services: {}\n"})
	b := repo.Commit(t, "b", map[string]string{"stacks/web/compose.yaml": "services: {a: {image: x}}\n"})
	// side branches off a and is force-pushed over b, then b comes back:
	// the mirror keeps every commit it fetched.
	repo.Git(t, "checkout", "-q", "-b", "side", a)
	repo.Git(t, "commit", "-q", "--allow-empty", "-m", "side")
	side := repo.Git(t, "rev-parse", "HEAD")
	repo.Git(t, "push", "-q", "-f", "origin", "HEAD:main")
	s := newSource(t, Options{URL: repo.Bare})
	mustFetch(t, s)
	repo.Git(t, "push", "-q", "-f", "origin", b+":main")
	if head := mustFetch(t, s); head.SHA != b {
		t.Fatalf("head %s after pushing b back", head.SHA)
	}
	ctx := context.Background()

	for _, ok := range [][2]string{{b, a}, {b, b}, {a, a}} {
		if err := s.CheckDescends(ctx, ok[0], ok[1]); err != nil {
			t.Errorf("%s from %s: %v", ok[0][:7], ok[1][:7], err)
		}
	}
	for _, bad := range [][2]string{{a, b}, {side, b}} {
		err := s.CheckDescends(ctx, bad[0], bad[1])
		want := "head " + bad[0][:12] + " does not descend from the applied " + bad[1][:12] + ": refused, history rewritten? set source.verify.allow_rewrite to accept"
		if !errors.Is(err, ErrRewritten) || err.Error() != want {
			t.Errorf("%s from %s: %v; want %q", bad[0][:7], bad[1][:7], err, want)
		}
	}
	// The applied head is gone from the mirror (state kept, mirror made anew).
	gone := strings.Repeat("ab", 20)
	if err := s.CheckDescends(ctx, b, gone); !errors.Is(err, ErrRewritten) || !strings.Contains(err.Error(), "no longer in the repository") {
		t.Errorf("from a commit the mirror lacks: %v", err)
	}
}
