package daemon

import (
	"context"
	"path"
	"slices"

	"github.com/gitopsd/gitopsd/internal/source"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// checkDescends refuses a signed head that does not descend from the head
// applied before it (see source.CheckDescends), unless the configuration
// allows rewritten history. prev is the source state the last fetch
// recorded: its head is the last trusted one, and it lives in the store, so
// a restart does not forget it and a replay after a reboot is refused too.
func (d *Daemon) checkDescends(ctx context.Context, head string, prev store.SourceState) error {
	if d.cfg.Source.Verify.AllowRewrite || prev.Head == "" {
		return nil
	}
	if prev.URL != source.Redact(d.cfg.Source.URL) || prev.Branch != d.cfg.Source.Branch {
		// The operator pointed gitopsd at another repository or branch,
		// whose history owes nothing to the old one's.
		return nil
	}
	return d.source.CheckDescends(ctx, head, prev.Head)
}

// refuseLeftOut makes Invalid each stack whose folder lost a file to the
// checkout's size limits (see source.LeftOut), whether or not it loaded
// without it: the revision is not what its author wrote. views are the
// revisions of held stacks; the others are at head.
func (d *Daemon) refuseLeftOut(res *stack.Result, head string, views map[string]string) {
	leftOut := func(name string) error {
		rev := head
		if v, ok := views[name]; ok {
			rev = v
		}
		return d.source.LeftOut(rev, path.Join("stacks", name))
	}
	for name := range res.Invalid {
		if err := leftOut(name); err != nil {
			res.Invalid[name] = err
		}
	}
	res.Stacks = slices.DeleteFunc(res.Stacks, func(st *stack.Stack) bool {
		err := leftOut(st.Name)
		if err != nil {
			res.Invalid[st.Name] = err
		}
		return err != nil
	})
}
