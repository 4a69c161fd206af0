// Package sync decides and applies: it turns one stack's desired state
// (a loaded revision) and its observed state (what the engine reports) into
// an ordered plan, runs the plan through the engine, and records the
// deployment and every step in the store.
//
// The model, in the order a reconcile runs it:
//
//   - Desire resolves a loaded stack into what it wants: images made
//     available per pull_policy (pulled before anything is stopped), the
//     compose config hash of each service, and one container spec per
//     replica, with Compose's own names and labels.
//   - Observe lists the project's containers, networks and volumes.
//   - MakePlan is a pure function of the two. A container is recreated when
//     its config-hash label differs (what docker compose checks), when it runs
//     another image than the tag now names, or when a field differs from its
//     spec (engine.Differences), so a container edited by hand under an
//     unchanged label is caught too. A stopped container that matches is
//     started. Replicas above the wanted count and services that left are
//     removed; volumes never are: they are reported as orphans.
//   - The Reconciler applies the plan in order. Every new container must
//     pass its health gate (package health); a one-shot job (a service
//     waited for with service_completed_successfully) passes by exiting 0.
//     Consecutive recreates of one service run in batches of its
//     update_config.parallelism with its delay between them (a rollback
//     uses rollback_config). A failed gate follows the service's
//     failure_action: rollback (the default) ends the apply and the caller
//     returns the whole stack to its last healthy revision; pause ends it
//     there; continue goes on. Any other failure ends the apply. A changed replica is rolled start-first when the service can
//     run twice (no container_name, no fixed host port; compose's
//     deploy.update_config.order may ask for stop-first): the new container
//     starts under "<id>_next_<name>" beside the old one, which stops only
//     once the new one passed. Otherwise stop-first: the old container is
//     parked under "<id>_<name>", stopped, and kept until the new one passed;
//     on failure it gets its name back and is started again — the same
//     container, not a re-creation. A crash in between leaves two replicas
//     with one number, or one under a temporary name; the next plan keeps
//     the one with the canonical name and removes, or rolls again, the other.
//   - A revision whose roll failed its gate is recorded as Failed (outcome
//     rolled_back when the old container serves again) and Sync does not
//     retry it unless the trigger is TriggerRetry (`sync --retry`); the
//     daemon keeps passing that revision while the stack's folder is
//     unchanged, so only a new commit to the stack tries again.
//
// Each reconcile ends with the stack's row in the store saying where it is:
// Sync is Synced, OutOfSync, Progressing, Invalid or Failed; Health is the
// worst of its containers' (Healthy < Progressing < Degraded < Unknown). A
// deployment is recorded only when the plan does something, so polls of an
// unchanged repository leave no trace in history.
package sync
