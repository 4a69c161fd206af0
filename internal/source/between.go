package source

import (
	"container/heap"
	"context"
	"fmt"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// CommitsBetween counts the commits reachable from to and not from from,
// as `git rev-list --count from..to` does: how far the branch (to) has
// moved past the revision a stack runs (from). Both are SHAs, full or
// abbreviated, known to the mirror.
//
// It reads the mirror through a handle of its own instead of taking s.mu,
// so `status` never waits behind a fetch hung on the network: a fetch only
// adds objects (a pack becomes visible once complete) and never changes
// the ones a reader can already see.
func (s *Source) CommitsBetween(ctx context.Context, from, to string) (int, error) {
	repo, err := git.PlainOpen(s.mirrorDir())
	if err != nil {
		return 0, fmt.Errorf("count commits %s..%s: open mirror: %w", from, to, err)
	}
	fc, err := resolve(repo, from)
	if err != nil {
		return 0, fmt.Errorf("count commits %s..%s: %w", from, to, err)
	}
	tc, err := resolve(repo, to)
	if err != nil {
		return 0, fmt.Errorf("count commits %s..%s: %w", from, to, err)
	}
	n, err := countBetween(ctx, repo, fc, tc)
	if err != nil {
		return 0, fmt.Errorf("count commits %s..%s: %w", from, to, err)
	}
	return n, nil
}

// Marks of the walk: wanted commits are reachable from "to", excluded ones
// from "from" (which wins: a commit reachable from both is not counted).
const (
	wanted   = 1
	excluded = 2
)

// countBetween walks both sides newest commit first, as git does, so it
// visits only the commits since the two sides met instead of the whole
// history. A commit first reached from to's side and later found to be
// reachable from from's side is uncounted again, and the walk goes on
// until nothing queued can reach a counted commit. That is exact when
// committer dates never go back in time from a commit to its parents, and,
// like git, an approximation on histories made with skewed clocks.
func countBetween(ctx context.Context, repo *git.Repository, from, to *object.Commit) (int, error) {
	mark := map[plumbing.Hash]int{from.Hash: excluded}
	done := map[plumbing.Hash]int{} // the mark a commit was last walked with
	q := &commitQueue{from}
	if to.Hash != from.Hash {
		mark[to.Hash] = wanted
		heap.Push(q, to)
	}
	n := 0
	var oldestCounted time.Time
	for q.Len() > 0 {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if q.allExcluded(mark) && (n == 0 || (*q)[0].Committer.When.Before(oldestCounted)) {
			break // nothing queued can reach a counted commit any more
		}
		c := heap.Pop(q).(*object.Commit)
		m := mark[c.Hash]
		if done[c.Hash] == m {
			continue // queued twice with the same mark
		}
		prev := done[c.Hash]
		done[c.Hash] = m
		switch m {
		case wanted:
			n++
			if n == 1 || c.Committer.When.Before(oldestCounted) {
				oldestCounted = c.Committer.When
			}
		case excluded:
			if prev == wanted {
				n-- // reached from to's side first, but from has it too
			}
		}
		for _, h := range c.ParentHashes {
			if mark[h] == excluded || (m == wanted && mark[h] == wanted) {
				continue
			}
			p, err := repo.CommitObject(h)
			if err != nil {
				return 0, fmt.Errorf("read commit %s: %w", h, err)
			}
			mark[h] = m
			heap.Push(q, p)
		}
	}
	return n, nil
}

// commitQueue is a max-heap of commits by committer date.
type commitQueue []*object.Commit

func (q commitQueue) Len() int           { return len(q) }
func (q commitQueue) Less(i, j int) bool { return q[i].Committer.When.After(q[j].Committer.When) }
func (q commitQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *commitQueue) Push(x any)        { *q = append(*q, x.(*object.Commit)) }
func (q *commitQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}

// allExcluded reports whether every queued commit is reachable from the
// excluded side, i.e. to's side has nothing left to visit.
func (q commitQueue) allExcluded(mark map[plumbing.Hash]int) bool {
	for _, c := range q {
		if mark[c.Hash] != excluded {
			return false
		}
	}
	return true
}
