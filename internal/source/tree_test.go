package source

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

func TestSameTree(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	c1 := repo.Commit(t, "c1", map[string]string{"stacks/a/compose.yaml": "a1", "stacks/b/compose.yaml": "b1"})
	c2 := repo.Commit(t, "b changes", map[string]string{"stacks/b/compose.yaml": "b2"})
	c3 := repo.Commit(t, "a changes", map[string]string{"stacks/a/.env": "X=1"})
	c4 := repo.Commit(t, "a goes", nil, "stacks/a/compose.yaml", "stacks/a/.env")
	s := newSource(t, Options{URL: repo.Bare})
	ctx := context.Background()
	if _, err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		a, b, path string
		same       bool
	}{
		{c1, c2, "stacks/a", true},
		{c1, c2, "stacks/b", false},
		{c2, c3, "stacks/a", false}, // a new file in the folder counts
		{c3, c4, "stacks/a", false},
		{c4, c4, "stacks/a", true},
		{c1, c4, "stacks/none", true}, // absent from both
	}
	for _, c := range cases {
		same, err := s.SameTree(ctx, c.a, c.b, c.path)
		if err != nil || same != c.same {
			t.Errorf("SameTree(%.7s, %.7s, %s) = %v, %v; want %v", c.a, c.b, c.path, same, err, c.same)
		}
	}
	if _, err := s.SameTree(ctx, c1, "0000000000000000000000000000000000000000", "stacks/a"); err == nil {
		t.Error("an unknown revision should be an error")
	}
}

// TestFolderTree: a checkout's folder is named by its tree hash, the same
// for revisions that leave it alone; a folder the hash would not describe
// (outside the checkouts, or with files left out for their size) has none.
func TestFolderTree(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	c1 := repo.Commit(t, "c1", map[string]string{"stacks/a/compose.yaml": "a1", "stacks/b/compose.yaml": "b1"})
	c2 := repo.Commit(t, "b changes", map[string]string{"stacks/b/.env": "X=1", "stacks/c/big": strings.Repeat("x", 2048)})
	s := newSource(t, Options{URL: repo.Bare, MaxFileBytes: 1024})
	ctx := context.Background()
	if _, err := s.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	tree := func(rev, folder string) (string, error) {
		dir, err := s.Checkout(ctx, rev)
		if err != nil {
			t.Fatal(err)
		}
		real, err := filepath.EvalSymlinks(filepath.Join(dir, folder))
		if err != nil {
			t.Fatal(err)
		}
		return s.FolderTree(ctx, real)
	}
	a1, err1 := tree(c1, "stacks/a")
	a2, err2 := tree(c2, "stacks/a")
	if err1 != nil || err2 != nil || a1 != a2 || len(a1) != 40 {
		t.Errorf("stacks/a, unchanged: trees %q, %q (%v, %v); want one hash", a1, a2, err1, err2)
	}
	b1, err1 := tree(c1, "stacks/b")
	b2, err2 := tree(c2, "stacks/b")
	if err1 != nil || err2 != nil || b1 == b2 {
		t.Errorf("stacks/b, changed: trees %q, %q (%v, %v); want two hashes", b1, b2, err1, err2)
	}
	if h, err := tree(c2, "stacks/c"); err == nil {
		t.Errorf("stacks/c, a file left out: tree %q, want an error", h)
	}
	if h, err := s.FolderTree(ctx, t.TempDir()); err == nil {
		t.Errorf("a folder outside the checkouts: tree %q, want an error", h)
	}
	// A fetch holds the mirror while the server answers: the drift check's
	// loads must not wait for it.
	dir, err := s.Checkout(ctx, c1)
	if err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(dir, "stacks/a"))
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	h, err := s.FolderTree(ctx, real)
	s.mu.Unlock()
	if err == nil {
		t.Errorf("while a fetch holds the mirror: tree %q, want an error at once", h)
	}
}
