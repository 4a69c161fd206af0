package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/go-git/go-git/v5/plumbing"
)

// ErrRewritten is what CheckDescends returns (wrapped) for a head that does
// not descend from the head applied before it: the branch was rewritten, or
// an older or foreign commit was pushed in its place.
var ErrRewritten = errors.New("history rewritten")

// CheckDescends returns nil when head is applied or descends from it (applied
// is reachable from head through its parents), and an error wrapping
// ErrRewritten otherwise, saying why and how to accept it.
//
// Why: a signature says who wrote a commit, not when it may be applied. A
// force-push of an older signed commit (or of any commit the key ever
// signed, from any branch or repository) is signed all the same, and would
// roll every host back without an error anywhere.
func (s *Source) CheckDescends(ctx context.Context, head, applied string) error {
	if head == applied {
		return nil
	}
	s.mu.Lock()
	defer s.unlock()
	key := head + ".." + applied
	if s.descends != nil && s.descends.key == key {
		return s.descends.err
	}
	err := s.checkDescends(ctx, head, applied)
	if err == nil || errors.Is(err, ErrRewritten) {
		// Commits never change, so the verdict for this pair is final;
		// kept so that every poll of a refused head does not walk its
		// whole history again.
		s.descends = &descendVerdict{key: key, err: err}
	}
	return err
}

type descendVerdict struct {
	key string
	err error
}

func (s *Source) checkDescends(ctx context.Context, head, applied string) error {
	repo, err := s.open()
	if err != nil {
		return fmt.Errorf("check that %s descends from %s: %w", ids.Short(head), ids.Short(applied), err)
	}
	hc, err := resolve(repo, head)
	if err != nil {
		return fmt.Errorf("check that %s descends from %s: %w", ids.Short(head), ids.Short(applied), err)
	}
	refuse := func(why string) error {
		return fmt.Errorf("head %s does not descend from the applied %s%s: refused, %w? set source.verify.allow_rewrite to accept",
			ids.Short(hc.Hash.String()), ids.Short(applied), why, ErrRewritten)
	}
	ac, err := resolve(repo, applied)
	if err != nil {
		// A force-push that dropped the applied commit, into a mirror
		// made after it (a new state folder keeps the store but not the
		// mirror): nothing shows the head continues from it.
		return refuse(" (which is no longer in the repository)")
	}
	target := ac.Hash
	seen := map[plumbing.Hash]bool{hc.Hash: true}
	queue := []plumbing.Hash{hc.Hash}
	for n := 0; len(queue) > 0; n++ {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		h := queue[0]
		queue = queue[1:]
		if h == target {
			return nil
		}
		c, err := repo.CommitObject(h)
		if err != nil {
			// A shallow or damaged mirror: the walk cannot vouch for it.
			return fmt.Errorf("check that %s descends from %s: read commit %s: %w", ids.Short(head), ids.Short(applied), h, err)
		}
		for _, p := range c.ParentHashes {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return refuse("")
}
