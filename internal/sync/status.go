package sync

import (
	"errors"
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
