package sync

import (
	"context"
	"slices"
	"time"

	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// Phase names: the path from a trigger to a running container, in order.
// The daemon times fetch, checkout and load, which run once for every
// stack of a reconcile; a sync times images and plan, per stack. The
// actions that follow (create, recreate, start...) are steps of their own,
// whose details say how long the create, the start and the gate took.
const (
	PhaseFetch    = "fetch"
	PhaseCheckout = "checkout"
	PhaseLoad     = "load"
	PhaseImages   = "images"
	PhasePlan     = "plan"
)

// Phase is one timed part of the path to a deployment. A deployment
// records its phases as steps ahead of its actions, so `history` shows
// where the time of a deploy went.
type Phase struct {
	Name   string
	At     time.Time // when it began
	Took   time.Duration
	Detail string
}

// timed is the phase name that began at began and ends now.
func timed(name string, began time.Time, detail string) Phase {
	return Phase{Name: name, At: began, Took: time.Since(began), Detail: detail}
}

type phasesKey struct{}

// WithPhases returns ctx carrying ps after the phases ctx carries already:
// the daemon's phases (fetch, checkout, load) reach the deployments a
// reconcile opens this way, whatever entry point opens them.
func WithPhases(ctx context.Context, ps ...Phase) context.Context {
	return context.WithValue(ctx, phasesKey{}, append(phasesOf(ctx), ps...))
}

// phasesOf is what ctx carries, clipped: stacks synced side by side share
// it, and each appends its own phases.
func phasesOf(ctx context.Context) []Phase {
	ps, _ := ctx.Value(phasesKey{}).([]Phase)
	return slices.Clip(ps)
}

// phaseSteps are the phases as a deployment's first steps.
func phaseSteps(phases []Phase) []store.Step {
	steps := make([]store.Step, 0, len(phases))
	for _, p := range phases {
		steps = append(steps, store.Step{At: p.At, Action: p.Name, Detail: p.Detail, Duration: p.Took})
	}
	return steps
}

// Prepared is the image phase of a sync run ahead of it (PrepareSync):
// a reconcile of many stacks pulls and builds for all of them before it
// rolls any, so no roll waits on another stack's pull.
type Prepared struct {
	revision string
	images   Images
	err      error
	phase    Phase
}

// PrepareSync runs, ahead of it, the image phase a Sync of st at revision
// by trigger would run: the pulls and builds of a forward deployment. It
// returns nil when that Sync would not prepare images that way (a
// rollback, a revision held as failed, a state that cannot be read): Sync
// then does what it always does. Nothing is stopped or created here; like
// Sync's own image phase, a pull that fails fails the Sync, which records
// it.
func (r *Reconciler) PrepareSync(ctx context.Context, st *stack.Stack, revision string, trigger Trigger) *Prepared {
	if trigger == TriggerRollback {
		return nil
	}
	prev, _, err := r.Store.Stack(ctx, st.Name)
	if err != nil || (prev.FailedRevision == revision && trigger != TriggerRetry) {
		return nil
	}
	began := time.Now()
	images, err := r.prepareImages(ctx, st, revision, ImageDeploy, nil)
	return &Prepared{revision: revision, images: images, err: err, phase: timed(PhaseImages, began, "ahead of the rolls")}
}
