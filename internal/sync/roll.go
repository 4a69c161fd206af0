package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/ids"
)

// recreate replaces a container stop-first, keeping the old one (renamed and
// stopped) until the new one has passed its health gate, so a failure puts
// the old one back: the same container, restarted, not a re-creation.
func (r *Reconciler) recreate(ctx context.Context, a Action, spec engine.ContainerSpec, gate health.Gate, notes *stepNotes) error {
	oldName := a.Name
	parked := fmt.Sprintf("%s_%s", ids.Short(a.ID), spec.Name)
	// A host port another process holds would fail the new container's
	// start after the old one stopped: refuse while the old one serves.
	// When the ports cannot be checked, the start is the check.
	if inUse, err := r.Runtime.PortsInUse(ctx, spec, a.ID); err == nil && len(inUse) > 0 {
		notes.add("old %s kept running: host port %s in use", ids.Short(a.ID), strings.Join(inUse, ", "))
		cause := fmt.Errorf("host port %s: bind: address already in use (held by another process)", strings.Join(inUse, ", "))
		return errors.Join(startFailed(spec.Name, cause), ErrRestored)
	}
	// A roll cut off by a crash may have parked it already.
	if oldName != parked {
		if err := r.Runtime.RenameContainer(ctx, a.ID, parked); err != nil {
			return fmt.Errorf("park old container: %w", err)
		}
	}
	restore := func(cause error) error {
		// Best effort, even when ctx is done: the next reconcile converges
		// from whatever is left.
		return r.restart(context.WithoutCancel(ctx), a.ID, oldName, parked, cause, notes)
	}
	began := time.Now()
	id, err := r.Runtime.CreateContainer(ctx, spec)
	if err != nil {
		return restore(startFailed(spec.Name, fmt.Errorf("create: %w", err)))
	}
	created := took(began)
	crashPoint(CrashStopFirstCreated)
	r.preStop(ctx, a.ID, spec, notes)
	if err := r.Runtime.StopContainer(ctx, a.ID, nil); err != nil {
		_ = r.Runtime.RemoveContainer(ctx, id)
		return restore(fmt.Errorf("stop old: %w", err))
	}
	notes.add("old %s stopped and kept", ids.Short(a.ID))
	crashPoint(CrashStopFirstOldStopped)
	began = time.Now()
	if err := r.Runtime.StartContainer(ctx, id); err != nil {
		_ = r.Runtime.RemoveContainer(context.WithoutCancel(ctx), id)
		return restore(startFailed(spec.Name, fmt.Errorf("start: %w", err)))
	}
	notes.add("new %s started (create %s, start %s)", ids.Short(id), created, took(began))
	crashPoint(CrashStopFirstNewStarted)
	if err := r.startedGate(ctx, id, spec, gate, notes); err != nil {
		return r.giveBack(ctx, a.ID, id, oldName, parked, err, notes)
	}
	if err := r.Runtime.RemoveContainer(ctx, a.ID); err != nil {
		return fmt.Errorf("remove old: %w", err)
	}
	notes.add("old %s removed", ids.Short(a.ID))
	return nil
}

// giveBack puts the old container (parked under parked) back in place of
// the new one (id), which failed its gate: the clients of a stop-first
// service wait for nothing else. The failed container is killed, not
// stopped gracefully, to free its ports; the old one starts under its
// parked name (a name is nothing to the clients), and only then is the
// failed one removed and the old one given its name back. A crash in
// between leaves the old one running and the failed one stopped, which the
// planner tells apart as after a crash at CrashStopFirstCreated.
func (r *Reconciler) giveBack(ctx context.Context, old, id, oldName, parked string, cause error, notes *stepNotes) error {
	bg := context.WithoutCancel(ctx) // best effort: the next reconcile converges from what is left
	now := 0
	if err := r.Runtime.StopContainer(bg, id, &now); err != nil {
		// It may hold the ports still: remove it before the old one starts.
		rmErr := r.Runtime.RemoveContainer(bg, id)
		return r.restart(bg, old, oldName, parked, errors.Join(cause, err, rmErr), notes)
	}
	serr := r.Runtime.StartContainer(bg, old)
	rmErr := r.Runtime.RemoveContainer(bg, id)
	var rerr error
	if oldName != parked {
		rerr = r.Runtime.RenameContainer(bg, old, oldName)
	}
	if serr == nil && rmErr == nil && rerr == nil {
		notes.add("new %s killed, old %s restarted", ids.Short(id), ids.Short(old))
		return errors.Join(cause, ErrRestored)
	}
	return errors.Join(cause, serr, rmErr, rerr)
}

// restart gives a parked old container its name back and starts it.
func (r *Reconciler) restart(ctx context.Context, old, oldName, parked string, cause error, notes *stepNotes) error {
	var rerr error
	if oldName != parked {
		rerr = r.Runtime.RenameContainer(ctx, old, oldName)
	}
	serr := r.Runtime.StartContainer(ctx, old)
	if rerr == nil && serr == nil {
		notes.add("old %s restarted", ids.Short(old))
		return errors.Join(cause, ErrRestored)
	}
	return errors.Join(cause, rerr, serr)
}

// rollConfig reads one of compose's update_config or rollback_config (nil:
// all defaults). The order is start-first by default where the service can
// run twice, and stop-first where it cannot (a container_name or a fixed
// host port would collide), whatever the file asks. Parallelism defaults to
// 1, as in swarm; 0 rolls every replica at once.
func rollConfig(svc types.ServiceConfig, c *types.UpdateConfig, defaultAction string) (RollConfig, error) {
	// Two containers in one network namespace would bind the same ports.
	sharesNetwork := strings.HasPrefix(svc.NetworkMode, types.ServicePrefix) || strings.HasPrefix(svc.NetworkMode, types.ContainerPrefix)
	canRunTwice := svc.ContainerName == "" && !sharesNetwork
	for _, p := range svc.Ports {
		if p.Published != "" && !strings.Contains(p.Published, "-") {
			canRunTwice = false
		}
	}
	rc := RollConfig{StartFirst: canRunTwice, Parallelism: 1, FailureAction: defaultAction}
	if c == nil {
		return rc, nil
	}
	if c.Order != "" {
		rc.StartFirst = canRunTwice && c.Order == "start-first"
	}
	if c.Parallelism != nil {
		rc.Parallelism = int(*c.Parallelism)
	}
	rc.Delay = time.Duration(c.Delay)
	rc.Monitor = time.Duration(c.Monitor)
	switch c.FailureAction {
	case "":
	case FailureRollback, FailurePause, FailureContinue:
		rc.FailureAction = c.FailureAction
	default:
		return rc, fmt.Errorf("failure_action %q: want rollback, pause or continue", c.FailureAction)
	}
	return rc, nil
}

// recreateStartFirst starts the new container beside the old one and stops
// the old one only after the new one passed its gate, so the service keeps
// answering throughout. On failure the new container goes and the old one
// never stopped. A crash in between leaves two replicas with one number; the
// planner keeps the one with the canonical name and removes the other.
func (r *Reconciler) recreateStartFirst(ctx context.Context, a Action, spec engine.ContainerSpec, gate health.Gate, notes *stepNotes) error {
	next := spec
	next.Name = fmt.Sprintf("%s_next_%s", ids.Short(a.ID), spec.Name)
	began := time.Now()
	id, err := r.Runtime.CreateContainer(ctx, next)
	if err != nil {
		// Nothing was stopped: the old container serves on.
		return errors.Join(startFailed(spec.Name, fmt.Errorf("create: %w", err)), ErrRestored)
	}
	created, began := took(began), time.Now()
	discard := func(cause error) error {
		rmErr := r.Runtime.RemoveContainer(context.WithoutCancel(ctx), id)
		if rmErr != nil {
			return errors.Join(cause, rmErr)
		}
		notes.add("new %s removed, old %s kept serving", ids.Short(id), ids.Short(a.ID))
		return errors.Join(cause, ErrRestored)
	}
	if err := r.Runtime.StartContainer(ctx, id); err != nil {
		return discard(startFailed(spec.Name, fmt.Errorf("start: %w", err)))
	}
	notes.add("new %s started beside old %s (create %s, start %s)", ids.Short(id), ids.Short(a.ID), created, took(began))
	crashPoint(CrashStartFirstNewStarted)
	if err := r.startedGate(ctx, id, spec, gate, notes); err != nil {
		return discard(err)
	}
	r.preStop(ctx, a.ID, spec, notes)
	if err := r.Runtime.StopContainer(ctx, a.ID, nil); err != nil {
		return fmt.Errorf("stop old: %w", err)
	}
	if err := r.Runtime.RemoveContainer(ctx, a.ID); err != nil {
		return fmt.Errorf("remove old: %w", err)
	}
	notes.add("old %s stopped and removed", ids.Short(a.ID))
	crashPoint(CrashStartFirstOldRemoved)
	if err := r.Runtime.RenameContainer(ctx, id, spec.Name); err != nil {
		return fmt.Errorf("give the new container its name: %w", err)
	}
	return nil
}
