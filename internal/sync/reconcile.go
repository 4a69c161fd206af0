package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"time"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// Reconciler brings stacks to their desired state and records what it did.
type Reconciler struct {
	// Runtime is the container engine the stacks run on (EngineRuntime).
	Runtime Runtime
	Store   *store.Store
	Log     *slog.Logger
	// MaxBuildContext bounds a build context in bytes (0: no bound).
	MaxBuildContext int64
	// FilesKey keys the digest of secrets and configs written on
	// containers (engine.LabelFiles), so it says nothing of a short secret.
	FilesKey []byte
	// InstanceID names this gitopsd on the images it builds
	// (engine.LabelBuiltBy).
	InstanceID string
	// CheckoutDirs hold the repository's checkouts (and views of them):
	// a bind into one, like a bind into the stack's own folder, is mounted
	// read-only (see readOnlyCheckoutBinds).
	CheckoutDirs []string
	// StoreFailed, if set, hears of a record a heal could not write: the
	// heal goes on without it (healing must not depend on recording), and
	// the daemon says so in status, a metric and the log.
	StoreFailed func(what string, err error)
	// Filler, if set, fills volumes a sync creates (Filler).
	Filler Filler

	digests buildDigests
}

// Filler fills a volume a sync has just created, before any service
// mounts it: x-gitopsd.backup's restore: if_empty, which the daemon wires
// to the backup package. It runs as a step of the deployment
// (ActRestoreVolume), right after the volume's creation; when it fails the
// rest of the plan does not run, so no service starts on an empty volume.
type Filler interface {
	// Fills reports whether volume key of st is filled when a sync creates it.
	Fills(st *stack.Stack, key string) bool
	// Fill fills it; detail says from what, for the step's record.
	Fill(ctx context.Context, st *stack.Stack, key string) (detail string, err error)
}

// withFills adds, after each volume the plan creates that the Filler
// fills, the step that fills it.
func (r *Reconciler) withFills(st *stack.Stack, plan Plan) Plan {
	if r.Filler == nil {
		return plan
	}
	var actions []Action
	for _, a := range plan.Actions {
		actions = append(actions, a)
		if a.Kind == ActCreateVolume && r.Filler.Fills(st, a.Key) {
			actions = append(actions, Action{Kind: ActRestoreVolume, Key: a.Key, Name: a.Key, Reasons: []string{"restore: if_empty"}})
		}
	}
	plan.Actions = actions
	return plan
}

// Observe reads what runs now for a stack.
func (r *Reconciler) Observe(ctx context.Context, name string) (Observed, error) {
	var o Observed
	var err error
	if o.Containers, err = r.Runtime.Containers(ctx, name); err != nil {
		return o, fmt.Errorf("observe %s containers: %w", name, err)
	}
	if o.Networks, err = r.Runtime.Networks(ctx, name); err != nil {
		return o, fmt.Errorf("observe %s networks: %w", name, err)
	}
	if o.Volumes, err = r.Runtime.Volumes(ctx, name); err != nil {
		return o, fmt.Errorf("observe %s volumes: %w", name, err)
	}
	return o, nil
}

// observe reads what runs for st, plus the volumes st declares that exist
// under their names without the project's labels (made by hand, or by
// another project): compose uses those as they are, and so does a sync,
// instead of planning a volume that exists already (engine.DeclaredVolume).
func (r *Reconciler) observe(ctx context.Context, st *stack.Stack) (Observed, error) {
	o, err := r.Observe(ctx, st.Name)
	if err != nil {
		return o, err
	}
	have := map[string]bool{}
	for _, v := range o.Volumes {
		have[v.Key] = true
	}
	keys := make([]string, 0, len(st.Project.Volumes))
	for key, v := range st.Project.Volumes {
		if !have[key] && !bool(v.External) {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	for _, key := range keys {
		v, ok, err := r.Runtime.DeclaredVolume(ctx, st.Project, key)
		if err != nil {
			return o, fmt.Errorf("observe %s volumes: %w", st.Name, err)
		}
		if ok {
			o.Volumes = append(o.Volumes, v)
		}
	}
	return o, nil
}

// resolve is what every entry point does before it acts: the image phase
// in mode (with pinned images, see imagesRunBy), a check that the external
// networks exist (unless a dry run), what runs now, and what st at
// revision wants given both.
func (r *Reconciler) resolve(ctx context.Context, st *stack.Stack, revision string, mode ImageMode, pinned map[string]string) (Desired, Observed, error) {
	images, err := r.prepareImages(ctx, st, revision, mode, pinned)
	if err != nil {
		return Desired{}, Observed{}, err
	}
	return r.desire(ctx, st, revision, mode, images)
}

// desire is resolve after the image phase: images are the IDs it found.
func (r *Reconciler) desire(ctx context.Context, st *stack.Stack, revision string, mode ImageMode, images Images) (Desired, Observed, error) {
	if mode != ImageDryRun {
		if err := r.checkExternalNetworks(ctx, st); err != nil {
			return Desired{}, Observed{}, err
		}
	}
	observed, err := r.observe(ctx, st)
	if err != nil {
		return Desired{}, observed, err
	}
	desired, err := r.Desire(st, revision, images, observed.Containers)
	return desired, observed, err
}

// Diff returns the plan a sync of st would run, changing nothing.
func (r *Reconciler) Diff(ctx context.Context, st *stack.Stack, revision string) (Plan, error) {
	desired, observed, err := r.resolve(ctx, st, revision, ImageDryRun, nil)
	if err != nil {
		return Plan{}, fmt.Errorf("diff %s: %w", st.Name, err)
	}
	return MakePlan(desired, observed)
}

// Sync brings one stack to st at revision. A deployment is recorded only
// when there is something to do; either way the stack's row ends with a
// status and, on failure, the reason.
func (r *Reconciler) Sync(ctx context.Context, st *stack.Stack, revision string, trigger Trigger) error {
	return r.SyncPrepared(ctx, st, revision, trigger, nil)
}

// SyncPrepared is Sync with its image phase run ahead (PrepareSync; nil:
// run here). The deployment records the phases ctx carries (WithPhases),
// then this sync's images and plan, as its first steps.
func (r *Reconciler) SyncPrepared(ctx context.Context, st *stack.Stack, revision string, trigger Trigger, prep *Prepared) error {
	log := r.Log.With("stack", st.Name, "revision", ids.Short(revision))
	prev, _, err := r.Store.Stack(ctx, st.Name)
	if err != nil {
		return fmt.Errorf("sync %s: read state: %w", st.Name, err)
	}
	state := prev
	aim(&state, st.Name, revision)
	if prev.FailedRevision == revision && trigger != TriggerRetry {
		// A revision that failed its health gate, or whose containers could
		// not be started, is not retried until the branch moves or an
		// operator asks (`sync --retry`).
		return nil
	}

	// A rollback returns to images the host ran, without the registry.
	mode, pinned, derr := ImageDeploy, map[string]string(nil), error(nil)
	if trigger == TriggerRollback {
		mode = ImageRestore
		pinned, derr = r.imagesRunBy(ctx, st.Name, revision)
	}
	var desired Desired
	var observed Observed
	var plan Plan
	var images Images
	phases := phasesOf(ctx)
	if prep != nil && prep.revision == revision && mode == ImageDeploy {
		images, derr = prep.images, prep.err
		phases = append(phases, prep.phase)
	} else if derr == nil {
		began := time.Now()
		images, derr = r.prepareImages(ctx, st, revision, mode, pinned)
		phases = append(phases, timed(PhaseImages, began, ""))
	}
	if derr == nil {
		began := time.Now()
		desired, observed, derr = r.desire(ctx, st, revision, mode, images)
		if trigger == TriggerRollback {
			// A rollback rolls by deploy.rollback_config.
			for i := range desired.Services {
				desired.Services[i].Roll = desired.Services[i].RollbackRoll
			}
		}
		if derr == nil {
			plan, derr = MakePlan(desired, observed)
			plan = r.withFills(st, plan)
		}
		phases = append(phases, timed(PhasePlan, began, ""))
	}
	if derr != nil {
		return r.failedBeforeChange(ctx, log, prev, state, revision, trigger, phases, derr)
	}

	if plan.Empty() && prev.Sync == string(Progressing) {
		// A roll was cut off (a crash): what it started never passed its gate.
		if err := r.gateAll(ctx, desired); err != nil {
			markFailed(&state, err, r.health(ctx, st.Name))
			markHeld(&state, revision)
			log.Error("a roll cut off by a restart left containers that fail their gate", "err", err)
			return errors.Join(err, r.putStack(ctx, state))
		}
	}
	if plan.Empty() {
		markSynced(&state, revision, healthOf(observed.Containers), warning(log, prev, plan))
		return r.putStack(ctx, state)
	}

	var unrecorded error // the row could not say Progressing: nothing ran
	applyErr, recErr := r.deployment(ctx, log, "sync", store.Deployment{Stack: st.Name, Trigger: string(trigger), From: prev.Revision, To: revision, Steps: phaseSteps(phases)}, func(log *slog.Logger, id int64) (Outcome, error) {
		markProgressing(&state)
		if unrecorded = r.putStack(ctx, state); unrecorded != nil {
			return OutcomeFailed, unrecorded
		}
		log.Info("applying plan", "actions", len(plan.Actions))
		applyErr := r.apply(ctx, log, id, st, desired, plan)
		if applyErr == nil && prev.Sync == string(Progressing) {
			// A roll was cut off (a crash): what it started never passed its
			// gate, and this plan only tidied up around it.
			applyErr = r.gateAll(ctx, desired)
		}
		return settle(log, &state, prev, revision, plan, r.health(ctx, st.Name), applyErr), applyErr
	})
	if recErr != nil || unrecorded != nil {
		return errors.Join(applyErr, recErr)
	}
	return errors.Join(applyErr, r.putStack(ctx, state))
}

// failedBeforeChange records a sync of revision that failed (derr) before
// it changed anything.
func (r *Reconciler) failedBeforeChange(ctx context.Context, log *slog.Logger, prev, state store.StackState, revision string, trigger Trigger, phases []Phase, derr error) error {
	// Record the failed attempt once per revision and error, so history
	// says why without filling up at every poll.
	if prev.Sync != string(Failed) || prev.Target != revision || prev.Error != derr.Error() {
		_, _ = r.deployment(ctx, log, "sync", store.Deployment{Stack: state.Name, Trigger: string(trigger), From: prev.Revision, To: revision, Steps: phaseSteps(phases)}, func(*slog.Logger, int64) (Outcome, error) {
			return OutcomeFailed, derr
		})
	}
	markFailed(&state, derr, r.health(ctx, state.Name))
	if be := (*engine.BuildError)(nil); errors.As(derr, &be) {
		// A build fails the same way again: like a revision that failed
		// its gate, it waits for the branch to move or `sync --retry`.
		markHeld(&state, revision)
	}
	log.Error("sync failed before any change", "err", derr)
	return errors.Join(derr, r.putStack(ctx, state))
}

// deployment records what run does as one deployment: it is opened before
// run and finished with run's outcome and error. runErr is run's error;
// recErr says the deployment could not be recorded (then run may not have
// run at all).
func (r *Reconciler) deployment(ctx context.Context, log *slog.Logger, op string, d store.Deployment, run func(log *slog.Logger, id int64) (Outcome, error)) (runErr, recErr error) {
	d.StartedAt, d.Outcome = now(), string(OutcomeRunning)
	id, err := r.Store.StartDeployment(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("%s %s: record deployment: %w", op, d.Stack, err)
	}
	outcome, runErr := run(log.With("deployment", id), id)
	msg := ""
	if runErr != nil {
		msg = runErr.Error()
	}
	if err := r.Store.FinishDeployment(ctx, id, string(outcome), msg, now()); err != nil {
		return runErr, fmt.Errorf("%s %s: finish deployment: %w", op, d.Stack, err)
	}
	return runErr, nil
}

// Compare plans st at revision (the revision the stack runs) against what
// runs, changing no container: any action in the plan is drift. With
// ImageCheck, images are pulled per pull_policy first, so a moved tag
// shows; with ImageDryRun nothing is pulled. A drift check never builds nor
// moves a tag: a mode that would is taken as ImageCheck. It also returns
// the health of what runs.
func (r *Reconciler) Compare(ctx context.Context, st *stack.Stack, revision string, mode ImageMode) (Plan, Health, error) {
	if mode.acts() {
		mode = ImageCheck
	}
	desired, observed, err := r.resolve(ctx, st, revision, mode, nil)
	if err != nil {
		return Plan{}, Unknown, fmt.Errorf("compare %s: %w", st.Name, err)
	}
	plan, err := MakePlan(desired, observed)
	return plan, healthOf(observed.Containers), err
}

// Heal re-applies revision, the revision the stack runs, to the named
// services only, through the same gated steps as a sync, and records it as a
// deployment with trigger heal. Networks and volumes the stack lacks are
// created too. A heal never rolls the stack back nor marks its revision
// failed: what failed stays drifted, and the stack's error says why.
func (r *Reconciler) Heal(ctx context.Context, st *stack.Stack, revision string, services map[string]bool) error {
	log := r.Log.With("stack", st.Name, "revision", ids.Short(revision))
	// What a heal puts back runs from the images on the host: a poll's
	// check pulled already, and an event's heal must not need the registry.
	desired, observed, err := r.resolve(ctx, st, revision, ImageRestore, nil)
	if err != nil {
		return fmt.Errorf("heal %s: %w", st.Name, err)
	}
	full, err := MakePlan(desired, observed)
	if err != nil {
		return err
	}
	services = withSharers(desired, services)
	plan := Plan{Stack: full.Stack}
	for _, a := range full.Actions {
		if (services[a.Service] && a.Kind != ActRemoveNetwork) || a.Kind == ActCreateNetwork || a.Kind == ActCreateVolume {
			plan.Actions = append(plan.Actions, a)
		}
	}
	if plan.Empty() {
		return nil
	}
	// A volume gone with its containers (docker compose down -v) comes back
	// filled, as at a first deployment: restore: if_empty means whenever the
	// volume does not exist, and an empty one the app initialises would
	// become the next snapshot.
	plan = r.withFills(st, plan)
	// A full or broken state_dir loses the heal's record, not the heal.
	applyErr, recErr := r.deploymentMaybeUnrecorded(ctx, log, "heal", store.Deployment{Stack: st.Name, Trigger: string(TriggerHeal), From: revision, To: revision}, func(log *slog.Logger, id int64) (Outcome, error) {
		log.Info("healing drift", "actions", len(plan.Actions))
		if err := r.apply(ctx, log, id, st, desired, plan); err != nil {
			log.Error("heal failed", "err", err)
			return OutcomeFailed, err
		}
		return OutcomeSucceeded, nil
	})
	return errors.Join(applyErr, recErr)
}

// deploymentMaybeUnrecorded is deployment for work that must not depend on
// its record (a heal): with StoreFailed set, a record that cannot be
// written is reported there and run goes on as deployment 0, whose steps
// are not recorded either.
func (r *Reconciler) deploymentMaybeUnrecorded(ctx context.Context, log *slog.Logger, op string, d store.Deployment, run func(log *slog.Logger, id int64) (Outcome, error)) (runErr, recErr error) {
	if r.StoreFailed == nil {
		return r.deployment(ctx, log, op, d, run)
	}
	started := false
	runErr, recErr = r.deployment(ctx, log, op, d, func(log *slog.Logger, id int64) (Outcome, error) {
		started = true
		return run(log, id)
	})
	switch {
	case recErr == nil:
	case started:
		r.StoreFailed("finish the record of a "+op+" of stack "+d.Stack, errors.Unwrap(recErr))
	default:
		r.StoreFailed("record a "+op+" of stack "+d.Stack, errors.Unwrap(recErr))
		_, runErr = run(log.With("deployment", 0), 0)
	}
	return runErr, nil
}

// withSharers is services plus every service that shares the container of
// one of them (DesiredService.Shares), transitively: healing a container
// recreates those that run in it.
func withSharers(desired Desired, services map[string]bool) map[string]bool {
	out := maps.Clone(services)
	for grew := true; grew; {
		grew = false
		for _, s := range desired.Services {
			if out[s.Name] {
				continue
			}
			for _, other := range s.Shares {
				if out[other] {
					out[s.Name], grew = true, true
					break
				}
			}
		}
	}
	return out
}

// Rollback rolls st back to good, its last healthy revision, after its roll
// to failed did not pass the health gate. The stack stays marked Failed with
// the reason, and failed is remembered so polls do not retry it.
func (r *Reconciler) Rollback(ctx context.Context, st *stack.Stack, good, failed string, cause error) error {
	// The phases ctx carries led to the failed roll, not to this one.
	ctx = context.WithValue(ctx, phasesKey{}, []Phase(nil))
	err := r.Sync(ctx, st, good, TriggerRollback)
	state, _, serr := r.Store.Stack(ctx, st.Name)
	if serr != nil {
		return errors.Join(err, serr)
	}
	markRolledBack(&state, good, failed, cause, err)
	return errors.Join(err, r.putStack(ctx, state))
}

// gateAll puts every observed container of the desired services through
// its service's gate; a container that is healthy already passes at once.
func (r *Reconciler) gateAll(ctx context.Context, desired Desired) error {
	gates := map[string]health.Gate{}
	for _, s := range desired.Services {
		gates[s.Name] = s.Gate
	}
	cs, err := r.Runtime.Containers(ctx, desired.Stack)
	if err != nil {
		return err
	}
	for _, c := range cs {
		gate, ok := gates[c.Service]
		if !ok {
			continue
		}
		if err := r.Runtime.WaitHealthy(ctx, c.ID, gate); err != nil {
			return err
		}
	}
	return nil
}

// MarkInvalid records that a stack's revision did not load; its running
// containers are left as they are.
func (r *Reconciler) MarkInvalid(ctx context.Context, name, revision string, loadErr error) error {
	prev, _, err := r.Store.Stack(ctx, name)
	if err != nil {
		return err
	}
	state := prev
	aim(&state, name, revision)
	markInvalid(&state, loadErr, r.health(ctx, name))
	return r.putStack(ctx, state)
}

// Remove takes down a stack that left the repository (or no longer targets
// this host): its containers and networks go, its volumes stay.
func (r *Reconciler) Remove(ctx context.Context, name, revision string, trigger Trigger) error {
	log := r.Log.With("stack", name, "revision", ids.Short(revision))
	prev, _, err := r.Store.Stack(ctx, name)
	if err != nil {
		return err
	}
	observed, err := r.Observe(ctx, name)
	if err != nil {
		return err
	}
	plan, err := MakePlan(Desired{Stack: name, Revision: revision}, observed)
	if err != nil {
		return err
	}
	if !plan.Empty() {
		applyErr, recErr := r.deployment(ctx, log, "remove", store.Deployment{Stack: name, Trigger: string(trigger), From: prev.Revision, To: revision}, func(log *slog.Logger, id int64) (Outcome, error) {
			log.Info("removing stack", "actions", len(plan.Actions), "kept_volumes", plan.OrphanVolumes)
			if err := r.apply(ctx, log, id, nil, Desired{Stack: name}, plan); err != nil {
				return OutcomeFailed, err
			}
			return OutcomeSucceeded, nil
		})
		if applyErr != nil || recErr != nil {
			return errors.Join(applyErr, recErr)
		}
	}
	return r.Store.DeleteStack(ctx, name)
}

func now() time.Time { return time.Now().UTC() }
