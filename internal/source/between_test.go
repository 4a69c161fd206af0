package source

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

func TestCommitsBetween(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	c1 := repo.Commit(t, "c1", map[string]string{"a": "1"})
	// A side branch off c1, merged into main after c2:
	//
	//	c1 - c2 ------ m   (main)
	//	  \           /
	//	   s1 ---- s2      (side)
	repo.Git(t, "checkout", "-q", "-b", "side")
	repo.Git(t, "commit", "-q", "--allow-empty", "-m", "s1")
	s1 := repo.Git(t, "rev-parse", "HEAD")
	repo.Git(t, "commit", "-q", "--allow-empty", "-m", "s2")
	s2 := repo.Git(t, "rev-parse", "HEAD")
	repo.Git(t, "checkout", "-q", "main")
	c2 := repo.Commit(t, "c2", map[string]string{"a": "2"})
	repo.Git(t, "merge", "-q", "--no-ff", "--no-edit", "side")
	repo.Git(t, "push", "-q", "origin", "HEAD:main")
	m := repo.Git(t, "rev-parse", "HEAD")

	s := newSource(t, Options{URL: repo.Bare})
	if _, err := s.CommitsBetween(context.Background(), c1, c2); err == nil {
		t.Fatal("CommitsBetween before the first fetch did not fail")
	}
	if head := mustFetch(t, s); head.SHA != m {
		t.Fatalf("head %s, want the merge %s", head.SHA, m)
	}
	// The commits are made within a second or two, so committer dates tie:
	// the walk must not depend on their order.
	for _, tc := range []struct {
		name     string
		from, to string
		want     int
	}{
		{"same revision", m, m, 0},
		{"linear", c1, c2, 1},
		{"behind the head", c2, c1, 0},
		{"to a merge from main", c2, m, 3},     // s1, s2, m
		{"to a merge from the base", c1, m, 4}, // c2, s1, s2, m
		{"to a merge from the side", s2, m, 2}, // c2, m
		{"from the side's middle", s1, m, 3},   // s2, c2, m
		{"diverged", s2, c2, 1},                // c2
		{"abbreviated", c1[:8], m[:10], 4},
	} {
		got, err := s.CommitsBetween(context.Background(), tc.from, tc.to)
		if err != nil || got != tc.want {
			t.Errorf("%s: CommitsBetween(%.8s, %.8s) = %d, %v; want %d", tc.name, tc.from, tc.to, got, err, tc.want)
		}
	}
	if _, err := s.CommitsBetween(context.Background(), strings.Repeat("0", 40), m); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("unknown revision: %v", err)
	}
}

// TestCommitsBetweenDoesNotWaitForTheMirrorLock: status counts commits
// while a fetch may hold the mirror for as long as the network hangs.
func TestCommitsBetweenDoesNotWaitForTheMirrorLock(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	c1 := repo.Commit(t, "c1", map[string]string{"a": "1"})
	c2 := repo.Commit(t, "c2", map[string]string{"a": "2"})
	s := newSource(t, Options{URL: repo.Bare})
	mustFetch(t, s)

	s.mu.Lock() // as a fetch in progress does
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		n, err := s.CommitsBetween(ctx, c1, c2)
		if err == nil && n != 1 {
			t.Errorf("CommitsBetween = %d, want 1", n)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("CommitsBetween waited for the lock a fetch holds")
	}
}

// TestCountBetweenTies walks histories whose committer dates tie (commits
// made within one second), so the walk may reach a commit from to's side
// before it learns that from has it too, and must uncount it.
func TestCountBetweenTies(t *testing.T) {
	at := func(sec int) time.Time { return time.Unix(1_700_000_000+int64(sec), 0) }
	for _, tc := range []struct {
		name  string
		dates map[string]int      // commit -> committer date
		edges map[string][]string // commit -> parents
		from  string
		to    string
		want  int
	}{
		{
			// to's parent a ties with from, whose parent it is too.
			name:  "shared parent ties with from",
			dates: map[string]int{"a": 5, "f": 5, "t": 10},
			edges: map[string][]string{"f": {"a"}, "t": {"a"}},
			from:  "f", to: "t", want: 1,
		},
		{
			name:  "everything ties",
			dates: map[string]int{"a": 1, "b": 1, "c": 1, "f": 1, "t": 1, "x": 1},
			edges: map[string][]string{"b": {"a"}, "c": {"b"}, "f": {"c"}, "x": {"b"}, "t": {"x", "f"}},
			from:  "f", to: "t", want: 2, // t, x
		},
		{
			// The shared history is long and ties with the counted commits.
			name:  "long shared tail",
			dates: map[string]int{"a": 3, "b": 3, "c": 3, "d": 3, "f": 3, "t": 3},
			edges: map[string][]string{"b": {"a"}, "c": {"b"}, "d": {"c"}, "f": {"d"}, "t": {"d"}},
			from:  "f", to: "t", want: 1,
		},
		{
			name:  "to is an ancestor of from",
			dates: map[string]int{"a": 2, "b": 2, "f": 2},
			edges: map[string][]string{"b": {"a"}, "f": {"b"}},
			from:  "f", to: "a", want: 0,
		},
	} {
		repo, commits := memoryHistory(t, tc.dates, tc.edges, at)
		got, err := countBetween(context.Background(), repo, commits[tc.from], commits[tc.to])
		if err != nil || got != tc.want {
			t.Errorf("%s: %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
}

// memoryHistory stores commits with the given dates and parents in an
// in-memory repository; parents must sort before their children.
func memoryHistory(t *testing.T, dates map[string]int, edges map[string][]string, at func(int) time.Time) (*git.Repository, map[string]*object.Commit) {
	t.Helper()
	repo, err := git.Init(memory.NewStorage(), nil)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(dates))
	for n := range dates {
		names = append(names, n)
	}
	// Parents first: a topological order of the small fixtures.
	slices.SortFunc(names, func(a, b string) int { return depth(a, edges) - depth(b, edges) })
	commits := map[string]*object.Commit{}
	for _, n := range names {
		sig := object.Signature{Name: "t", Email: "t@gitopsd.invalid", When: at(dates[n])}
		c := &object.Commit{Author: sig, Committer: sig, Message: n, TreeHash: plumbing.ZeroHash}
		for _, p := range edges[n] {
			c.ParentHashes = append(c.ParentHashes, commits[p].Hash)
		}
		obj := repo.Storer.NewEncodedObject()
		if err := c.Encode(obj); err != nil {
			t.Fatal(err)
		}
		h, err := repo.Storer.SetEncodedObject(obj)
		if err != nil {
			t.Fatal(err)
		}
		if commits[n], err = repo.CommitObject(h); err != nil {
			t.Fatal(err)
		}
	}
	return repo, commits
}

func depth(n string, edges map[string][]string) int {
	d := 0
	for _, p := range edges[n] {
		d = max(d, 1+depth(p, edges))
	}
	return d
}
