package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

func newSource(t testing.TB, opts Options) *Source {
	t.Helper()
	if opts.Branch == "" {
		opts.Branch = "main"
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", opts, err)
	}
	return s
}

func mustFetch(t testing.TB, s *Source) Revision {
	t.Helper()
	rev, err := s.Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return rev
}

func TestFetchLocalPath(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	first := repo.Commit(t, "first commit\n\nwith a body", map[string]string{"stacks/web/compose.yaml": "services: {}\n"})

	s := newSource(t, Options{URL: repo.Bare})
	rev := mustFetch(t, s)
	if rev.SHA != first {
		t.Fatalf("head = %s, want %s", rev.SHA, first)
	}
	if rev.Message != "first commit" {
		t.Errorf("message = %q, want the first line only", rev.Message)
	}
	if rev.Author != "gitopsd test" {
		t.Errorf("author = %q", rev.Author)
	}
	if rev.Time.IsZero() || time.Since(rev.Time) > time.Hour {
		t.Errorf("time = %v, want about now", rev.Time)
	}
	if p, ok := s.LocalPath(); !ok || p != repo.Bare {
		t.Errorf("LocalPath = %q, %v; want %q, true", p, ok, repo.Bare)
	}

	second := repo.Commit(t, "second", map[string]string{"stacks/web/compose.yaml": "services: {a: {image: x}}\n"})
	if rev := mustFetch(t, s); rev.SHA != second {
		t.Fatalf("after a new commit head = %s, want %s", rev.SHA, second)
	}
	// Nothing new: go-git's NoErrAlreadyUpToDate is success.
	if rev := mustFetch(t, s); rev.SHA != second {
		t.Fatalf("fetch with nothing new: head = %s, want %s", rev.SHA, second)
	}
	// A fresh Source on the same folder reuses the mirror.
	if rev := mustFetch(t, newSource(t, Options{URL: repo.Bare, Dir: s.opts.Dir})); rev.SHA != second {
		t.Fatalf("reopened mirror: head = %s, want %s", rev.SHA, second)
	}
}

func TestFetchRelativePath(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	head := repo.Commit(t, "one", map[string]string{"a": "1"})
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, repo.Bare)
	if err != nil {
		t.Fatal(err)
	}
	s := newSource(t, Options{URL: rel})
	if rev := mustFetch(t, s); rev.SHA != head {
		t.Fatalf("head = %s, want %s", rev.SHA, head)
	}
	if p, ok := s.LocalPath(); !ok || p != repo.Bare {
		t.Errorf("LocalPath = %q, %v; want %q, true", p, ok, repo.Bare)
	}
}

func TestFetchFileURL(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	head := repo.Commit(t, "one", map[string]string{"a": "1"})
	s := newSource(t, Options{URL: "file://" + repo.Bare})
	if rev := mustFetch(t, s); rev.SHA != head {
		t.Fatalf("head = %s, want %s", rev.SHA, head)
	}
	if p, ok := s.LocalPath(); !ok || p != repo.Bare {
		t.Errorf("LocalPath = %q, %v; want %q, true", p, ok, repo.Bare)
	}
}

func TestFetchHTTP(t *testing.T) {
	const token = "tok-3f9a7c1e5b2d"
	repo := testenv.NewGitRepo(t)
	head := repo.Commit(t, "one", map[string]string{"a": "1"})
	url := repo.ServeHTTP(t, token)

	writeToken := func(t *testing.T, content string) string {
		p := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("token file", func(t *testing.T) {
		s := newSource(t, Options{URL: url, Auth: Auth{TokenFile: writeToken(t, "  "+token+"\n")}})
		if rev := mustFetch(t, s); rev.SHA != head {
			t.Fatalf("head = %s, want %s", rev.SHA, head)
		}
		if _, ok := s.LocalPath(); ok {
			t.Error("LocalPath reports an HTTP URL as local")
		}
		next := repo.Commit(t, "two", map[string]string{"a": "2"})
		if rev := mustFetch(t, s); rev.SHA != next {
			t.Fatalf("head = %s, want %s", rev.SHA, next)
		}
	})

	t.Run("credentials in URL", func(t *testing.T) {
		withCreds := strings.Replace(url, "http://", "http://someone:"+token+"@", 1)
		s := newSource(t, Options{URL: withCreds})
		mustFetch(t, s)
		if cfg, err := s.repo.Config(); err != nil {
			t.Fatal(err)
		} else if u := cfg.Remotes["origin"].URLs[0]; strings.Contains(u, token) {
			t.Errorf("mirror config holds the password: %s", u)
		}
	})

	t.Run("no token", func(t *testing.T) {
		_, err := newSource(t, Options{URL: url}).Fetch(context.Background())
		if err == nil {
			t.Fatal("fetch without a token succeeded")
		}
		if !strings.Contains(err.Error(), "authentication required") {
			t.Errorf("error does not say authentication is required: %v", err)
		}
		t.Log(err)
	})

	t.Run("wrong token", func(t *testing.T) {
		const wrong = "wrong-token-8d1c"
		_, err := newSource(t, Options{URL: url, Auth: Auth{TokenFile: writeToken(t, wrong)}}).Fetch(context.Background())
		if err == nil {
			t.Fatal("fetch with a wrong token succeeded")
		}
		if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), token) {
			t.Errorf("error leaks a token: %v", err)
		}
		if !strings.Contains(err.Error(), "rejected") {
			t.Errorf("error does not say the token was rejected: %v", err)
		}
		t.Log(err)
	})

	t.Run("wrong password in URL", func(t *testing.T) {
		const wrong = "hunter2-secret"
		withCreds := strings.Replace(url, "http://", "http://someone:"+wrong+"@", 1)
		_, err := newSource(t, Options{URL: withCreds}).Fetch(context.Background())
		if err == nil {
			t.Fatal("fetch with a wrong password succeeded")
		}
		if strings.Contains(err.Error(), wrong) {
			t.Errorf("error leaks the password: %v", err)
		}
		if !strings.Contains(err.Error(), "someone:REDACTED@") {
			t.Errorf("error does not name the redacted URL: %v", err)
		}
	})

	t.Run("empty token file", func(t *testing.T) {
		_, err := newSource(t, Options{URL: url, Auth: Auth{TokenFile: writeToken(t, " \n")}}).Fetch(context.Background())
		if err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Fatalf("err = %v, want an empty token file error", err)
		}
	})
}

func TestUnknownBranch(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	repo.Commit(t, "one", map[string]string{"a": "1"})
	s := newSource(t, Options{URL: repo.Bare, Branch: "nope"})
	_, err := s.Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), `branch "nope" not found`) {
		t.Fatalf("err = %v, want branch \"nope\" not found", err)
	}
	left, _ := filepath.Glob(filepath.Join(s.opts.Dir, "*"))
	left2, _ := filepath.Glob(filepath.Join(s.opts.Dir, ".*"))
	if len(left)+len(left2) != 0 {
		t.Errorf("failed clone left %v %v", left, left2)
	}
}

func TestEmptyRepository(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	_, err := newSource(t, Options{URL: repo.Bare}).Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), `branch "main" not found`) {
		t.Fatalf("err = %v, want branch not found", err)
	}
}

func TestLeftoverCloneTempDir(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	head := repo.Commit(t, "one", map[string]string{"a": "1"})
	dir := t.TempDir()
	// What a kill -9 in the middle of the first clone leaves behind.
	crashed := filepath.Join(dir, ".mirror-tmp-123456")
	for name, content := range map[string]string{"HEAD": "ref: refs/heads/main\n", "config": "[core]\n\tbare = true\n", "objects/pack/tmp_pack_x": "garbage"} {
		p := filepath.Join(crashed, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := newSource(t, Options{URL: repo.Bare, Dir: dir})
	if rev := mustFetch(t, s); rev.SHA != head {
		t.Fatalf("head = %s, want %s", rev.SHA, head)
	}
	if _, err := os.Stat(crashed); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover temp clone still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "mirror", "HEAD")); err != nil {
		t.Errorf("mirror missing: %v", err)
	}
}

func TestRemoteChanged(t *testing.T) {
	a := testenv.NewGitRepo(t)
	headA := a.Commit(t, "in a", map[string]string{"a": "1"})
	b := testenv.NewGitRepo(t)
	headB := b.Commit(t, "in b", map[string]string{"b": "1"})
	dir := t.TempDir()

	if rev := mustFetch(t, newSource(t, Options{URL: a.Bare, Dir: dir})); rev.SHA != headA {
		t.Fatalf("head = %s, want %s", rev.SHA, headA)
	}
	s := newSource(t, Options{URL: b.Bare, Dir: dir})
	if rev := mustFetch(t, s); rev.SHA != headB {
		t.Fatalf("after the URL changed head = %s, want %s", rev.SHA, headB)
	}
	cfg, err := s.repo.Config()
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Remotes["origin"].URLs; !slices.Equal(got, []string{b.Bare}) {
		t.Errorf("origin URLs = %v, want %s", got, b.Bare)
	}

	// A new branch on b, made without a push so the test needs no git CLI.
	bare, err := git.PlainOpen(b.Bare)
	if err != nil {
		t.Fatal(err)
	}
	if err := bare.Storer.SetReference(plumbing.NewHashReference("refs/heads/release", plumbing.NewHash(headB))); err != nil {
		t.Fatal(err)
	}
	next := b.Commit(t, "main moves on", map[string]string{"b": "2"})
	s = newSource(t, Options{URL: b.Bare, Branch: "release", Dir: dir})
	if rev := mustFetch(t, s); rev.SHA != headB {
		t.Fatalf("after the branch changed head = %s, want %s (main is at %s)", rev.SHA, headB, next)
	}
}

func TestForcePushedBranch(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	first := repo.Commit(t, "one", map[string]string{"a": "1"})
	second := repo.Commit(t, "two", map[string]string{"a": "2"})
	s := newSource(t, Options{URL: repo.Bare})
	if rev := mustFetch(t, s); rev.SHA != second {
		t.Fatalf("head = %s, want %s", rev.SHA, second)
	}
	// As if someone force-pushed main back to the first commit.
	bare, err := git.PlainOpen(repo.Bare)
	if err != nil {
		t.Fatal(err)
	}
	if err := bare.Storer.SetReference(plumbing.NewHashReference("refs/heads/main", plumbing.NewHash(first))); err != nil {
		t.Fatal(err)
	}
	if rev := mustFetch(t, s); rev.SHA != first {
		t.Fatalf("after a force push head = %s, want %s", rev.SHA, first)
	}
}

func TestLookup(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	first := repo.Commit(t, "first\nbody", map[string]string{"a": "1"})
	second := repo.Commit(t, "second", map[string]string{"a": "2"})
	s := newSource(t, Options{URL: repo.Bare})
	ctx := context.Background()

	if _, err := s.Lookup(ctx, first); err == nil {
		t.Error("Lookup before the first fetch succeeded")
	}
	mustFetch(t, s)

	for _, rev := range []string{first, first[:4], first[:7], first[:11], strings.ToUpper(first[:10])} {
		got, err := s.Lookup(ctx, rev)
		if err != nil {
			t.Errorf("Lookup(%s): %v", rev, err)
			continue
		}
		if got.SHA != first || got.Message != "first" {
			t.Errorf("Lookup(%s) = %+v, want %s \"first\"", rev, got, first)
		}
	}
	if got, err := s.Lookup(ctx, second[:9]); err != nil || got.SHA != second {
		t.Errorf("Lookup(second) = %+v, %v", got, err)
	}

	unknown := "0000000"
	for strings.HasPrefix(first, unknown) || strings.HasPrefix(second, unknown) {
		unknown = "1111111"
	}
	if _, err := s.Lookup(ctx, unknown); err == nil || err.Error() != "revision "+unknown+" not found" {
		t.Errorf("Lookup(unknown) err = %v", err)
	}
	if _, err := s.Lookup(ctx, strings.Repeat("0", 40)); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Lookup(zero) err = %v", err)
	}
	for _, bad := range []string{"abc", "main", "HEAD~1", "xyz1234"} {
		if _, err := s.Lookup(ctx, bad); err == nil {
			t.Errorf("Lookup(%q) succeeded", bad)
		}
	}
	// The tree of a commit is an object too, but not a revision.
	c, err := s.repo.CommitObject(plumbing.NewHash(first))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, c.TreeHash.String()); err == nil {
		t.Error("Lookup(tree hash) succeeded")
	}
}

func TestNew(t *testing.T) {
	kh := filepath.Join(t.TempDir(), "known_hosts")
	dir := t.TempDir()
	for _, tc := range []struct {
		opts Options
		err  string
	}{
		{Options{URL: "", Branch: "main", Dir: dir}, "source.url is required"},
		{Options{URL: "/srv/repo", Branch: "", Dir: dir}, "source.branch is required"},
		{Options{URL: "/srv/repo", Branch: "a..b", Dir: dir}, "not a valid branch name"},
		{Options{URL: "/srv/repo", Branch: "main"}, "Dir"},
		{Options{URL: "/srv/repo", Branch: "main", Dir: dir, Keep: -1}, "negative"},
		{Options{URL: "ssh://git@example.com/ops/fleet.git", Branch: "main", Dir: dir}, "source.auth.known_hosts is required for SSH (host keys are never skipped)"},
		{Options{URL: "git@example.com:ops/fleet.git", Branch: "main", Dir: dir}, "source.auth.known_hosts is required for SSH (host keys are never skipped)"},
		{Options{URL: "ftp://example.com/x", Branch: "main", Dir: dir}, "unsupported scheme"},
		{Options{URL: "ssh://git@example.com/ops/fleet.git", Branch: "main", Dir: dir, Auth: Auth{KnownHosts: kh}}, ""},
		{Options{URL: "https://example.com/ops/fleet.git", Branch: "refs/heads/main", Dir: dir}, ""},
	} {
		s, err := New(tc.opts)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("New(%+v): %v", tc.opts, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("New(%+v) err = %v, want %q", tc.opts, err, tc.err)
		case tc.err == "" && s.opts.Keep != DefaultKeep:
			t.Errorf("Keep = %d, want default %d", s.opts.Keep, DefaultKeep)
		}
	}
	// No I/O: the files are read when fetching, not before.
	if _, err := os.Stat(kh); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("known_hosts was created")
	}
	s, err := New(Options{URL: "https://example.com/x.git", Branch: "main", Dir: dir, Auth: Auth{TokenFile: "/nonexistent/token"}})
	if err != nil {
		t.Fatalf("New with a missing token file: %v", err)
	}
	if _, err := s.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "source.auth.token_file") {
		t.Errorf("Fetch with a missing token file: %v", err)
	}
	if _, err := New(Options{URL: "https://user:s3cr%zzet@example.com/x", Branch: "main", Dir: dir}); err == nil || strings.Contains(err.Error(), "s3cr") {
		t.Errorf("bad URL error = %v; want an error without the password", err)
	}
}

func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		if got := Jitter(d); got != d {
			t.Errorf("Jitter(%v) = %v", d, got)
		}
	}
	if got := Jitter(5); got != 5 {
		t.Errorf("Jitter(5ns) = %v", got)
	}
	d := time.Minute
	lo, hi := d-d/10, d+d/10
	var below, above bool
	for range 10000 {
		got := Jitter(d)
		if got < lo || got > hi {
			t.Fatalf("Jitter(%v) = %v, outside [%v, %v]", d, got, lo, hi)
		}
		below = below || got < d-d/20
		above = above || got > d+d/20
	}
	if !below || !above {
		t.Errorf("Jitter does not spread both ways (below %v, above %v)", below, above)
	}
}

// TestConcurrentUse runs what the daemon and the API may do at once; it is
// meant for -race.
func TestConcurrentUse(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	first := repo.Commit(t, "one", map[string]string{"a": "1"})
	s := newSource(t, Options{URL: repo.Bare, Keep: 1})
	mustFetch(t, s)
	second := repo.Commit(t, "two", map[string]string{"a": "2"})
	ctx := context.Background()
	errs := make(chan error, 40)
	for i := range 10 {
		go func() { _, err := s.Fetch(ctx); errs <- err }()
		go func() { _, err := s.Checkout(ctx, first); errs <- err }()
		go func() { _, err := s.Lookup(ctx, first[:8]); errs <- err }()
		go func() { errs <- s.Prune(first, []string{"", second}[i%2]) }()
	}
	for range 40 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if rev := mustFetch(t, s); rev.SHA != second {
		t.Errorf("head = %s, want %s", rev.SHA, second)
	}
}

func TestFetchNonBareLocal(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	head := repo.Commit(t, "one", map[string]string{"a": "1"})
	s := newSource(t, Options{URL: repo.Work})
	if rev := mustFetch(t, s); rev.SHA != head {
		t.Fatalf("head = %s, want %s", rev.SHA, head)
	}
	dir, err := s.Checkout(context.Background(), head)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkout holds a .git: %v", err)
	}
}

func TestLocalWithoutGit(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	repo.Commit(t, "one", map[string]string{"a": "1"})
	t.Setenv("PATH", t.TempDir())
	_, err := newSource(t, Options{URL: repo.Bare}).Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "needs git installed") {
		t.Fatalf("err = %v, want a hint to install git", err)
	}
}
