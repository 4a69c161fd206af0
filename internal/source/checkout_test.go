package source

import (
	"context"
	"errors"
	"fmt"
	"github.com/go-git/go-git/v5/plumbing"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestCheckoutSizeLimits (issue 15, hole 5): a file over the limit per file
// is left out of the checkout, and so are the biggest files of a revision
// over the limit per checkout; LeftOut names them for the stack folder
// they are in, so that stack alone is Invalid; a fresh Source on the same
// state (a restart) says the same and removes such a file that an older
// export wrote.
func TestCheckoutSizeLimits(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	rev := repo.Commit(t, "big files", map[string]string{
		"stacks/web/compose.yaml": "services: {}\n",
		"stacks/web/big.bin":      strings.Repeat("x", 2048),
		"stacks/db/compose.yaml":  "services: {}\n",
		"stacks/db/a.bin":         strings.Repeat("a", 600),
		"stacks/db/b.bin":         strings.Repeat("b", 500),
		"stacks/ok/compose.yaml":  "services: {}\n",
	})
	dir := t.TempDir()
	opts := Options{URL: repo.Bare, Dir: dir, MaxFileBytes: 1024, MaxCheckoutBytes: 1000}
	s := newSource(t, opts)
	mustFetch(t, s)
	ctx := context.Background()
	check := func(s *Source) {
		t.Helper()
		out, err := s.Checkout(ctx, rev)
		if err != nil {
			t.Fatalf("Checkout: %v", err)
		}
		for name, there := range map[string]bool{
			"stacks/web/compose.yaml": true, "stacks/web/big.bin": false,
			"stacks/db/compose.yaml": true, "stacks/db/a.bin": false, "stacks/db/b.bin": true,
			"stacks/ok/compose.yaml": true,
		} {
			if _, err := os.Lstat(filepath.Join(out, name)); (err == nil) != there {
				t.Errorf("%s in the checkout: %v, want %v", name, err == nil, there)
			}
		}
		web := s.LeftOut(rev, "stacks/web")
		if want := "stacks/web/big.bin is 2 KiB, over the limit of 1 KiB per file: left out of the checkout"; !errors.Is(web, ErrTooLarge) || web.Error() != want {
			t.Errorf("LeftOut(stacks/web) = %v; want %q", web, want)
		}
		db := s.LeftOut(rev, "stacks/db")
		if want := "the files of revision " + rev[:12] + " add up to 3.1 KiB, over the limit of 1000 B per checkout; the biggest are stacks/db/a.bin (600 B): left out of the checkout"; !errors.Is(db, ErrTooLarge) || db.Error() != want {
			t.Errorf("LeftOut(stacks/db) = %v; want %q", db, want)
		}
		if err := s.LeftOut(rev, "stacks/ok"); err != nil {
			t.Errorf("LeftOut(stacks/ok) = %v; want nil", err)
		}
	}
	check(s)

	// An export made before the limits wrote the big file: a restart
	// removes it.
	big := filepath.Join(dir, "checkouts", rev, "stacks/web/big.bin")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", 2048)), 0o644); err != nil {
		t.Fatal(err)
	}
	check(newSource(t, opts))

	// The defaults hold for files of a normal size.
	if s := newSource(t, Options{URL: repo.Bare}); s.opts.MaxFileBytes != DefaultMaxFileBytes || s.opts.MaxCheckoutBytes != DefaultMaxCheckoutBytes {
		t.Errorf("default limits %d, %d", s.opts.MaxFileBytes, s.opts.MaxCheckoutBytes)
	}
}

// TestCheckoutRepairedAfterTampering (issue 15, hole 8): a checkout left by
// an earlier run that was changed on disk (a file rewritten or made
// executable, a file added or removed, a folder swapped for a link out, a
// link retargeted) is put back to the revision's tree before it is used,
// in place: a rewritten file keeps its inode, so a container binding it
// sees the repair. What a process exported itself is not read again.
func TestCheckoutRepairedAfterTampering(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	if err := os.MkdirAll(filepath.Join(repo.Work, "stacks/web"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("compose.yaml", filepath.Join(repo.Work, "stacks/web/link.yaml")); err != nil {
		t.Fatal(err)
	}
	rev := repo.Commit(t, "web", map[string]string{
		"stacks/web/compose.yaml":   "services: {app: {image: good}}\n",
		"stacks/web/conf/app.conf":  "port = 80\n",
		"stacks/web/conf/other.txt": "x\n",
		"stacks/db/compose.yaml":    "services: {}\n",
	})
	dir := t.TempDir()
	opts := Options{URL: repo.Bare, Dir: dir}
	s := newSource(t, opts)
	mustFetch(t, s)
	ctx := context.Background()
	out, err := s.Checkout(ctx, rev)
	if err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, out)
	compose := filepath.Join(out, "stacks/web/compose.yaml")
	inode := inodeOf(t, compose)

	outside := t.TempDir()
	tamper := []func() error{
		func() error {
			return os.WriteFile(compose, []byte("services: {app: {image: evil, privileged: true}}\n"), 0o644)
		},
		func() error { return os.Chmod(filepath.Join(out, "stacks/db/compose.yaml"), 0o755) },
		func() error {
			return os.WriteFile(filepath.Join(out, "stacks/web/compose.override.yaml"), []byte("services: {app: {privileged: true}}\n"), 0o644)
		},
		func() error { return os.WriteFile(filepath.Join(out, "stacks/web/.env"), []byte("X=1\n"), 0o644) },
		func() error { return os.Remove(filepath.Join(out, "stacks/web/conf/other.txt")) },
		func() error { return os.RemoveAll(filepath.Join(out, "stacks/web/conf")) },
		func() error { return os.Symlink(outside, filepath.Join(out, "stacks/web/conf")) },
		func() error { return os.Remove(filepath.Join(out, "stacks/web/link.yaml")) },
		func() error { return os.Symlink("/etc/passwd", filepath.Join(out, "stacks/web/link.yaml")) },
		func() error { return os.Mkdir(filepath.Join(out, "stacks/web/mountpoint"), 0o755) },
	}
	for _, f := range tamper {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	// The same process trusts what it wrote.
	if again, err := s.Checkout(ctx, rev); err != nil || again != out {
		t.Fatalf("Checkout again: %s, %v", again, err)
	}
	if _, err := os.Lstat(filepath.Join(out, "stacks/web/.env")); err != nil {
		t.Fatalf("the same process read its checkout again: %v", err)
	}

	// A restart does not.
	again, err := newSource(t, opts).Checkout(ctx, rev)
	if err != nil || again != out {
		t.Fatalf("Checkout after a restart: %s, %v", again, err)
	}
	got := snapshot(t, out)
	delete(got, "stacks/web/mountpoint") // an empty folder loads nothing; Docker makes them for binds
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s after the repair: %q, want %q", name, got[name], w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s is still in the checkout", name)
		}
	}
	if inodeOf(t, compose) != inode {
		t.Errorf("compose.yaml was replaced, not repaired in place")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("the repair wrote through the planted link: %v", entries)
	}

	// A checkout's folder replaced by something else is exported anew.
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, out); err != nil {
		t.Fatal(err)
	}
	if again, err := newSource(t, opts).Checkout(ctx, rev); err != nil || again != out {
		t.Fatalf("Checkout over a link: %s, %v", again, err)
	}
	if fi, err := os.Lstat(out); err != nil || !fi.IsDir() {
		t.Fatalf("the checkout is not a folder again: %v", err)
	}
	if got := snapshot(t, out); len(got) != len(want) {
		t.Errorf("re-exported checkout: %v", got)
	}
}

// snapshot describes every path under dir: kind, mode, content or target.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[rel] = "link " + target
			return err
		case fi.IsDir():
			out[rel] = "dir"
		default:
			b, err := os.ReadFile(p)
			out[rel] = fi.Mode().Perm().String() + " " + string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func inodeOf(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestCheckout(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	old := repo.Commit(t, "old", map[string]string{"gone.txt": "bye\n", "stacks/web/compose.yaml": "v1\n"})

	// Modes and links the Commit helper cannot express are made in the
	// working clone; Commit stages everything there.
	script := filepath.Join(repo.Work, "bin", "run.sh")
	if err := os.MkdirAll(filepath.Dir(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("stacks/web/compose.yaml", filepath.Join(repo.Work, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	head := repo.Commit(t, "new", map[string]string{"stacks/web/compose.yaml": "v2\n", "stacks/web/.env": "A=1\n"}, "gone.txt")

	s := newSource(t, Options{URL: repo.Bare})
	mustFetch(t, s)
	ctx := context.Background()

	dir, err := s.Checkout(ctx, head)
	if err != nil {
		t.Fatalf("Checkout: %v", err)
	}
	if want := filepath.Join(s.opts.Dir, "checkouts", head); dir != want || !filepath.IsAbs(dir) {
		t.Errorf("dir = %s, want %s", dir, want)
	}
	for name, want := range map[string]string{"stacks/web/compose.yaml": "v2\n", "stacks/web/.env": "A=1\n", "bin/run.sh": "#!/bin/sh\necho hi\n"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "gone.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed file is in the checkout: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "bin/run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("run.sh mode = %v, %v; want 0755", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "stacks/web/compose.yaml")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("compose.yaml mode = %v, %v; want 0644", fi.Mode(), err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "link.yaml")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("link.yaml is not a symlink: %v, %v", fi.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "link.yaml")); err != nil || target != "stacks/web/compose.yaml" {
		t.Errorf("link.yaml -> %q, %v", target, err)
	}

	// A marker proves the second call returns the folder without rewriting it.
	marker := filepath.Join(dir, ".marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := s.Checkout(ctx, head)
	if err != nil || again != dir {
		t.Fatalf("second Checkout = %s, %v; want %s", again, err, dir)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("second Checkout rewrote the folder: %v", err)
	}
	if short, err := s.Checkout(ctx, head[:8]); err != nil || short != dir {
		t.Errorf("Checkout(abbreviated) = %s, %v; want %s", short, err, dir)
	}

	oldDir, err := s.Checkout(ctx, old)
	if err != nil {
		t.Fatalf("Checkout(old): %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(oldDir, "stacks/web/compose.yaml")); string(got) != "v1\n" {
		t.Errorf("old compose.yaml = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(oldDir, "link.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old checkout has a file of the new one: %v", err)
	}

	if _, err := s.Checkout(ctx, strings.Repeat("ab", 20)); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Checkout(unknown) err = %v, want not found", err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(s.opts.Dir, "checkouts", ".tmp-*")); len(tmps) != 0 {
		t.Errorf("temporary export folders left: %v", tmps)
	}
}

func TestCheckoutBeforeFetch(t *testing.T) {
	s := newSource(t, Options{URL: t.TempDir()})
	if _, err := s.Checkout(context.Background(), strings.Repeat("ab", 20)); err == nil {
		t.Fatal("Checkout without a mirror succeeded")
	}
}

func TestCheckoutPath(t *testing.T) {
	for _, bad := range []string{"../x", "a/../../x", "/etc/passwd", ".git/config", "a/.GIT/hooks", "a//b", ""} {
		if checkPath(bad) == nil {
			t.Errorf("checkPath(%q) accepted an unsafe path", bad)
		}
	}
	for _, ok := range []string{"a", "stacks/web/compose.yaml", ".env", "a/.gitignore", "x..y"} {
		if err := checkPath(ok); err != nil {
			t.Errorf("checkPath(%q) = %v", ok, err)
		}
	}
}

func TestPrune(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	var shas []string
	for i := range 5 {
		shas = append(shas, repo.Commit(t, fmt.Sprint("commit ", i), map[string]string{"n": fmt.Sprint(i)}))
	}
	s := newSource(t, Options{URL: repo.Bare, Keep: 2})
	if err := s.Prune(); err != nil {
		t.Fatalf("Prune before any checkout: %v", err)
	}
	mustFetch(t, s)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	for i, sha := range shas {
		dir, err := s.Checkout(ctx, sha)
		if err != nil {
			t.Fatal(err)
		}
		// Explicit ages instead of sleeping: shas[4] is the newest.
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(dir, at, at); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(s.opts.Dir, "checkouts")
	stale := filepath.Join(root, ".tmp-"+shas[0]+"-99")
	if err := os.MkdirAll(filepath.Join(stale, "stacks"), 0o755); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(root, "not-a-checkout")
	if err := os.WriteFile(foreign, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	if err := s.Prune(shas[0], "", shas[1]); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	// Pinned 0 and 1, the newest two others (4, 3), and what is not ours.
	want := []string{shas[0], shas[1], shas[3], shas[4], "not-a-checkout"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("after Prune: %v, want %v", got, want)
	}

	// A checkout in use is touched, so it counts as newest again: 1 now
	// outranks 3, which is older than 4.
	if _, err := s.Checkout(ctx, shas[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Prune(shas[0]); err != nil {
		t.Fatal(err)
	}
	for i, wantKept := range []bool{true, true, false, false, true} {
		_, err := os.Stat(filepath.Join(root, shas[i]))
		if kept := err == nil; kept != wantKept {
			t.Errorf("checkout %d kept = %v, want %v", i, kept, wantKept)
		}
	}
	// Pruned away, a revision can be exported again.
	if _, err := s.Checkout(ctx, shas[2]); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkCheckout(b *testing.B) {
	repo := testenv.NewGitRepo(b)
	files := map[string]string{}
	for i := range 200 {
		files[fmt.Sprintf("stacks/s%02d/file%03d.yaml", i%20, i)] = strings.Repeat(fmt.Sprintf("line %d of a compose-sized file\n", i), 60)
	}
	head := repo.Commit(b, "200 files", files)
	s := newSource(b, Options{URL: repo.Bare})
	mustFetch(b, s)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir, err := s.Checkout(ctx, head)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func TestCheckoutCanceled(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	head := repo.Commit(t, "one", map[string]string{"a": "1", "b/c": "2"})
	s := newSource(t, Options{URL: repo.Bare})
	mustFetch(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Checkout(ctx, head); !errors.Is(err, context.Canceled) {
		t.Fatalf("Checkout with a canceled context: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(s.opts.Dir, "checkouts", "*"))
	left2, _ := filepath.Glob(filepath.Join(s.opts.Dir, "checkouts", ".*"))
	if len(left)+len(left2) != 0 {
		t.Errorf("canceled export left %v %v", left, left2)
	}
	if _, err := s.Checkout(context.Background(), head); err != nil {
		t.Fatal(err)
	}
}

// TestCheckoutReadsIndexesOnce: the mirror reads the index of each of its
// packfiles once, and a fetch adds the index of the packfile it writes, so
// checking out the revision a fetch brought reads no index again. (A
// storage made for each checkout read every index again: one packfile per
// fetch that brought objects, so each checkout cost more than the last.)
// The indexes of the packfiles fetched so far are moved away once the
// mirror has read them: a checkout that read them again would fail.
func TestCheckoutReadsIndexesOnce(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	s := newSource(t, Options{URL: repo.Bare})
	for i := range 3 {
		repo.Commit(t, "v", map[string]string{"stacks/web/compose.yaml": fmt.Sprintf("services: {} # %d\n", i), "stacks/db/compose.yaml": "services: {}\n"})
		rev := mustFetch(t, s)
		if _, err := s.Checkout(context.Background(), rev.SHA); err != nil {
			t.Fatalf("checkout %s: %v", rev.SHA, err)
		}
	}
	packs := filepath.Join(s.opts.Dir, mirrorName, "objects", "pack")
	idx, err := filepath.Glob(filepath.Join(packs, "*.idx"))
	if err != nil || len(idx) < 3 {
		t.Fatalf("want a packfile per fetch, found the indexes %v (%v)", idx, err)
	}
	hidden := t.TempDir()
	for _, f := range idx {
		if err := os.Rename(f, filepath.Join(hidden, filepath.Base(f))); err != nil {
			t.Fatal(err)
		}
	}
	// Put back before the mirror is removed: it is a repository again.
	defer func() {
		for _, f := range idx {
			_ = os.Rename(filepath.Join(hidden, filepath.Base(f)), f)
		}
	}()
	repo.Commit(t, "v", map[string]string{"stacks/web/compose.yaml": "services: {} # new\n"})
	rev := mustFetch(t, s)
	dir, err := s.Checkout(context.Background(), rev.SHA)
	if err != nil {
		t.Fatalf("checkout of the fetched revision read the indexes again: %v", err)
	}
	// Unchanged files come from the packfiles whose indexes were moved.
	for name, want := range map[string]string{"stacks/web/compose.yaml": "services: {} # new\n", "stacks/db/compose.yaml": "services: {}\n"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
}

// TestCheckoutLeavesNoObjectsCached: the mirror lives as long as the
// daemon, and so does its cache of decoded objects; a checkout's blobs
// must not stay in it (up to 96 MiB) once the checkout is done.
func TestCheckoutLeavesNoObjectsCached(t *testing.T) {
	repo := testenv.NewGitRepo(t)
	s := newSource(t, Options{URL: repo.Bare})
	repo.Commit(t, "v", map[string]string{"stacks/web/compose.yaml": "services: {}\n"})
	rev := mustFetch(t, s)
	if _, err := s.Checkout(context.Background(), rev.SHA); err != nil {
		t.Fatalf("checkout %s: %v", rev.SHA, err)
	}
	if s.objects == nil {
		t.Fatal("the mirror has no object cache to check")
	}
	if _, cached := s.objects.Get(plumbing.NewHash(rev.SHA)); cached {
		t.Fatalf("commit %s still cached after the checkout", rev.SHA)
	}
}
