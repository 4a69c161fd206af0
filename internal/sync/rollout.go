package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/store"
)

// HoldForRollout records that the fleet's rollout holds revision of stack
// name on this host (internal/fleet): nothing is changed, the stack is out
// of sync with revision. With record, history gets a deployment of
// outcome held whose error is reason; the caller records it once per
// revision and verdict, not at every poll.
func (r *Reconciler) HoldForRollout(ctx context.Context, name, revision string, trigger Trigger, reason string, record bool) error {
	prev, _, err := r.Store.Stack(ctx, name)
	if err != nil {
		return fmt.Errorf("hold %s: read state: %w", name, err)
	}
	state := prev
	aim(&state, name, revision)
	markHeldByRollout(&state, revision)
	var recErr error
	if record {
		log := r.Log.With("stack", name, "revision", ids.Short(revision))
		_, recErr = r.deployment(ctx, log, "hold", store.Deployment{Stack: name, Trigger: string(trigger), From: prev.Revision, To: revision},
			func(*slog.Logger, int64) (Outcome, error) { return OutcomeHeld, errors.New(reason) })
	}
	if state == prev {
		return recErr
	}
	return errors.Join(recErr, r.putStack(ctx, state))
}
