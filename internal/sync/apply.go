package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	gosync "sync"
	"time"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// apply runs a plan's actions in order, recording each as a step with what
// happened and how long it took. Consecutive recreates of one service run in
// batches of its roll's parallelism, with its delay between batches. A
// failed health gate is handled per the service's failure_action: rollback
// (the error goes up and the caller rolls the stack back), pause (the roll
// stops here) or continue (the roll goes on); pause and continue join
// ErrKeptForward to the error. Any other failure stops the roll: later
// actions may depend on earlier ones.
func (r *Reconciler) apply(ctx context.Context, log *slog.Logger, deployment int64, st *stack.Stack, desired Desired, plan Plan) error {
	services := map[string]DesiredService{}
	for _, s := range desired.Services {
		services[s.Name] = s
	}
	var continued []error
	for rest := plan.Actions; len(rest) > 0; {
		batch := nextBatch(rest, services)
		rest = rest[len(batch):]
		err := r.runBatch(ctx, log, deployment, st, services, batch)
		svc := services[batch[0].Service]
		if err != nil {
			if !health.IsFailure(err) {
				return err
			}
			switch svc.Roll.FailureAction {
			case FailurePause:
				log.Warn("roll paused by failure_action", "service", svc.Name, "err", err)
				return errors.Join(err, ErrKeptForward)
			case FailureContinue:
				log.Warn("roll goes on by failure_action", "service", svc.Name, "err", err)
				continued = append(continued, err)
			default:
				return err
			}
		}
		if batch[0].Kind == ActRecreate && svc.Roll.Delay > 0 && len(rest) > 0 && rest[0].Kind == ActRecreate && rest[0].Service == svc.Name {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(svc.Roll.Delay):
			}
		}
	}
	if len(continued) > 0 {
		return errors.Join(append(continued, ErrKeptForward)...)
	}
	return nil
}

// nextBatch is the actions that run together at the head of actions: up to
// the service's parallelism of consecutive recreates (0: all of them), or
// else the first action alone.
func nextBatch(actions []Action, services map[string]DesiredService) []Action {
	first := actions[0]
	if first.Kind != ActRecreate {
		return actions[:1]
	}
	limit := services[first.Service].Roll.Parallelism
	n := 1
	for n < len(actions) && actions[n].Kind == ActRecreate && actions[n].Service == first.Service && (limit == 0 || n < limit) {
		n++
	}
	return actions[:n]
}

// runBatch runs actions concurrently, records a step for each, and returns
// their failures joined.
func (r *Reconciler) runBatch(ctx context.Context, log *slog.Logger, deployment int64, st *stack.Stack, services map[string]DesiredService, batch []Action) error {
	errs := make([]error, len(batch))
	var wg gosync.WaitGroup
	for i, a := range batch {
		wg.Go(func() {
			errs[i] = r.runStep(ctx, log, deployment, st, services, a)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runStep runs one action and records it as a step.
func (r *Reconciler) runStep(ctx context.Context, log *slog.Logger, deployment int64, st *stack.Stack, services map[string]DesiredService, a Action) error {
	began := now()
	var notes stepNotes
	err := r.do(ctx, st, services, a, &notes)
	step := store.Step{DeploymentID: deployment, At: began, Action: string(a.Kind), Service: a.Service, Replica: a.Number, Container: a.Name,
		Detail: strings.Join(append(append([]string(nil), a.Reasons...), notes...), "; "), Duration: time.Since(began)}
	if err != nil {
		step.Error = err.Error()
	}
	// Deployment 0: a heal whose deployment could not be recorded, so
	// neither can its steps.
	if deployment != 0 {
		if _, serr := r.Store.AddStep(ctx, step); serr != nil {
			log.Error("record step", "err", serr)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", a, err)
	}
	log.Info("step done", "action", a.Kind, "service", a.Service, "container", a.Name, "detail", step.Detail, "took", step.Duration.Round(time.Millisecond))
	return nil
}

// stepNotes say what an action did, for the step's record: which container
// started, how long its gate took, what was stopped or put back.
type stepNotes []string

func (n *stepNotes) add(format string, args ...any) { *n = append(*n, fmt.Sprintf(format, args...)) }

func (r *Reconciler) do(ctx context.Context, st *stack.Stack, services map[string]DesiredService, a Action, notes *stepNotes) error {
	extra := func() map[string]string {
		return map[string]string{engine.LabelStack: st.Name}
	}
	svc := services[a.Service]
	gate := svc.Gate
	if svc.Roll.Monitor > 0 {
		gate.Monitor = svc.Roll.Monitor
	}
	switch a.Kind {
	case ActCreateNetwork:
		_, err := r.Runtime.EnsureNetwork(ctx, st.Project, a.Key, extra())
		return err
	case ActCreateVolume:
		return r.Runtime.EnsureVolume(ctx, st.Project, a.Key, extra())
	case ActRestoreVolume:
		if r.Filler == nil {
			return errors.New("no filler for volumes")
		}
		detail, err := r.Filler.Fill(ctx, st, a.Key)
		if detail != "" {
			notes.add("%s", detail)
		}
		return err
	case ActCreate:
		spec, err := r.specFor(ctx, st, svc, a.Number)
		if err != nil {
			return err
		}
		began := time.Now()
		id, err := r.Runtime.CreateContainer(ctx, spec)
		if err != nil {
			return startFailed(spec.Name, err)
		}
		created, began := took(began), time.Now()
		if err := r.Runtime.StartContainer(ctx, id); err != nil {
			// Nothing half made is left behind: a created container that
			// never ran would only be planned again as a start.
			if rmErr := r.Runtime.RemoveContainer(context.WithoutCancel(ctx), id); rmErr != nil {
				return errors.Join(startFailed(spec.Name, err), rmErr)
			}
			notes.add("new %s removed: it could not start", ids.Short(id))
			return startFailed(spec.Name, err)
		}
		notes.add("started %s (create %s, start %s)", ids.Short(id), created, took(began))
		return r.startedGate(ctx, id, spec, gate, notes)
	case ActRecreate:
		spec, err := r.specFor(ctx, st, svc, a.Number)
		if err != nil {
			return err
		}
		if svc.Roll.StartFirst {
			return r.recreateStartFirst(ctx, a, spec, gate, notes)
		}
		return r.recreate(ctx, a, spec, gate, notes)
	case ActStart:
		if err := r.Runtime.StartContainer(ctx, a.ID); err != nil {
			return err
		}
		return r.startedGate(ctx, a.ID, svc.Specs[a.Number-1], gate, notes)
	case ActUnpause:
		if err := r.Runtime.UnpauseContainer(ctx, a.ID); err != nil {
			return err
		}
		return r.gate(ctx, a.ID, gate, notes)
	case ActRestart:
		if err := r.Runtime.RestartContainer(ctx, a.ID, nil); err != nil {
			return err
		}
		return r.gate(ctx, a.ID, gate, notes)
	case ActRemove:
		if len(svc.Specs) > 0 { // a service still in the file, scaled down
			r.preStop(ctx, a.ID, svc.Specs[0], notes)
		}
		if err := r.Runtime.StopContainer(ctx, a.ID, nil); err != nil {
			return err
		}
		return r.Runtime.RemoveContainer(ctx, a.ID)
	case ActRemoveNetwork:
		err := r.Runtime.RemoveNetwork(ctx, a.ID)
		if errors.Is(err, engine.ErrNetworkLeaked) {
			// The containers are gone; what is left is the engine's to free.
			// Failing here would keep the stack failing until dockerd restarts.
			r.Log.Warn("network left behind", "network", a.Name, "err", err)
			notes.add("left network %s: %v", a.Name, err)
			return nil
		}
		return err
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}

// specFor is the container to create for replica number of svc. For a
// service that shares another's container it is made again from what runs
// now: that container may have been recreated since the plan was made.
func (r *Reconciler) specFor(ctx context.Context, st *stack.Stack, svc DesiredService, number int) (engine.ContainerSpec, error) {
	spec := svc.Specs[number-1]
	if len(svc.Shares) == 0 {
		return spec, nil
	}
	running, err := r.Runtime.Containers(ctx, st.Name)
	if err != nil {
		return spec, err
	}
	fresh, err := r.desireService(st, spec.Config.Labels[engine.LabelRevision], st.Project.Services[svc.Name], svc.ImageID, dependencyConditions(st.Project), running)
	if err != nil {
		return spec, err
	}
	return fresh.Specs[number-1], nil
}

// startedGate runs the post_start hooks of a container just started, then
// waits for its gate. A hook that fails fails the gate: compose fails the
// start, and the roll handles it as any unhealthy container.
func (r *Reconciler) startedGate(ctx context.Context, id string, spec engine.ContainerSpec, g health.Gate, notes *stepNotes) error {
	for _, h := range spec.PostStart {
		if err := r.Runtime.RunHook(ctx, id, h); err != nil {
			notes.add("post_start hook of %s failed", ids.Short(id))
			return &health.Failure{Container: spec.Name, Reason: "post_start hook: " + err.Error()}
		}
	}
	if len(spec.PostStart) > 0 {
		notes.add("post_start hooks ran")
	}
	return r.gate(ctx, id, g, notes)
}

// preStop runs the pre_stop hooks of a container about to be stopped (none
// when it is not running). A failure is noted, and the stop goes on: a
// broken hook must not keep an old container in place.
func (r *Reconciler) preStop(ctx context.Context, id string, spec engine.ContainerSpec, notes *stepNotes) {
	for _, h := range spec.PreStop {
		err := r.Runtime.RunHook(ctx, id, h)
		if errors.Is(err, engine.ErrNotRunning) {
			return // stopped already: there is nothing to prepare
		}
		if err != nil {
			notes.add("pre_stop hook of %s failed: %v", ids.Short(id), err)
			r.Log.Warn("pre_stop hook failed", "container", spec.Name, "err", err)
		}
	}
}

// took is the time since began, as a step's notes say it.
func took(began time.Time) time.Duration { return time.Since(began).Round(time.Millisecond) }

// gate waits for a container's health gate and notes how long it took.
func (r *Reconciler) gate(ctx context.Context, id string, g health.Gate, notes *stepNotes) error {
	began := time.Now()
	err := r.Runtime.WaitHealthy(ctx, id, g)
	took := time.Since(began).Round(10 * time.Millisecond)
	switch {
	case err == nil && g.Completes:
		notes.add("%s completed in %s", ids.Short(id), took)
	case err == nil:
		notes.add("%s passed its gate in %s", ids.Short(id), took)
	case health.IsFailure(err):
		notes.add("%s failed its gate after %s", ids.Short(id), took)
	}
	return err
}
