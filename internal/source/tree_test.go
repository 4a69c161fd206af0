package source

import (
	"context"
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
