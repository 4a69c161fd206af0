package sync

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/store"
)

// A stack's row in the store (store.StackState) changes only here: each
// transition below names one thing that happened to the stack, and
// putStack writes the row. The reconciler's entry points and the daemon
// (Pin, Unpin, MarkChecked, Adopt) call them; nothing else writes a row.
//
// The fields, and who moves them:
//   - Target: the revision wanted (every sync, a pin, a rolled-back
//     revision);
//   - Revision: the revision applied (synced, or kept forward by pause or
//     continue);
//   - Sync and Error: the SyncState and why;
//   - Health: the worst of the containers' health when last looked at;
//   - LastHealthyRevision: the revision last seen Synced and Healthy,
//     where a failed roll returns to;
//   - FailedRevision: a revision held, not retried until the branch moves
//     or `sync --retry`;
//   - Pinned: an operator's rollback holds the stack on Target.

// aim starts a transition of s toward revision of stack name.
func aim(s *store.StackState, name, revision string) {
	s.Name, s.Target = name, revision
}

// markProgressing: a plan is being applied.
func markProgressing(s *store.StackState) {
	s.Sync = string(Progressing)
}

// markSynced: the stack runs revision as its files say, with health h;
// warning is what a stack in sync still shows (Plan.Warnings).
func markSynced(s *store.StackState, revision string, h Health, warning string) {
	s.Revision = revision
	s.Sync, s.Error, s.Health = string(Synced), warning, string(h)
	if h == Healthy {
		s.LastHealthyRevision = revision
	}
}

// markFailed: the last attempt failed with err; health h is what runs.
func markFailed(s *store.StackState, err error, h Health) {
	s.Sync, s.Error, s.Health = string(Failed), err.Error(), string(h)
}

// markHeld: revision would fail the same way again; polls leave it alone.
func markHeld(s *store.StackState, revision string) {
	s.FailedRevision = revision
}

// unhold: a revision succeeded, so nothing is held any more.
func unhold(s *store.StackState) {
	s.FailedRevision = ""
}

// markKeptForward: a failed roll's failure_action (pause or continue) left
// the stack on revision's files, where polls do not roll it anywhere.
func markKeptForward(s *store.StackState, revision string) {
	s.Revision = revision
}

// markHeldByRollout: the rollout holds revision, which the stack does not
// run: what runs stays, out of sync with what is wanted.
func markHeldByRollout(s *store.StackState, revision string) {
	s.Target, s.Sync = revision, string(OutOfSync)
}

// markRolledBack: failed did not pass (cause) and the stack was rolled
// back to good; rollbackErr is the rollback's own failure, if any.
func markRolledBack(s *store.StackState, good, failed string, cause, rollbackErr error) {
	s.Target, s.Sync = failed, string(Failed)
	markHeld(s, failed)
	why := "failed its health gate"
	if !health.IsFailure(cause) && IsStartFailure(cause) {
		why = "could not start its containers"
	}
	s.Error = fmt.Sprintf("revision %s %s and was rolled back to %s: %v", ids.Short(failed), why, ids.Short(good), cause)
	if rollbackErr != nil {
		s.Error += fmt.Sprintf("; the rollback failed too: %v", rollbackErr)
	}
}

// markInvalid: revision did not load (loadErr); what runs stays, with
// health h.
func markInvalid(s *store.StackState, loadErr error, h Health) {
	s.Sync, s.Error, s.Health = string(Invalid), loadErr.Error(), string(h)
}

// settle moves state to where a sync of revision that ended in applyErr
// left the stack, with health h, and returns the deployment's outcome.
func settle(log *slog.Logger, state *store.StackState, prev store.StackState, revision string, plan Plan, h Health, applyErr error) Outcome {
	if applyErr == nil {
		unhold(state)
		markSynced(state, revision, h, warning(log, prev, plan))
		log.Info("sync succeeded")
		return OutcomeSucceeded
	}
	outcome := OutcomeFailed
	markFailed(state, applyErr, h)
	if Holds(applyErr) {
		// Held: the same failure would come at every poll, and each
		// attempt of a stop-first roll stops the working container.
		markHeld(state, revision)
		if restoredOnly(applyErr) {
			outcome = OutcomeRolledBack
		}
	}
	if keptForward(applyErr) {
		markKeptForward(state, revision)
	}
	log.Error("sync failed", "err", applyErr)
	return outcome
}

// warning is what a stack in sync shows as its error: the plan's warnings
// (Plan.Warnings), logged once, when they first show, not at every poll.
func warning(log *slog.Logger, prev store.StackState, plan Plan) string {
	w := plan.Warning()
	if w != "" && w != prev.Error {
		log.Warn("the stack uses what it did not create", "warning", w)
	}
	return w
}

// MarkChecked records what a drift check of stack name found: the health
// of what runs and, for a stack in sync, why it is not quite (healErr, a
// heal that failed; else, when nothing drifted, the plan's warning). A
// stack whose sync of this same revision failed before it changed anything
// (a registry away, nothing held) compares clean now, so it is in sync.
// err is the failure to read the row; wrote is the outcome of writing it
// (nil: written), which a caller that goes on without the record reports.
func (r *Reconciler) MarkChecked(ctx context.Context, name string, h Health, plan Plan, drifted bool, healErr error) (wrote, err error) {
	// The row is read again: a heal recorded its deployment meanwhile.
	s, _, err := r.Store.Stack(ctx, name)
	if err != nil {
		return nil, err
	}
	s.Health = string(h)
	if s.Sync == string(Failed) && s.FailedRevision == "" {
		s.Sync, s.Error = string(Synced), ""
	}
	if s.Sync == string(Synced) {
		switch {
		case healErr != nil:
			s.Error = "heal failed: " + healErr.Error()
		case !drifted:
			// A volume used though it was not made for the stack is said
			// once, and stays said: it is no drift, nothing heals it.
			s.Error = warning(r.Log.With("stack", name), s, plan)
		}
		if h == Healthy {
			s.LastHealthyRevision = s.Revision
		}
	}
	s.UpdatedAt = now()
	return r.Store.PutStack(ctx, s), nil
}

// Pin holds stack name on revision (an operator's rollback): polls leave
// it there until Unpin. The stack must be recorded.
func (r *Reconciler) Pin(ctx context.Context, name, revision string) error {
	return r.update(ctx, name, func(s *store.StackState) { s.Pinned, s.Target = true, revision })
}

// Unpin lets stack name follow the branch again.
func (r *Reconciler) Unpin(ctx context.Context, name string) error {
	return r.update(ctx, name, func(s *store.StackState) { s.Pinned = false })
}

// Adopt records a stack found running without a row (a lost database):
// it runs revision, which counts as its last healthy one, and is out of
// sync until a reconcile looks. A recorded stack is left as it is.
func (r *Reconciler) Adopt(ctx context.Context, name, revision string) error {
	if _, ok, err := r.Store.Stack(ctx, name); err != nil || ok {
		return err
	}
	s := store.StackState{Name: name, LastHealthyRevision: revision, Sync: string(OutOfSync), Health: string(Unknown)}
	if err := r.Store.PutStack(ctx, s); err != nil {
		return fmt.Errorf("record stack %s: %w", name, err)
	}
	return nil
}

// update reads the row of stack name, changes it and writes it back.
func (r *Reconciler) update(ctx context.Context, name string, change func(*store.StackState)) error {
	s, _, err := r.Store.Stack(ctx, name)
	if err != nil {
		return err
	}
	change(&s)
	return r.putStack(ctx, s)
}

// putStack writes the row, stamped now.
func (r *Reconciler) putStack(ctx context.Context, st store.StackState) error {
	st.UpdatedAt = now()
	if err := r.Store.PutStack(ctx, st); err != nil {
		return fmt.Errorf("record stack %s: %w", st.Name, err)
	}
	return nil
}
