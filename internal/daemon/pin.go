package daemon

import (
	"context"
	"fmt"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/notify"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// rollbackStack returns a stack to a revision (by default the last healthy
// one before the one it runs) through the same gated roll as a sync, and
// pins it there until unpinStack.
func (d *Daemon) rollbackStack(ctx context.Context, name, to string) error {
	if err := d.pin(ctx, name, to); err != nil {
		return err
	}
	return d.reconcile(ctx, sync.TriggerRollback, name)
}

// pin records an operator's rollback of a stack: the revision it returns
// to (by default the last healthy one before the one it runs), pinned.
func (d *Daemon) pin(ctx context.Context, name, to string) error {
	state, ok, err := d.store.Stack(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("rollback: stack %s: %w", name, api.ErrNotFound)
	}
	rev := to
	if rev == "" {
		if rev, err = d.previousHealthy(ctx, state); err != nil {
			return err
		}
	} else {
		r, err := d.source.Lookup(ctx, to)
		if err != nil {
			return fmt.Errorf("rollback %s: %w", name, err)
		}
		rev = r.SHA
		if d.signers != nil {
			if _, err := d.source.Verify(ctx, rev, d.signers); err != nil {
				return fmt.Errorf("rollback %s to %s: %w", name, ids.Short(rev), err)
			}
		}
	}
	if err := d.rec.Pin(ctx, name, rev); err != nil {
		return fmt.Errorf("rollback %s: pin: %w", name, err)
	}
	// A pin must outlive a lost -wal file: the operator rolled back for a reason.
	d.checkpoint(ctx)
	d.log.Info("operator rollback", "stack", name, "to", rev)
	d.metrics.Rollback(name, "operator")
	d.notifier.Send(notify.RolledBack, name, "operator rollback to "+rev)
	return nil
}

// previousHealthy is the revision an operator's rollback goes to by
// default: the last healthy one, or, when that is the one running, the one
// the running revision was deployed over.
func (d *Daemon) previousHealthy(ctx context.Context, state store.StackState) (string, error) {
	if h := state.LastHealthyRevision; h != "" && h != state.Revision {
		return h, nil
	}
	ds, err := d.store.Deployments(ctx, state.Name, 100)
	if err != nil {
		return "", err
	}
	for _, dep := range ds {
		if dep.Outcome == string(sync.OutcomeSucceeded) && dep.To == state.Revision && dep.From != "" && dep.From != state.Revision {
			return dep.From, nil
		}
	}
	return "", fmt.Errorf("rollback %s: no earlier healthy revision recorded; name one with --to", state.Name)
}

// unpinStack lets a pinned stack follow the branch again, and syncs it.
func (d *Daemon) unpinStack(ctx context.Context, name string) error {
	if err := d.unpin(ctx, name); err != nil {
		return err
	}
	return d.reconcile(ctx, sync.TriggerManual, name)
}

func (d *Daemon) unpin(ctx context.Context, name string) error {
	_, ok, err := d.store.Stack(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("unpin: stack %s: %w", name, api.ErrNotFound)
	}
	if err := d.rec.Unpin(ctx, name); err != nil {
		return fmt.Errorf("unpin %s: %w", name, err)
	}
	d.checkpoint(ctx) // a pin's end must outlive a lost -wal file too
	return nil
}
