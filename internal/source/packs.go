package source

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// maxPacks is how many packfiles the mirror may gather before Prune packs
// them into one: git's own gc.autoPackLimit. Every fetch that brings
// commits writes a packfile; a host left alone for a year with a push a
// day would gather hundreds, and each costs an index in memory (the mirror
// keeps them for its life) and a lookup on every object read.
const maxPacks = 50

// consolidatePacks writes every object of the mirror into one packfile and
// deletes the others, when there are more than maxPacks. Every object, not
// only those reachable from the branch: a revision a stack is pinned to, or
// that history offers for a rollback, may be gone from a force-pushed
// branch and must stay. The new pack is complete (written and indexed)
// before any old one is deleted, so a crash leaves duplicates, never a
// missing object. Called with s.mu held.
func (s *Source) consolidatePacks() error {
	repo, err := s.open()
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return nil
	}
	if err != nil {
		return err
	}
	mirror, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return nil
	}
	packs, err := mirror.ObjectPacks()
	if err != nil || len(packs) <= maxPacks {
		return err
	}
	// The mirror's own storage keeps its packfiles open and indexes in
	// memory; it is closed and dropped here (the next operation opens the
	// mirror afresh, with the new pack), and the packing reads through a
	// storage that closes each file after use, so no deleted pack stays
	// open, and on disk, for the daemon's life.
	_ = mirror.Close()
	s.repo, s.objects = nil, nil
	st := filesystem.NewStorage(mirror.Filesystem(), cache.NewObjectLRU(8*cache.MiByte))
	defer st.Close()
	seen := map[plumbing.Hash]bool{}
	var all []plumbing.Hash
	iter, err := st.IterEncodedObjects(plumbing.AnyObject)
	if err != nil {
		return fmt.Errorf("pack the mirror: list objects: %w", err)
	}
	err = iter.ForEach(func(o plumbing.EncodedObject) error {
		if h := o.Hash(); !seen[h] {
			seen[h] = true
			all = append(all, h)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pack the mirror: list objects: %w", err)
	}
	cfg, err := st.Config()
	if err != nil {
		return fmt.Errorf("pack the mirror: %w", err)
	}
	w, err := st.PackfileWriter()
	if err != nil {
		return fmt.Errorf("pack the mirror: %w", err)
	}
	merged, err := packfile.NewEncoder(w, st, false).Encode(all, cfg.Pack.Window)
	if cerr := w.Close(); err == nil {
		err = cerr // closing writes the index and moves the pack in place
	}
	if err != nil {
		return fmt.Errorf("pack the mirror: write %d objects: %w", len(all), err)
	}
	for _, p := range packs {
		if p == merged {
			continue
		}
		if err := st.DeleteOldObjectPackAndIndex(p, time.Time{}); err != nil {
			return fmt.Errorf("pack the mirror: delete packfile %s: %w", p, err)
		}
	}
	s.log().Info("packed the mirror's packfiles into one", "packfiles", len(packs), "objects", len(all))
	return nil
}
