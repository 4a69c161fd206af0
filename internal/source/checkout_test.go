package source

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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
