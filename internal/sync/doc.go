// Package sync decides and applies: it turns one stack's desired state
// (a loaded revision) and its observed state (what the engine reports) into
// an ordered plan, runs the plan through the engine, and records the
// deployment and every step in the store.
//
// The model, in the order a reconcile runs it:
//
//   - The image phase (PrepareImages, images.go and build.go) makes the
//     images of the stack available and returns their IDs (Images). It
//     takes an explicit ImageMode, the only carrier of what it may do:
//     ImageDeploy pulls per pull_policy (before anything is stopped) and
//     builds from the checkout a build: section whose digest (the
//     context's files and the build config) has no image yet, recording
//     both in the store; ImageRestore (a rollback or a heal) takes the
//     images on the host without asking a registry, and a rollback pins
//     the images its revision's containers still run; ImageCheck (a drift
//     check) pulls so a moved tag shows, but never builds nor moves a tag;
//     ImageDryRun asks nothing, and forgives only an image the host lacks.
//   - Desire (desire.go) is pure given the images (and, for services that
//     run in another's container, the containers running now): each
//     service's compose config hash and one container spec per replica,
//     with Compose's own names and labels, and how it rolls (roll.go's
//     rollConfig).
//   - Observe lists the project's containers, networks and volumes (before
//     Desire, which resolves shared containers against them).
//   - MakePlan is a pure function of the two. A container is recreated when
//     its config-hash label differs (what docker compose checks), when it runs
//     another image than the tag now names, or when a field differs from its
//     spec (engine.Differences), so a container edited by hand under an
//     unchanged label is caught too. A stopped container that matches is
//     started (and a paused one unpaused), both through its gate; one that
//     Docker is restarting by its own restart policy is left to Docker, and
//     one being removed is waited for. Replicas above the wanted count and
//     services that left are removed; volumes never are: they are reported
//     as orphans. A declared volume that exists under its name without the
//     project's labels (made by hand) is used as it is, as compose uses it,
//     and the plan carries compose's warning (Plan.Warnings), which a stack
//     in sync shows as its error; it is no drift. A service that runs in another's container (network_mode,
//     ipc or pid service:, volumes_from; shared.go) names that container's
//     ID, as compose resolves it: when that container is replaced, the
//     service is recreated after it, its spec resolved again at creation.
//   - The Reconciler applies the plan in order (apply.go). Every new container must
//     pass its health gate (package health), after its post_start hooks
//     (a failing hook fails the gate; pre_stop hooks run before a stop); a
//     one-shot job (a service waited for with service_completed_successfully)
//     passes by exiting 0.
//     Consecutive recreates of one service run in batches of its
//     update_config.parallelism with its delay between them (a rollback
//     uses rollback_config). A failed gate follows the service's
//     failure_action: rollback (the default) ends the apply and the caller
//     returns the whole stack to its last healthy revision; pause ends it
//     there; continue goes on. Any other failure ends the apply. A changed
//     replica is rolled start-first when the service can run twice (no
//     container_name, no fixed host port, not in another's network; compose's
//     deploy.update_config.order may ask for stop-first): the new container
//     starts under "<id>_next_<name>" beside the old one, which stops only
//     once the new one passed. Otherwise stop-first: the old container is
//     parked under "<id>_<name>", stopped, and kept until the new one passed;
//     on failure it gets its name back and is started again — the same
//     container, not a re-creation. A crash in between leaves two replicas
//     with one number, or one under a temporary name; the next plan keeps
//     the one with the canonical name and removes, or rolls again, the other.
//   - A revision whose roll failed its gate, or whose new container the
//     engine would not create or start (a host port another process holds;
//     a StartError, hold.go), is recorded as Failed (outcome rolled_back
//     when the old container serves again, failed for a new stack, whose
//     half-made container is removed) and Sync does not retry it unless the
//     trigger is TriggerRetry (`sync --retry`); the daemon keeps passing
//     that revision while the stack's folder is unchanged, so only a new
//     commit to the stack tries again. Retrying would fail the same way,
//     and each attempt of a stop-first roll stops the working container.
//     An engine that cannot be reached holds nothing: the next poll tries.
//   - Compare and Heal serve drift (package drift): Compare plans a stack
//     against the revision it already runs, changing nothing, so any action
//     is drift; Heal applies only the actions of the named services, gated
//     like a sync (with the services that run in their containers), as a
//     deployment with trigger heal that never rolls the stack back nor
//     marks its revision failed.
//
// Each reconcile ends with the stack's row in the store saying where it is
// (state.go, the only writer of a stack's row: aim, markProgressing,
// markSynced, markFailed, markHeld, markKeptForward, markRolledBack,
// markInvalid, and for the daemon Pin, Unpin, MarkChecked and Adopt). Its
// SyncState is Synced, OutOfSync, Progressing, Invalid or Failed; its
// Health is the worst of its containers' (health.OfAll: Healthy <
// Progressing < Degraded < Unknown), and Unknown when it has none: nothing
// runs whose health could be seen. A deployment, with its Trigger and
// Outcome, is recorded only when the plan does something (one bracket,
// Reconciler.deployment), so polls of an unchanged repository leave no
// trace in history.
//
// The reconciler reaches the engine only through Runtime (runtime.go), an
// interface declared here, on the side that uses it: the engine calls it
// makes, and waiting for a container's health gate. EngineRuntime is the
// real one (package engine, and health.Wait on its event stream); package
// synctest is an in-memory one whose gates a test scripts, so every
// failure_action, order, batch and rollback path is unit-tested without
// Docker (reconcile_test.go, entry_test.go), while the daemon's tests
// against the real engine keep the fake honest.
//
// Where to read what:
//
//	status.go      the vocabulary: SyncState, Health, Trigger, Outcome, the errors a roll returns
//	state.go       every transition of a stack's row
//	reconcile.go   the entry points: Sync, Diff, Compare, Heal, Rollback, MarkInvalid, Remove
//	images.go      the image phase (ImageMode, PrepareImages); build.go, building from the checkout
//	phases.go      the timed phases a deployment records as its first steps (WithPhases), and
//	               the image phase run ahead of a sync (PrepareSync, SyncPrepared)
//	desire.go      Desire: a loaded stack, given its images, into the containers it wants
//	plan.go        MakePlan: desired and observed into ordered actions (pure)
//	apply.go       the executor: batches, failure_action, one step per action
//	roll.go        the roll strategies: start-first, stop-first, rollConfig
//	stackhealth.go a stack's health from its containers
//	hold.go        which failures hold a revision; shared.go, binds.go: spec details
//	runtime.go     the Runtime seam and EngineRuntime
package sync
