package daemon

import (
	"context"
	"fmt"
	gosync "sync"
	"sync/atomic"

	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// convergeAll converges stacks (in name order), sync.parallel of them at
// a time: a stack waiting for its health gates does not hold up the
// others. First the images of every stack that deploys are pulled and
// built, as many at once, so no roll waits on another stack's pull. Each
// stack is still converged by one goroutine from start to end, and writes
// only its own row and deployments (the store serialises the writes), so
// what a crash leaves is what it left one stack at a time: each stack's
// own half-done roll, converged by the next start. It returns the error
// of each stack that failed.
func (d *Daemon) convergeAll(ctx context.Context, stacks []*stack.Stack, states map[string]store.StackState, head string, trigger sync.Trigger, v liveView) []error {
	n := d.cfg.Sync.Stacks()
	preps := make([]*sync.Prepared, len(stacks))
	inOrder(n, len(stacks), func(i int) {
		st := stacks[i]
		state, known := states[st.Name]
		rev := target(st.Name, head, v)
		if !d.steady(st.Name, state, known, rev, trigger) && !d.rolloutMayHold(st.Name, rev, head, trigger) {
			preps[i] = d.rec.PrepareSync(ctx, st, rev, trigger)
		}
	})
	after := externalOrder(stacks)
	done := make([]chan struct{}, len(stacks))
	for i := range done {
		done[i] = make(chan struct{})
	}
	errs := make([]error, len(stacks))
	inOrder(n, len(stacks), func(i int) {
		defer close(done[i])
		for _, j := range after[i] {
			<-done[j]
		}
		st := stacks[i]
		state, known := states[st.Name]
		if err := d.converge(ctx, st, state, known, head, trigger, v, preps[i]); err != nil {
			errs[i] = &stackError{fmt.Errorf("stack %s: %w", st.Name, err)}
		}
	})
	return errs
}

// rolloutMayHold says whether the fleet's rollout may hold rev of the
// stack name (rolloutHolds decides, when the stack's turn comes): its
// images are then not prepared ahead, so a host the rollout holds pulls
// and builds nothing for it.
func (d *Daemon) rolloutMayHold(name, rev, head string, trigger sync.Trigger) bool {
	d.rollouts.mu.Lock()
	defer d.rollouts.mu.Unlock()
	sr := d.rollouts.stacks[name]
	return sr != nil && sr.rollout != nil && sr.wave != 0 && rev == head && trigger != sync.TriggerRollback && trigger != sync.TriggerSkipWave
}

// inOrder calls do(0) ... do(count-1) from at most n goroutines at once,
// starting them in order: with n = 1 it is a plain loop.
func inOrder(n, count int, do func(i int)) {
	var next atomic.Int64
	var wg gosync.WaitGroup
	for range min(max(n, 1), count) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < count; i = int(next.Add(1) - 1) {
				do(i)
			}
		})
	}
	wg.Wait()
}

// externalOrder says, for each stack, the stacks before it in the list
// whose converge it waits for: those that create a network or volume it
// uses as external (by name). One stack after another in name order, such
// a stack found what it needs made; it still does. Only earlier stacks are
// waited for, so the waits cannot form a cycle, and inOrder has started
// each of them before it starts the stack that waits.
func externalOrder(stacks []*stack.Stack) [][]int {
	made := map[string]int{} // network or volume name -> the first stack that makes it
	after := make([][]int, len(stacks))
	for i, st := range stacks {
		p := st.Project
		seen := map[int]bool{}
		wait := func(kind, name string) {
			if j, ok := made[kind+name]; ok && !seen[j] {
				seen[j] = true
				after[i] = append(after[i], j)
			}
		}
		for _, n := range p.Networks {
			if n.External {
				wait("network:", n.Name)
			}
		}
		for _, vol := range p.Volumes {
			if vol.External {
				wait("volume:", vol.Name)
			}
		}
		for _, n := range p.Networks {
			if _, ok := made["network:"+n.Name]; !bool(n.External) && !ok {
				made["network:"+n.Name] = i
			}
		}
		for _, vol := range p.Volumes {
			if _, ok := made["volume:"+vol.Name]; !bool(vol.External) && !ok {
				made["volume:"+vol.Name] = i
			}
		}
	}
	return after
}
