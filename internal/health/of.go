package health

import "github.com/gitopsd/gitopsd/internal/engine"

// Status is the health of a container, or of a stack as the worst of its
// containers'. The constants are in order of worseness, as `status` and
// the stack's row name them.
type Status string

const (
	Healthy     Status = "Healthy"
	Progressing Status = "Progressing"
	Degraded    Status = "Degraded"
	Unknown     Status = "Unknown"
)

var rank = map[Status]int{Healthy: 0, Progressing: 1, Degraded: 2, Unknown: 3}

// Worse returns the worse of two health values.
func Worse(a, b Status) Status {
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// Of is the health of one container as the engine reports it now: running
// (and healthy, or without a healthcheck) is Healthy, and so is a one-shot
// job that ran to its end; one on its way (created, restarting, its
// healthcheck still starting) is Progressing; anything else is Degraded.
// Unlike the gate (Wait), it looks once and waits for nothing.
func Of(c engine.Container) Status {
	switch {
	case c.State == "running" && (c.Health == "" || c.Health == "healthy"):
		return Healthy
	case c.Labels[engine.LabelOneShot] != "" && c.Completed():
		return Healthy
	case c.State == "running" && c.Health == "starting", c.State == "created", c.State == "restarting":
		return Progressing
	}
	return Degraded
}

// OfAll is the worst health of the containers. None is Unknown: nothing
// runs whose health could be seen, whether nothing was created yet, a
// first roll failed, or every service is scaled to 0. Not Healthy, which
// would claim a service answers; not Progressing, which would claim one is
// on its way.
func OfAll(cs []engine.Container) Status {
	if len(cs) == 0 {
		return Unknown
	}
	h := Healthy
	for _, c := range cs {
		h = Worse(h, Of(c))
	}
	return h
}
