package sync

import (
	"context"

	"github.com/gitopsd/gitopsd/internal/engine"
)

// health observes a stack's containers now.
func (r *Reconciler) health(ctx context.Context, name string) Health {
	cs, err := r.Runtime.Containers(ctx, name)
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
