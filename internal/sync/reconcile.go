package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	gosync "sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// Status is a stack's sync status, as `status` shows it.
type Status string

const (
	Synced      Status = "Synced"
	OutOfSync   Status = "OutOfSync"
	Progressing Status = "Progressing"
	Invalid     Status = "Invalid"
	Failed      Status = "Failed"
)

// Health is a stack's health. The order of the constants is the order of
// worseness, so a stack's health is the worst of its containers'.
type Health string

const (
	Healthy           Health = "Healthy"
	HealthProgressing Health = "Progressing"
	Degraded          Health = "Degraded"
	Unknown           Health = "Unknown"
)

var healthRank = map[Health]int{Healthy: 0, HealthProgressing: 1, Degraded: 2, Unknown: 3}

// Worse returns the worse of two health values.
func Worse(a, b Health) Health {
	if healthRank[b] > healthRank[a] {
		return b
	}
	return a
}

// Triggers record why a deployment ran.
const (
	TriggerPoll    = "poll"
	TriggerWebhook = "webhook"
	TriggerManual  = "manual"
	// TriggerRetry is a manual sync that also retries a revision which
	// failed its health gate (`gitopsd sync STACK --retry`).
	TriggerRetry    = "retry"
	TriggerHeal     = "heal"
	TriggerRollback = "rollback"
)

// Deployment outcomes.
const (
	OutcomeRunning    = "running"
	OutcomeSucceeded  = "succeeded"
	OutcomeFailed     = "failed"
	OutcomeRolledBack = "rolled_back"
)

// ErrKeptForward marks a failed roll whose failure_action (pause or
// continue) keeps the stack where the roll left it instead of rolling it
// back to its last healthy revision.
var ErrKeptForward = errors.New("failure_action keeps the stack as the roll left it")

// WantsRollback reports whether a failed sync asks for the whole stack to
// return to its last healthy revision: a health gate failed and the
// service's failure_action is rollback, or a new container could not be
// started (services rolled before it go back too).
func WantsRollback(err error) bool {
	return Holds(err) && !errors.Is(err, ErrKeptForward)
}

// ErrRestored marks a failed recreate after which the old container was
// put back and started again.
var ErrRestored = errors.New("the old container was restored")

// Reconciler brings stacks to their desired state and records what it did.
type Reconciler struct {
	Engine *engine.Engine
	Store  *store.Store
	Log    *slog.Logger
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

	digests buildDigests
}

// Desire resolves a loaded stack into the containers it wants: images made
// available per pull_policy (with dryRun nothing is pulled), config hashes
// computed, one container spec per replica.
func (r *Reconciler) Desire(ctx context.Context, st *stack.Stack, revision string, dryRun bool) (Desired, error) {
	d := Desired{Stack: st.Name, Revision: revision}
	p := st.Project
	used := map[string]bool{}
	waitedFor := dependencyConditions(p)
	imageIDs, err := r.serviceImages(ctx, st, revision, dryRun)
	if err != nil {
		return d, err
	}
	var running []engine.Container
	if sharesContainers(p) {
		if running, err = r.Engine.Containers(ctx, st.Name); err != nil {
			return d, fmt.Errorf("desire %s: %w", st.Name, err)
		}
	}
	for _, name := range p.ServiceNames() {
		svc := p.Services[name]
		ds, err := r.desireService(st, revision, svc, imageIDs[name], waitedFor, running)
		if err != nil {
			return d, err
		}
		d.Services = append(d.Services, ds)
		for key := range svc.Networks {
			used[key] = true
		}
	}
	for key := range used {
		if n, ok := p.Networks[key]; ok && bool(n.External) {
			if dryRun {
				continue
			}
			// External networks are not ours to create; they must exist.
			if _, err := r.Engine.EnsureNetwork(ctx, p, key, nil); err != nil {
				return d, err
			}
			continue
		}
		d.Networks = append(d.Networks, key)
	}
	sort.Strings(d.Networks)
	for key, v := range p.Volumes {
		if bool(v.External) {
			continue
		}
		d.Volumes = append(d.Volumes, key)
	}
	sort.Strings(d.Volumes)
	return d, nil
}

// desireService is one service of st resolved into the containers it
// wants, its references to other services' containers (see shared.go)
// resolved against running.
func (r *Reconciler) desireService(st *stack.Stack, revision string, svc types.ServiceConfig, imageID string, waitedFor map[string]map[string]bool, running []engine.Container) (DesiredService, error) {
	p, name := st.Project, svc.Name
	hashSvc, specSvc := resolveShared(p, svc, running)
	specSvc = readOnlyCheckoutBinds(specSvc, p.WorkingDir, st.Dir, r.CheckoutDirs)
	hash, err := stack.ServiceHash(hashSvc)
	if err != nil {
		return DesiredService{}, fmt.Errorf("service %s: config hash: %w", name, err)
	}
	ds := DesiredService{Name: name, ConfigHash: hash, ImageID: imageID, DependsOn: svc.GetDependencies(), Gate: health.GateFor(svc), Shares: sharedServices(svc)}
	var update, rollback *types.UpdateConfig
	if svc.Deploy != nil {
		update, rollback = svc.Deploy.UpdateConfig, svc.Deploy.RollbackConfig
	}
	if ds.Roll, err = rollConfig(svc, update, FailureRollback); err != nil {
		return ds, fmt.Errorf("service %s: deploy.update_config: %w", name, err)
	}
	if ds.RollbackRoll, err = rollConfig(svc, rollback, FailurePause); err != nil {
		return ds, fmt.Errorf("service %s: deploy.rollback_config: %w", name, err)
	}
	if ds.RollbackRoll.FailureAction == FailureRollback {
		// A rollback that fails has nothing further back to go to.
		ds.RollbackRoll.FailureAction = FailurePause
	}
	ds.OneShot = waitedFor[name][types.ServiceConditionCompletedSuccessfully]
	ds.Gate.Completes = ds.OneShot
	ds.Gate.RequireHealthcheck = waitedFor[name][types.ServiceConditionHealthy]
	for dep, cfg := range svc.DependsOn {
		if cfg.Restart {
			ds.RestartWith = append(ds.RestartWith, dep)
		}
	}
	sort.Strings(ds.RestartWith)
	labels := map[string]string{engine.LabelStack: st.Name, engine.LabelRevision: revision}
	files, err := engine.FilesDigest(p, svc, r.FilesKey)
	if err != nil {
		return ds, fmt.Errorf("service %s: %w", name, err)
	}
	if ds.OneShot {
		labels[engine.LabelOneShot] = "true"
	}
	if files != "" {
		labels[engine.LabelFiles] = files
	}
	// A service that only builds runs the image compose would tag; the
	// hash above is of the service as written, as compose hashes it.
	specSvc.Image = ImageName(p.Name, svc)
	for n := 1; n <= svc.GetScale(); n++ {
		spec, err := engine.ServiceSpec(p, specSvc, n, hash, imageID, labels)
		if err != nil {
			return ds, fmt.Errorf("service %s: %w", name, err)
		}
		ds.Specs = append(ds.Specs, spec)
	}
	return ds, nil
}

// sharesContainers reports whether a service of p refers to another's
// container, which Desire must then resolve against what runs.
func sharesContainers(p *types.Project) bool {
	for _, svc := range p.Services {
		if len(sharedServices(svc)) > 0 {
			return true
		}
	}
	return false
}

// serviceImages is the local ID of the image each service runs. Services
// that build come first, as compose builds every image before it creates
// a container: another service may run a built image by its name.
func (r *Reconciler) serviceImages(ctx context.Context, st *stack.Stack, revision string, dryRun bool) (map[string]string, error) {
	ids := map[string]string{}
	names := st.Project.ServiceNames()
	for _, builds := range []bool{true, false} {
		for _, name := range names {
			svc := st.Project.Services[name]
			if (svc.Build != nil) != builds {
				continue
			}
			id, err := r.serviceImage(ctx, st, svc, revision, dryRun)
			if err != nil {
				return nil, fmt.Errorf("service %s: %w", name, err)
			}
			ids[name] = id
		}
	}
	return ids, nil
}

// serviceImage is the local ID of the image svc runs: built from the
// checkout when it has a build: section (unless pull_policy: never, which
// takes the image as the host has it), else pulled per pull_policy.
func (r *Reconciler) serviceImage(ctx context.Context, st *stack.Stack, svc types.ServiceConfig, revision string, dryRun bool) (string, error) {
	if svc.Build != nil && svc.PullPolicy != types.PullPolicyNever {
		return r.builtImage(ctx, st, svc, revision, dryRun)
	}
	return r.image(ctx, ImageName(st.Name, svc), svc.PullPolicy, dryRun)
}

// image returns the local ID of ref, pulling it when pull_policy says so
// for what the context's pullScope resolves images for, once per scope.
// In a dry run a missing image is not an error: its ID is simply unknown.
func (r *Reconciler) image(ctx context.Context, ref, pullPolicy string, dryRun bool) (string, error) {
	if dryRun {
		id, err := r.Engine.EnsureImage(ctx, ref, "never")
		if err != nil {
			return "", nil
		}
		return id, nil
	}
	scope := pullScopeOf(ctx)
	if id, ok := scope.pinnedImage(ref); ok {
		// Containers are created by name, as compose creates them: the
		// name must name the pinned image again.
		if err := r.Engine.TagImage(ctx, id, ref); err != nil {
			return "", err
		}
		return id, nil
	}
	if id, ok := scope.resolved(ref, pullPolicy); ok {
		return id, nil
	}
	id, err := r.resolveImage(ctx, ref, pullPolicy, scope.mode)
	if err != nil {
		return "", err
	}
	scope.remember(ref, pullPolicy, id)
	return id, nil
}

// resolveImage makes ref available per pull_policy for mode. The periodic
// policies (daily, weekly, every_<duration>) go by the last pull the store
// recorded, so a restart does not pull everything again.
func (r *Reconciler) resolveImage(ctx context.Context, ref, pullPolicy string, mode engine.ImageMode) (string, error) {
	policy, err := engine.ParsePullPolicy(pullPolicy)
	if err != nil {
		return "", err
	}
	req := engine.ImageRequest{Ref: ref, Policy: policy, Mode: mode}
	if policy.Every > 0 {
		last, _, err := r.Store.LastPull(ctx, ref)
		if err != nil {
			return "", err
		}
		req.LastPulled = last.PulledAt
	}
	res, err := r.Engine.ResolveImage(ctx, req)
	if err != nil {
		return "", err
	}
	if res.PullErr != nil {
		r.Log.Warn("pull failed; the image on this host stands for the tag", "image", ref, "err", res.PullErr)
	}
	if res.Pulled {
		r.Log.Info("pulled image", "image", ref, "id", shortID(res.ID))
		at := now()
		if err := r.Store.RecordPull(ctx, store.Pull{Ref: ref, ImageID: res.ID, PulledAt: at}); err != nil {
			return "", err
		}
		if err := r.Store.NoteImage(ctx, res.ID, ref, store.ImagePulled, at); err != nil {
			return "", err
		}
	}
	return res.ID, nil
}

// pullScope is what one Desire knows about its images: what it resolves
// them for (a forward deploy, a poll's check, or a rollback or heal
// returning to what ran), and the images it resolved already, so services
// sharing an image pull it once. Callers put it in the context, which
// spares Desire's signature a flag only images care about.
type pullScope struct {
	mode   engine.ImageMode
	mu     gosync.Mutex
	ids    map[string]string // ref + " " + pull_policy -> image ID
	pinned map[string]string // ref -> the image ID to take, whatever the tag names
}

// pinImagesRunBy makes a rollback to revision take, for each image
// reference, the image that revision's own containers still run (the
// replicas a failed roll left in place or put back) rather than what the
// tag names now: a tag the failed revision's pull moved must not bring its
// image back with the rollback.
func (r *Reconciler) pinImagesRunBy(ctx context.Context, stackName, revision string) error {
	cs, err := r.Engine.Containers(ctx, stackName)
	if err != nil {
		return fmt.Errorf("find the images revision %s runs: %w", short(revision), err)
	}
	scope := pullScopeOf(ctx)
	scope.mu.Lock()
	defer scope.mu.Unlock()
	for _, c := range cs {
		if c.Labels[engine.LabelRevision] == revision && c.Image != "" && c.ImageID != "" {
			if scope.pinned == nil {
				scope.pinned = map[string]string{}
			}
			scope.pinned[c.Image] = c.ImageID
		}
	}
	return nil
}

func (s *pullScope) pinnedImage(ref string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.pinned[ref]
	return id, ok
}

type pullScopeKey struct{}

// withPullScope gives the Desire called with the returned context a fresh
// scope resolving images for mode.
func withPullScope(ctx context.Context, mode engine.ImageMode) context.Context {
	return context.WithValue(ctx, pullScopeKey{}, &pullScope{mode: mode, ids: map[string]string{}})
}

// pullScopeOf is ctx's scope; without one, images are resolved for a
// forward deploy and nothing is remembered.
func pullScopeOf(ctx context.Context) *pullScope {
	if s, ok := ctx.Value(pullScopeKey{}).(*pullScope); ok {
		return s
	}
	return &pullScope{mode: engine.ForDeploy, ids: map[string]string{}}
}

func (s *pullScope) resolved(ref, policy string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.ids[ref+" "+policy]
	return id, ok
}

func (s *pullScope) remember(ref, policy, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[ref+" "+policy] = id
}

// imageModeFor is what a sync with trigger resolves images for: a rollback
// returns to images the host ran, without the registry.
func imageModeFor(trigger string) engine.ImageMode {
	if trigger == TriggerRollback {
		return engine.ForRestore
	}
	return engine.ForDeploy
}

// Observe reads what runs now for a stack.
func (r *Reconciler) Observe(ctx context.Context, name string) (Observed, error) {
	var o Observed
	var err error
	if o.Containers, err = r.Engine.Containers(ctx, name); err != nil {
		return o, fmt.Errorf("observe %s containers: %w", name, err)
	}
	if o.Networks, err = r.Engine.Networks(ctx, name); err != nil {
		return o, fmt.Errorf("observe %s networks: %w", name, err)
	}
	if o.Volumes, err = r.Engine.Volumes(ctx, name); err != nil {
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
		v, ok, err := r.Engine.DeclaredVolume(ctx, st.Project, key)
		if err != nil {
			return o, fmt.Errorf("observe %s volumes: %w", st.Name, err)
		}
		if ok {
			o.Volumes = append(o.Volumes, v)
		}
	}
	return o, nil
}

// Diff returns the plan a sync of st would run, changing nothing.
func (r *Reconciler) Diff(ctx context.Context, st *stack.Stack, revision string) (Plan, error) {
	desired, err := r.Desire(ctx, st, revision, true)
	if err != nil {
		return Plan{}, fmt.Errorf("diff %s: %w", st.Name, err)
	}
	observed, err := r.observe(ctx, st)
	if err != nil {
		return Plan{}, err
	}
	return MakePlan(desired, observed)
}

// Sync brings one stack to st at revision. A deployment is recorded only
// when there is something to do; either way the stack's row ends with a
// status and, on failure, the reason.
func (r *Reconciler) Sync(ctx context.Context, st *stack.Stack, revision, trigger string) error {
	log := r.Log.With("stack", st.Name, "revision", short(revision))
	prev, _, err := r.Store.Stack(ctx, st.Name)
	if err != nil {
		return fmt.Errorf("sync %s: read state: %w", st.Name, err)
	}
	state := prev
	state.Name = st.Name
	state.Target = revision
	if prev.FailedRevision == revision && trigger != TriggerRetry {
		// A revision that failed its health gate, or whose containers could
		// not be started, is not retried until the branch moves or an
		// operator asks (`sync --retry`).
		return nil
	}

	scoped := withPullScope(ctx, imageModeFor(trigger))
	var derr error
	if trigger == TriggerRollback {
		derr = r.pinImagesRunBy(scoped, st.Name, revision)
	}
	var desired Desired
	if derr == nil {
		desired, derr = r.Desire(scoped, st, revision, false)
	}
	if trigger == TriggerRollback {
		// A rollback rolls by deploy.rollback_config.
		for i := range desired.Services {
			desired.Services[i].Roll = desired.Services[i].RollbackRoll
		}
	}
	var observed Observed
	var plan Plan
	if derr == nil {
		if observed, derr = r.observe(ctx, st); derr == nil {
			plan, derr = MakePlan(desired, observed)
		}
	}
	if derr != nil {
		// Nothing was changed: record the failed attempt once per revision so
		// history says why, without filling it on every poll.
		if prev.Sync != string(Failed) || prev.Target != revision || prev.Error != derr.Error() {
			id, err := r.Store.StartDeployment(ctx, store.Deployment{Stack: st.Name, Trigger: trigger, From: prev.Revision, To: revision, StartedAt: now(), Outcome: OutcomeRunning})
			if err == nil {
				_ = r.Store.FinishDeployment(ctx, id, OutcomeFailed, derr.Error(), now())
			}
		}
		state.Sync, state.Error = string(Failed), derr.Error()
		if be := (*engine.BuildError)(nil); errors.As(derr, &be) {
			// A build fails the same way again: like a revision that failed
			// its gate, it waits for the branch to move or `sync --retry`.
			state.FailedRevision = revision
		}
		state.Health = string(r.health(ctx, st.Name))
		log.Error("sync failed before any change", "err", derr)
		return errors.Join(derr, r.putStack(ctx, state))
	}

	if plan.Empty() && prev.Sync == string(Progressing) {
		// A roll was cut off (a crash): what it started never passed its gate.
		if err := r.gateAll(ctx, desired); err != nil {
			state.Sync, state.Error, state.FailedRevision = string(Failed), err.Error(), revision
			state.Health = string(r.health(ctx, st.Name))
			log.Error("a roll cut off by a restart left containers that fail their gate", "err", err)
			return errors.Join(err, r.putStack(ctx, state))
		}
	}
	if plan.Empty() {
		state.Revision = revision
		state.Sync, state.Error = string(Synced), r.warning(log, prev, plan)
		state.Health = string(healthOf(observed.Containers))
		if state.Health == string(Healthy) {
			state.LastHealthyRevision = revision
		}
		return r.putStack(ctx, state)
	}

	id, err := r.Store.StartDeployment(ctx, store.Deployment{Stack: st.Name, Trigger: trigger, From: prev.Revision, To: revision, StartedAt: now(), Outcome: OutcomeRunning})
	if err != nil {
		return fmt.Errorf("sync %s: record deployment: %w", st.Name, err)
	}
	log = log.With("deployment", id)
	state.Sync = string(Progressing)
	if err := r.putStack(ctx, state); err != nil {
		return err
	}
	log.Info("applying plan", "actions", len(plan.Actions))
	applyErr := r.apply(ctx, log, id, st, desired, plan)
	if applyErr == nil && prev.Sync == string(Progressing) {
		// A roll was cut off (a crash): what it started never passed its
		// gate, and this plan only tidied up around it.
		applyErr = r.gateAll(ctx, desired)
	}

	state.Health = string(r.health(ctx, st.Name))
	outcome := OutcomeSucceeded
	if applyErr != nil {
		outcome = OutcomeFailed
		state.Sync, state.Error = string(Failed), applyErr.Error()
		if Holds(applyErr) {
			// Held: the same failure would come at every poll, and each
			// attempt of a stop-first roll stops the working container.
			state.FailedRevision = revision
			if errors.Is(applyErr, ErrRestored) && !errors.Is(applyErr, ErrKeptForward) {
				outcome = OutcomeRolledBack
			}
		}
		if errors.Is(applyErr, ErrKeptForward) {
			// pause or continue: the stack stays where the roll left it, on
			// this revision's files, and polls do not roll it anywhere.
			state.Revision = revision
		}
		log.Error("sync failed", "err", applyErr)
	} else {
		state.FailedRevision = ""
		state.Revision = revision
		state.Sync, state.Error = string(Synced), r.warning(log, prev, plan)
		if state.Health == string(Healthy) {
			state.LastHealthyRevision = revision
		}
		log.Info("sync succeeded")
	}
	errMsg := ""
	if applyErr != nil {
		errMsg = applyErr.Error()
	}
	if err := r.Store.FinishDeployment(ctx, id, outcome, errMsg, now()); err != nil {
		return errors.Join(applyErr, fmt.Errorf("sync %s: finish deployment: %w", st.Name, err))
	}
	return errors.Join(applyErr, r.putStack(ctx, state))
}

// warning is what a stack in sync shows as its error: the plan's warnings
// (Plan.Warnings), logged once, when they first show, not at every poll.
func (r *Reconciler) warning(log *slog.Logger, prev store.StackState, plan Plan) string {
	w := plan.Warning()
	if w != "" && w != prev.Error {
		log.Warn("the stack uses what it did not create", "warning", w)
	}
	return w
}

// Compare plans st at revision (the revision the stack runs) against what
// runs, changing no container: any action in the plan is drift. With pull,
// images are pulled per pull_policy first, so a moved tag shows; without,
// nothing is pulled. It also returns the health of what runs.
func (r *Reconciler) Compare(ctx context.Context, st *stack.Stack, revision string, pull bool) (Plan, Health, error) {
	desired, err := r.Desire(withPullScope(ctx, engine.ForCheck), st, revision, !pull)
	if err != nil {
		return Plan{}, Unknown, fmt.Errorf("compare %s: %w", st.Name, err)
	}
	observed, err := r.observe(ctx, st)
	if err != nil {
		return Plan{}, Unknown, err
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
	log := r.Log.With("stack", st.Name, "revision", short(revision))
	// What a heal puts back runs from the images on the host: a poll's
	// check pulled already, and an event's heal must not need the registry.
	desired, err := r.Desire(withPullScope(ctx, engine.ForRestore), st, revision, false)
	if err != nil {
		return fmt.Errorf("heal %s: %w", st.Name, err)
	}
	observed, err := r.observe(ctx, st)
	if err != nil {
		return err
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
	id, err := r.Store.StartDeployment(ctx, store.Deployment{Stack: st.Name, Trigger: TriggerHeal, From: revision, To: revision, StartedAt: now(), Outcome: OutcomeRunning})
	if err != nil {
		if r.StoreFailed == nil {
			return fmt.Errorf("heal %s: record deployment: %w", st.Name, err)
		}
		// A full or broken state_dir loses the heal's record, not the heal.
		r.StoreFailed("record a heal of stack "+st.Name, err)
		id = 0
	}
	log = log.With("deployment", id)
	log.Info("healing drift", "actions", len(plan.Actions))
	applyErr := r.apply(ctx, log, id, st, desired, plan)
	outcome, msg := OutcomeSucceeded, ""
	if applyErr != nil {
		outcome, msg = OutcomeFailed, applyErr.Error()
		log.Error("heal failed", "err", applyErr)
	}
	if id == 0 {
		return applyErr
	}
	if err := r.Store.FinishDeployment(ctx, id, outcome, msg, now()); err != nil {
		if r.StoreFailed == nil {
			return errors.Join(applyErr, fmt.Errorf("heal %s: finish deployment: %w", st.Name, err))
		}
		r.StoreFailed("finish the record of a heal of stack "+st.Name, err)
	}
	return applyErr
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
	err := r.Sync(ctx, st, good, TriggerRollback)
	state, _, serr := r.Store.Stack(ctx, st.Name)
	if serr != nil {
		return errors.Join(err, serr)
	}
	state.Target = failed
	state.FailedRevision = failed
	state.Sync = string(Failed)
	why := "failed its health gate"
	if !health.IsFailure(cause) && IsStartFailure(cause) {
		why = "could not start its containers"
	}
	state.Error = fmt.Sprintf("revision %s %s and was rolled back to %s: %v", short(failed), why, short(good), cause)
	if err != nil {
		state.Error += fmt.Sprintf("; the rollback failed too: %v", err)
	}
	return errors.Join(err, r.putStack(ctx, state))
}

// gateAll puts every observed container of the desired services through
// its service's gate; a container that is healthy already passes at once.
func (r *Reconciler) gateAll(ctx context.Context, desired Desired) error {
	gates := map[string]health.Gate{}
	for _, s := range desired.Services {
		gates[s.Name] = s.Gate
	}
	cs, err := r.Engine.Containers(ctx, desired.Stack)
	if err != nil {
		return err
	}
	for _, c := range cs {
		gate, ok := gates[c.Service]
		if !ok {
			continue
		}
		if err := health.Wait(ctx, r.Engine.Client(), c.ID, gate); err != nil {
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
	state.Name = name
	state.Target = revision
	state.Sync = string(Invalid)
	state.Error = loadErr.Error()
	state.Health = string(r.health(ctx, name))
	return r.putStack(ctx, state)
}

// Remove takes down a stack that left the repository (or no longer targets
// this host): its containers and networks go, its volumes stay.
func (r *Reconciler) Remove(ctx context.Context, name, revision, trigger string) error {
	log := r.Log.With("stack", name, "revision", short(revision))
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
		id, err := r.Store.StartDeployment(ctx, store.Deployment{Stack: name, Trigger: trigger, From: prev.Revision, To: revision, StartedAt: now(), Outcome: OutcomeRunning})
		if err != nil {
			return fmt.Errorf("remove %s: record deployment: %w", name, err)
		}
		log = log.With("deployment", id)
		log.Info("removing stack", "actions", len(plan.Actions), "kept_volumes", plan.OrphanVolumes)
		applyErr := r.apply(ctx, log, id, nil, Desired{Stack: name}, plan)
		outcome, msg := OutcomeSucceeded, ""
		if applyErr != nil {
			outcome, msg = OutcomeFailed, applyErr.Error()
		}
		if err := r.Store.FinishDeployment(ctx, id, outcome, msg, now()); err != nil {
			return errors.Join(applyErr, err)
		}
		if applyErr != nil {
			return applyErr
		}
	}
	return r.Store.DeleteStack(ctx, name)
}

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
		_, err := r.Engine.EnsureNetwork(ctx, st.Project, a.Key, extra())
		return err
	case ActCreateVolume:
		return r.Engine.EnsureVolume(ctx, st.Project, a.Key, extra())
	case ActCreate:
		spec, err := r.specFor(ctx, st, svc, a.Number)
		if err != nil {
			return err
		}
		id, err := r.Engine.CreateContainer(ctx, spec)
		if err != nil {
			return startFailed(spec.Name, err)
		}
		if err := r.Engine.StartContainer(ctx, id); err != nil {
			// Nothing half made is left behind: a created container that
			// never ran would only be planned again as a start.
			if rmErr := r.Engine.RemoveContainer(context.WithoutCancel(ctx), id); rmErr != nil {
				return errors.Join(startFailed(spec.Name, err), rmErr)
			}
			notes.add("new %s removed: it could not start", shortID(id))
			return startFailed(spec.Name, err)
		}
		notes.add("started %s", shortID(id))
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
		if err := r.Engine.StartContainer(ctx, a.ID); err != nil {
			return err
		}
		return r.startedGate(ctx, a.ID, svc.Specs[a.Number-1], gate, notes)
	case ActUnpause:
		if err := r.Engine.UnpauseContainer(ctx, a.ID); err != nil {
			return err
		}
		return r.gate(ctx, a.ID, gate, notes)
	case ActRestart:
		if err := r.Engine.RestartContainer(ctx, a.ID, nil); err != nil {
			return err
		}
		return r.gate(ctx, a.ID, gate, notes)
	case ActRemove:
		if len(svc.Specs) > 0 { // a service still in the file, scaled down
			r.preStop(ctx, a.ID, svc.Specs[0], notes)
		}
		if err := r.Engine.StopContainer(ctx, a.ID, nil); err != nil {
			return err
		}
		return r.Engine.RemoveContainer(ctx, a.ID)
	case ActRemoveNetwork:
		err := r.Engine.RemoveNetwork(ctx, a.ID)
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
	running, err := r.Engine.Containers(ctx, st.Name)
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
		if err := r.Engine.RunHook(ctx, id, h); err != nil {
			notes.add("post_start hook of %s failed", shortID(id))
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
		err := r.Engine.RunHook(ctx, id, h)
		if errors.Is(err, engine.ErrNotRunning) {
			return // stopped already: there is nothing to prepare
		}
		if err != nil {
			notes.add("pre_stop hook of %s failed: %v", shortID(id), err)
			r.Log.Warn("pre_stop hook failed", "container", spec.Name, "err", err)
		}
	}
}

// gate waits for a container's health gate and notes how long it took.
func (r *Reconciler) gate(ctx context.Context, id string, g health.Gate, notes *stepNotes) error {
	began := time.Now()
	err := health.Wait(ctx, r.Engine.Client(), id, g)
	took := time.Since(began).Round(10 * time.Millisecond)
	switch {
	case err == nil && g.Completes:
		notes.add("%s completed in %s", shortID(id), took)
	case err == nil:
		notes.add("%s passed its gate in %s", shortID(id), took)
	case health.IsFailure(err):
		notes.add("%s failed its gate after %s", shortID(id), took)
	}
	return err
}

// recreate replaces a container stop-first, keeping the old one (renamed and
// stopped) until the new one has passed its health gate, so a failure puts
// the old one back: the same container, restarted, not a re-creation.
func (r *Reconciler) recreate(ctx context.Context, a Action, spec engine.ContainerSpec, gate health.Gate, notes *stepNotes) error {
	oldName := a.Name
	parked := fmt.Sprintf("%s_%s", shortID(a.ID), spec.Name)
	// A host port another process holds would fail the new container's
	// start after the old one stopped: refuse while the old one serves.
	// When the ports cannot be checked, the start is the check.
	if inUse, err := r.Engine.PortsInUse(ctx, spec, a.ID); err == nil && len(inUse) > 0 {
		notes.add("old %s kept running: host port %s in use", shortID(a.ID), strings.Join(inUse, ", "))
		cause := fmt.Errorf("host port %s: bind: address already in use (held by another process)", strings.Join(inUse, ", "))
		return errors.Join(startFailed(spec.Name, cause), ErrRestored)
	}
	// A roll cut off by a crash may have parked it already.
	if oldName != parked {
		if err := r.Engine.RenameContainer(ctx, a.ID, parked); err != nil {
			return fmt.Errorf("park old container: %w", err)
		}
	}
	restore := func(cause error) error {
		// Best effort, even when ctx is done: the next reconcile converges
		// from whatever is left.
		bg := context.WithoutCancel(ctx)
		var rerr error
		if oldName != parked {
			rerr = r.Engine.RenameContainer(bg, a.ID, oldName)
		}
		serr := r.Engine.StartContainer(bg, a.ID)
		if rerr == nil && serr == nil {
			notes.add("old %s restarted", shortID(a.ID))
			return errors.Join(cause, ErrRestored)
		}
		return errors.Join(cause, rerr, serr)
	}
	id, err := r.Engine.CreateContainer(ctx, spec)
	if err != nil {
		return restore(startFailed(spec.Name, fmt.Errorf("create: %w", err)))
	}
	crashPoint(CrashStopFirstCreated)
	r.preStop(ctx, a.ID, spec, notes)
	if err := r.Engine.StopContainer(ctx, a.ID, nil); err != nil {
		_ = r.Engine.RemoveContainer(ctx, id)
		return restore(fmt.Errorf("stop old: %w", err))
	}
	notes.add("old %s stopped and kept", shortID(a.ID))
	crashPoint(CrashStopFirstOldStopped)
	if err := r.Engine.StartContainer(ctx, id); err != nil {
		_ = r.Engine.RemoveContainer(context.WithoutCancel(ctx), id)
		return restore(startFailed(spec.Name, fmt.Errorf("start: %w", err)))
	}
	notes.add("new %s started", shortID(id))
	crashPoint(CrashStopFirstNewStarted)
	if err := r.startedGate(ctx, id, spec, gate, notes); err != nil {
		// The new container is removed before the old one gets its name back.
		rmErr := r.Engine.RemoveContainer(context.WithoutCancel(ctx), id)
		return restore(errors.Join(err, rmErr))
	}
	if err := r.Engine.RemoveContainer(ctx, a.ID); err != nil {
		return fmt.Errorf("remove old: %w", err)
	}
	notes.add("old %s removed", shortID(a.ID))
	return nil
}

// dependencyConditions says, per service, which depends_on conditions other
// services of the project wait for it with.
func dependencyConditions(p *types.Project) map[string]map[string]bool {
	waited := map[string]map[string]bool{}
	for _, svc := range p.Services {
		for dep, cfg := range svc.DependsOn {
			if waited[dep] == nil {
				waited[dep] = map[string]bool{}
			}
			waited[dep][cfg.Condition] = true
		}
	}
	return waited
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
	next.Name = fmt.Sprintf("%s_next_%s", shortID(a.ID), spec.Name)
	id, err := r.Engine.CreateContainer(ctx, next)
	if err != nil {
		// Nothing was stopped: the old container serves on.
		return errors.Join(startFailed(spec.Name, fmt.Errorf("create: %w", err)), ErrRestored)
	}
	discard := func(cause error) error {
		rmErr := r.Engine.RemoveContainer(context.WithoutCancel(ctx), id)
		if rmErr != nil {
			return errors.Join(cause, rmErr)
		}
		notes.add("new %s removed, old %s kept serving", shortID(id), shortID(a.ID))
		return errors.Join(cause, ErrRestored)
	}
	if err := r.Engine.StartContainer(ctx, id); err != nil {
		return discard(startFailed(spec.Name, fmt.Errorf("start: %w", err)))
	}
	notes.add("new %s started beside old %s", shortID(id), shortID(a.ID))
	crashPoint(CrashStartFirstNewStarted)
	if err := r.startedGate(ctx, id, spec, gate, notes); err != nil {
		return discard(err)
	}
	r.preStop(ctx, a.ID, spec, notes)
	if err := r.Engine.StopContainer(ctx, a.ID, nil); err != nil {
		return fmt.Errorf("stop old: %w", err)
	}
	if err := r.Engine.RemoveContainer(ctx, a.ID); err != nil {
		return fmt.Errorf("remove old: %w", err)
	}
	notes.add("old %s stopped and removed", shortID(a.ID))
	crashPoint(CrashStartFirstOldRemoved)
	if err := r.Engine.RenameContainer(ctx, id, spec.Name); err != nil {
		return fmt.Errorf("give the new container its name: %w", err)
	}
	return nil
}

// health observes a stack's containers now.
func (r *Reconciler) health(ctx context.Context, name string) Health {
	cs, err := r.Engine.Containers(ctx, name)
	if err != nil {
		return Unknown
	}
	return healthOf(cs)
}

// healthOf is the worst health of the containers. A stack with no
// container is Unknown: nothing runs whose health could be seen, whether
// nothing was created yet, a first roll failed, or every service is scaled
// to 0. Not Healthy, which would claim a service answers; not Progressing,
// which would claim one is on its way.
func healthOf(cs []engine.Container) Health {
	if len(cs) == 0 {
		return Unknown
	}
	h := Healthy
	for _, c := range cs {
		switch {
		case c.State == "running" && (c.Health == "" || c.Health == "healthy"):
		case c.Labels[engine.LabelOneShot] != "" && c.Completed():
		case c.State == "running" && c.Health == "starting", c.State == "created", c.State == "restarting":
			h = Worse(h, HealthProgressing)
		default:
			h = Worse(h, Degraded)
		}
	}
	return h
}

func (r *Reconciler) putStack(ctx context.Context, st store.StackState) error {
	st.UpdatedAt = now()
	if err := r.Store.PutStack(ctx, st); err != nil {
		return fmt.Errorf("record stack %s: %w", st.Name, err)
	}
	return nil
}

func now() time.Time { return time.Now().UTC() }

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
