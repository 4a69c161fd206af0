package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Size limits of a checkout, when Options leave them at zero. A stack's
// files are compose files, configs and build contexts: 64 MiB is far above
// any of them and still well inside what a small host can hold in memory
// when a file is read whole; 512 MiB per checkout is the default limit of
// a build context (images.max_build_context), which a repository's whole
// tree has no reason to exceed.
const (
	DefaultMaxFileBytes     int64 = 64 << 20
	DefaultMaxCheckoutBytes int64 = 512 << 20
)

// ErrTooLarge is what a *LimitError is (errors.Is).
var ErrTooLarge = errors.New("too large")

// TooLarge is a file that a checkout left out because of a size limit.
type TooLarge struct {
	Path string // from the repository's root, with slashes
	Size int64
	// OverTotal: the file is within the limit per file, but among the
	// biggest of a revision over the limit per checkout.
	OverTotal bool
}

// LimitError names the files of a folder that the checkout of a revision
// left out for their size (see Source.LeftOut).
type LimitError struct {
	Revision    string
	Files       []TooLarge // biggest first
	MaxFile     int64
	MaxCheckout int64
	Total       int64 // bytes of all the revision's files
}

func (e *LimitError) Error() string {
	var perFile, overTotal []string
	for _, f := range e.Files {
		if f.OverTotal {
			overTotal = append(overTotal, fmt.Sprintf("%s (%s)", f.Path, humanBytes(f.Size)))
		} else {
			perFile = append(perFile, fmt.Sprintf("%s is %s, over the limit of %s per file", f.Path, humanBytes(f.Size), humanBytes(e.MaxFile)))
		}
	}
	var parts []string
	if len(perFile) > 0 {
		parts = append(parts, strings.Join(perFile, "; "))
	}
	if len(overTotal) > 0 {
		parts = append(parts, fmt.Sprintf("the files of revision %s add up to %s, over the limit of %s per checkout; the biggest are %s",
			ids.Short(e.Revision), humanBytes(e.Total), humanBytes(e.MaxCheckout), strings.Join(overTotal, ", ")))
	}
	return strings.Join(parts, "; ") + ": left out of the checkout"
}

func (e *LimitError) Is(target error) bool { return target == ErrTooLarge }

// Checkout exports the tree of rev to a folder of its own and returns its
// path; asking for the same revision again returns the existing folder.
//
// A folder this process did not write itself (one left by an earlier run)
// is first compared with the revision's tree, content and modes, and
// repaired in place where it differs: a container or a person that wrote
// into it must not have their change loaded as if the signed revision said
// so. In place, so a container that binds a file or folder of it sees the
// repaired content.
//
// Files over the size limits are left out (see LeftOut); the rest of the
// revision is exported, so one stack's oversized file does not stop the
// others.
func (s *Source) Checkout(ctx context.Context, sha string) (string, error) {
	s.mu.Lock()
	defer s.unlock()
	root := filepath.Join(s.opts.Dir, checkoutsName)
	if isFullSHA(sha) {
		sha = strings.ToLower(sha)
		final := filepath.Join(root, sha)
		if fi, err := os.Lstat(final); err == nil && fi.IsDir() && s.verified[sha] {
			touch(final)
			return final, nil
		}
	}
	repo, err := s.open()
	if err != nil {
		return "", fmt.Errorf("checkout %s: %w", sha, err)
	}
	c, err := resolve(repo, sha)
	if err != nil {
		return "", fmt.Errorf("checkout %s: %w", sha, err)
	}
	full := c.Hash.String()
	final := filepath.Join(root, full)
	if fi, err := os.Lstat(final); err == nil && fi.IsDir() && s.verified[full] {
		touch(final)
		return final, nil
	}
	objects := repo.Storer
	plan, err := s.plan(ctx, objects, c)
	if err != nil {
		return "", fmt.Errorf("checkout %s: %w", full, err)
	}
	fi, err := os.Lstat(final)
	switch {
	case err == nil && fi.IsDir():
		fixed, err := repair(ctx, objects, plan, final)
		if err != nil {
			return "", fmt.Errorf("checkout %s: verify %s: %w", full, final, err)
		}
		if len(fixed) > 0 {
			shown := fixed
			if len(shown) > 10 {
				shown = shown[:10]
			}
			s.log().Warn("checkout differed from its revision; repaired before use", "revision", full, "count", len(fixed), "paths", strings.Join(shown, ", "))
		}
	case err == nil || !errors.Is(err, fs.ErrNotExist):
		// Not a folder this code writes: out of the way, and export anew.
		if err := os.RemoveAll(final); err != nil {
			return "", fmt.Errorf("checkout %s: %w", full, err)
		}
		fallthrough
	default:
		if err := s.exportNew(ctx, objects, plan, root, final); err != nil {
			return "", fmt.Errorf("checkout %s: %w", full, err)
		}
	}
	if s.verified == nil {
		s.verified, s.leftOut = map[string]bool{}, map[string]*LimitError{}
	}
	s.verified[full] = true
	delete(s.leftOut, full)
	if len(plan.leftOut) > 0 {
		s.leftOut[full] = &LimitError{Revision: full, Files: plan.leftOut, MaxFile: s.opts.MaxFileBytes, MaxCheckout: s.opts.MaxCheckoutBytes, Total: plan.total}
	}
	touch(final)
	return final, nil
}

// LeftOut returns a *LimitError naming the files under folder (such as
// "stacks/web") that the checkout of rev left out for their size, or nil
// when it left none out (or rev was not checked out by this Source).
func (s *Source) LeftOut(rev, folder string) error {
	s.mu.Lock()
	defer s.unlock()
	all := s.leftOut[strings.ToLower(rev)]
	if all == nil {
		return nil
	}
	prefix := strings.Trim(path.Clean("/"+folder), "/") + "/"
	var files []TooLarge
	for _, f := range all.Files {
		if prefix == "/" || strings.HasPrefix(f.Path, prefix) {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil
	}
	e := *all
	e.Files = files
	return &e
}

func (s *Source) log() *slog.Logger {
	if s.opts.Log != nil {
		return s.opts.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// treeEntry is one path a checkout writes.
type treeEntry struct {
	name string // slash-separated, from the root
	mode filemode.FileMode
	hash plumbing.Hash
	size int64 // of a file's blob
}

// checkoutPlan is what the checkout of one commit holds: its entries in
// tree order (a folder before what it holds), less the files left out.
type checkoutPlan struct {
	entries []treeEntry
	leftOut []TooLarge // biggest first
	total   int64      // bytes of every file, left out ones included
}

// plan walks c's tree, refusing unsafe paths, and chooses the files to
// leave out: each over the limit per file, then, while the rest is over
// the limit per checkout, the biggest. Only object headers are read.
func (s *Source) plan(ctx context.Context, objects storer.EncodedObjectStorer, c *object.Commit) (checkoutPlan, error) {
	var p checkoutPlan
	tree, err := object.GetTree(objects, c.TreeHash)
	if err != nil {
		return p, fmt.Errorf("read tree: %w", err)
	}
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	var entries []treeEntry
	for n := 0; ; n++ {
		if n%64 == 0 {
			if err := ctx.Err(); err != nil {
				return p, err
			}
		}
		name, entry, err := w.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return p, fmt.Errorf("walk tree: %w", err)
		}
		if err := checkPath(name); err != nil {
			return p, err
		}
		e := treeEntry{name: name, mode: entry.Mode, hash: entry.Hash}
		switch entry.Mode {
		case filemode.Dir, filemode.Symlink:
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			if e.size, err = blobSize(objects, entry.Hash); err != nil {
				return p, fmt.Errorf("read %s: %w", name, err)
			}
			p.total += e.size
		case filemode.Submodule:
			continue // not fetched: their commits live elsewhere
		default:
			return p, fmt.Errorf("%s: unsupported file mode %s", name, entry.Mode)
		}
		entries = append(entries, e)
	}

	maxFile, maxCheckout := s.opts.MaxFileBytes, s.opts.MaxCheckoutBytes
	out := map[string]bool{}
	var kept []treeEntry // files within the limit per file
	var keptBytes int64
	for _, e := range entries {
		if !isFile(e.mode) {
			continue
		}
		if e.size > maxFile {
			p.leftOut = append(p.leftOut, TooLarge{Path: e.name, Size: e.size})
			out[e.name] = true
			continue
		}
		kept = append(kept, e)
		keptBytes += e.size
	}
	if keptBytes > maxCheckout {
		sort.SliceStable(kept, func(i, j int) bool { return kept[i].size > kept[j].size })
		for _, e := range kept {
			if keptBytes <= maxCheckout {
				break
			}
			p.leftOut = append(p.leftOut, TooLarge{Path: e.name, Size: e.size, OverTotal: true})
			out[e.name] = true
			keptBytes -= e.size
		}
	}
	sort.SliceStable(p.leftOut, func(i, j int) bool { return p.leftOut[i].Size > p.leftOut[j].Size })
	for _, e := range entries {
		if !out[e.name] {
			p.entries = append(p.entries, e)
		}
	}
	return p, nil
}

// exportNew writes p under a temporary folder and renames it to final, so
// a crash never leaves a half-written checkout under a revision's name.
func (s *Source) exportNew(ctx context.Context, objects storer.EncodedObjectStorer, p checkoutPlan, root, final string) error {
	if err := os.MkdirAll(root, 0o750); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(root, checkoutTmp+filepath.Base(final)+"-")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := export(ctx, objects, p, tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	done = true
	return nil
}

// export writes p under dir. Symlinks are created last: until then no
// path under dir is a link, so a crafted tree cannot make a later file
// land outside dir by writing through one.
func export(ctx context.Context, objects storer.EncodedObjectStorer, p checkoutPlan, dir string) error {
	var links []treeEntry
	for n, e := range p.entries {
		if n%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		path := filepath.Join(dir, filepath.FromSlash(e.name))
		switch {
		case e.mode == filemode.Dir:
			if err := os.Mkdir(path, 0o755); err != nil {
				return fmt.Errorf("write %s: %w", e.name, err)
			}
		case e.mode == filemode.Symlink:
			links = append(links, e)
		default:
			if err := writeBlob(objects, e, path); err != nil {
				return fmt.Errorf("write %s: %w", e.name, err)
			}
		}
	}
	for _, l := range links {
		target, err := readBlob(objects, l.hash)
		if err != nil {
			return fmt.Errorf("read link %s: %w", l.name, err)
		}
		if err := os.Symlink(target, filepath.Join(dir, filepath.FromSlash(l.name))); err != nil {
			return fmt.Errorf("write link %s: %w", l.name, err)
		}
	}
	return nil
}

// repair makes dir hold exactly p, changing only what differs, and returns
// the paths it changed. Folders are checked before what they hold, and a
// non-folder where a folder belongs is removed first, so nothing is ever
// written through a link someone planted.
func repair(ctx context.Context, objects storer.EncodedObjectStorer, p checkoutPlan, dir string) ([]string, error) {
	var fixed, problems []string
	want := map[string]bool{}
	var links []treeEntry
	for n, e := range p.entries {
		if n%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		want[e.name] = true
		path := filepath.Join(dir, filepath.FromSlash(e.name))
		fi, err := os.Lstat(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		exists := err == nil
		switch {
		case e.mode == filemode.Dir:
			if exists && fi.IsDir() {
				continue
			}
			fixed = append(fixed, e.name)
			if err := replaceWith(path, exists, func() error { return os.Mkdir(path, 0o755) }); err != nil {
				return nil, fmt.Errorf("repair %s: %w", e.name, err)
			}
		case e.mode == filemode.Symlink:
			links = append(links, e)
		case exists && fi.Mode().IsRegular():
			same, err := sameBlob(path, fi, e)
			if err != nil {
				return nil, fmt.Errorf("verify %s: %w", e.name, err)
			}
			if same {
				continue
			}
			fixed = append(fixed, e.name)
			if err := rewriteBlob(objects, e, path); err != nil {
				return nil, fmt.Errorf("repair %s: %w", e.name, err)
			}
		default:
			fixed = append(fixed, e.name)
			if err := replaceWith(path, exists, func() error { return writeBlob(objects, e, path) }); err != nil {
				return nil, fmt.Errorf("repair %s: %w", e.name, err)
			}
		}
	}
	for _, l := range links {
		target, err := readBlob(objects, l.hash)
		if err != nil {
			return nil, fmt.Errorf("read link %s: %w", l.name, err)
		}
		path := filepath.Join(dir, filepath.FromSlash(l.name))
		fi, err := os.Lstat(path)
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if cur, err := os.Readlink(path); err == nil && cur == target {
				continue
			}
		}
		fixed = append(fixed, l.name)
		if err := replaceWith(path, err == nil, func() error { return os.Symlink(target, path) }); err != nil {
			return nil, fmt.Errorf("repair link %s: %w", l.name, err)
		}
	}
	// Anything else was not written by the export: a file added beside
	// the revision's (an override or .env file) would be loaded as if the
	// revision held it. Extra folders stay: empty, they load nothing, and
	// Docker makes them as mount points for binds of paths that do not
	// exist.
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if want[rel] || d.IsDir() {
			return nil
		}
		fixed = append(fixed, rel)
		if err := os.Remove(p); err != nil {
			problems = append(problems, fmt.Sprintf("remove %s: %v", rel, err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return fixed, nil
}
