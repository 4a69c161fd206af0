package sync

import (
	"context"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
)

// Runtime is what the reconciler asks of the container engine: observe a
// project, create, start, stop and replace its containers, networks and
// volumes, make its images available, and wait for a container's health
// gate. It is declared here, where it is used, so the executor can be
// driven without Docker (package synctest); EngineRuntime is the real one,
// and the daemon's tests against the real engine keep the fake honest.
type Runtime interface {
	// Observing.
	Containers(ctx context.Context, project string) ([]engine.Container, error)
	Networks(ctx context.Context, project string) ([]engine.Network, error)
	Volumes(ctx context.Context, project string) ([]engine.Volume, error)
	DeclaredVolume(ctx context.Context, project *types.Project, key string) (engine.Volume, bool, error)
	PortsInUse(ctx context.Context, spec engine.ContainerSpec, freedBy string) ([]string, error)

	// Networks and volumes.
	EnsureNetwork(ctx context.Context, project *types.Project, key string, extraLabels map[string]string) (string, error)
	RemoveNetwork(ctx context.Context, id string) error
	EnsureVolume(ctx context.Context, project *types.Project, key string, extraLabels map[string]string) error

	// Containers.
	CreateContainer(ctx context.Context, spec engine.ContainerSpec) (string, error)
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, timeoutSeconds *int) error
	RestartContainer(ctx context.Context, id string, timeoutSeconds *int) error
	UnpauseContainer(ctx context.Context, id string) error
	RemoveContainer(ctx context.Context, id string) error
	RenameContainer(ctx context.Context, id, newName string) error
	RunHook(ctx context.Context, id string, h engine.Hook) error
	// WaitHealthy blocks until the container passes its gate (nil) or
	// fails it (a *health.Failure); other errors mean no verdict.
	WaitHealthy(ctx context.Context, id string, g health.Gate) error

	// Images.
	LocalImage(ctx context.Context, ref string) (id string, ok bool, err error)
	ResolveImage(ctx context.Context, req engine.ImageRequest) (engine.ResolvedImage, error)
	TagImage(ctx context.Context, id, tag string) error
	Build(ctx context.Context, spec engine.BuildSpec, digest, owner string, tags []string, limit int64) (string, error)
}

// EngineRuntime is the Runtime of a real Docker engine: the engine's own
// calls, and health.Wait on its event stream.
type EngineRuntime struct {
	*engine.Engine
}

var _ Runtime = EngineRuntime{}

// WaitHealthy waits for the container's gate on the engine's events.
func (e EngineRuntime) WaitHealthy(ctx context.Context, id string, g health.Gate) error {
	return health.Wait(ctx, e.Client(), id, g)
}
