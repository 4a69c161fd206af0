package source

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// SameTree reports whether the folder at path (such as "stacks/web") holds
// the same content at revisions a and b: the same tree hash, or absent from
// both. It lets a stack's state follow its own folder rather than every
// commit of the repository.
func (s *Source) SameTree(ctx context.Context, a, b, path string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if a == b {
		return true, nil
	}
	s.mu.Lock()
	defer s.unlock()
	repo, err := s.open()
	if err != nil {
		return false, fmt.Errorf("compare %s at %s and %s: %w", path, a, b, err)
	}
	treeAt := func(rev string) (plumbing.Hash, error) {
		c, err := resolve(repo, rev)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		root, err := c.Tree()
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read tree of %s: %w", rev, err)
		}
		entry, err := root.FindEntry(path)
		if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
			return plumbing.ZeroHash, nil
		}
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("find %s at %s: %w", path, rev, err)
		}
		return entry.Hash, nil
	}
	ha, err := treeAt(a)
	if err != nil {
		return false, fmt.Errorf("compare %s: %w", path, err)
	}
	hb, err := treeAt(b)
	if err != nil {
		return false, fmt.Errorf("compare %s: %w", path, err)
	}
	return ha == hb, nil
}

// FolderTree returns the tree hash of a folder of one of the checkouts,
// named by its path with symlinks resolved (such as
// <dir>/checkouts/<sha>/stacks/web): the same hash, the same files. It
// fails for a folder that is not in a checkout this process wrote or
// verified, or whose checkout left files of it out for their size: the
// hash would not say what is on disk.
//
// It never waits for the mirror: a fetch holds it for as long as the
// server takes to answer (up to source.timeout), and the stack cache asks
// from the drift check, which must heal meanwhile. A busy mirror is an
// error, and the cache keys by the folder's path instead.
func (s *Source) FolderTree(ctx context.Context, dir string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	root, err := filepath.EvalSymlinks(filepath.Join(s.opts.Dir, checkoutsName))
	if err != nil {
		return "", fmt.Errorf("tree of %s: %w", dir, err)
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("tree of %s: not in a checkout", dir)
	}
	sha, folder, _ := strings.Cut(filepath.ToSlash(rel), "/")
	if !s.mu.TryLock() {
		return "", fmt.Errorf("tree of %s: the mirror is busy (a fetch runs)", dir)
	}
	defer s.unlock()
	if !s.verified[sha] {
		return "", fmt.Errorf("tree of %s: not a checkout of this process", dir)
	}
	if all := s.leftOut[sha]; all != nil {
		for _, f := range all.Files {
			if folder == "" || strings.HasPrefix(f.Path, folder+"/") {
				return "", fmt.Errorf("tree of %s: the checkout left files of it out", dir)
			}
		}
	}
	repo, err := s.open()
	if err != nil {
		return "", fmt.Errorf("tree of %s: %w", dir, err)
	}
	c, err := resolve(repo, sha)
	if err != nil {
		return "", fmt.Errorf("tree of %s: %w", dir, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return "", fmt.Errorf("tree of %s: read tree of %s: %w", dir, sha, err)
	}
	if folder == "" {
		return tree.Hash.String(), nil
	}
	entry, err := tree.FindEntry(folder)
	if err != nil {
		return "", fmt.Errorf("tree of %s: %w", dir, err)
	}
	if entry.Mode != filemode.Dir {
		return "", fmt.Errorf("tree of %s: not a folder at %s", dir, sha)
	}
	return entry.Hash.String(), nil
}
