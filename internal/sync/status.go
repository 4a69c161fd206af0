package sync

import (
	"errors"

	"github.com/gitopsd/gitopsd/internal/health"
)

// SyncState is where a stack is against its repository, as `status` shows
// it and the store records it (store.StackState.Sync).
type SyncState string

const (
	Synced      SyncState = "Synced"
	OutOfSync   SyncState = "OutOfSync"
	Progressing SyncState = "Progressing"
	Invalid     SyncState = "Invalid"
	Failed      SyncState = "Failed"
)

// Health is a stack's health: the worst of its containers' (health.OfAll),
// in the order Healthy < Progressing < Degraded < Unknown.
type Health = health.Status

const (
	Healthy           = health.Healthy
	HealthProgressing = health.Progressing
	Degraded          = health.Degraded
	Unknown           = health.Unknown
)

// Worse returns the worse of two health values.
func Worse(a, b Health) Health { return health.Worse(a, b) }

// Trigger is why a reconcile or a deployment ran, as history records it
// (store.Deployment.Trigger).
type Trigger string

const (
	TriggerPoll    Trigger = "poll"
	TriggerWebhook Trigger = "webhook"
	TriggerManual  Trigger = "manual"
	// TriggerRetry is a manual sync that also retries a revision which
	// failed its health gate (`gitopsd sync STACK --retry`).
	TriggerRetry    Trigger = "retry"
	TriggerHeal     Trigger = "heal"
	TriggerRollback Trigger = "rollback"
	// TriggerSkipWave is a manual sync that applies a stack's new revision
	// now, whatever its rollout's wave says (`gitopsd sync STACK
	// --skip-wave`): history keeps the override.
	TriggerSkipWave Trigger = "skip_wave"
)

// Outcome is how a deployment ended, as history records it
// (store.Deployment.Outcome).
type Outcome string

const (
	OutcomeRunning    Outcome = "running"
	OutcomeSucceeded  Outcome = "succeeded"
	OutcomeFailed     Outcome = "failed"
	OutcomeRolledBack Outcome = "rolled_back"
	// OutcomeHeld: the rollout held the revision; nothing was changed.
	OutcomeHeld Outcome = "held"
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

// keptForward reports whether a failed roll's failure_action kept the
// stack where the roll left it.
func keptForward(err error) bool { return errors.Is(err, ErrKeptForward) }

// restoredOnly reports whether a failed roll put back what ran before it
// and went no further.
func restoredOnly(err error) bool { return errors.Is(err, ErrRestored) && !keptForward(err) }
