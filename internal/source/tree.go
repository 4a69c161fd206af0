package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
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
	defer s.mu.Unlock()
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
