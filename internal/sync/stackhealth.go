package sync

import (
	"context"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
)

// health observes a stack's containers now; an engine that cannot be
// asked leaves it Unknown.
func (r *Reconciler) health(ctx context.Context, name string) Health {
	cs, err := r.Runtime.Containers(ctx, name)
	if err != nil {
		return Unknown
	}
	return healthOf(cs)
}

// healthOf is the worst health of the containers (health.OfAll).
func healthOf(cs []engine.Container) Health { return health.OfAll(cs) }
