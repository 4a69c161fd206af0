// Package engine is gitopsd's side of the Docker engine: it observes what
// runs and does what it is told, and decides nothing. Which container to
// create, roll or remove is the sync package's question; engine answers
// "what is there" and "do this".
//
// Its model is docker compose's own. A service becomes a container through
// ServiceSpec, which follows compose's create path, so containers carry
// compose's labels (project, service, container-number, config-hash...)
// computed the way compose computes them: `docker compose ps` and `logs`
// work on gitopsd's stacks, and a stack started by `docker compose up` is
// adopted as it is. gitopsd adds labels of its own (LabelStack marks what
// gitopsd created; LabelRevision, LabelFiles...), and touches nothing
// without them. Differences compares an inspected container with its spec
// field by field, reduced on both sides to what compose would have
// written, so a container changed by hand shows and one that is as
// specified does not.
//
// Its parts, by file:
//
//	engine.go    the handle (Engine, New), listing containers, and the
//	             container lifecycle: create, start, stop, pause, remove
//	spec.go      compose service -> ContainerSpec; what gitopsd cannot create
//	diff.go      ContainerSpec versus a running container
//	image.go     pull policies and ResolveImage: pull, or use what is on the
//	             host, per pull_policy and what the image is for (ImageMode)
//	registryauth.go  registry credentials from the Docker config.json
//	build.go     builds from a stack's build: section, their digests and the
//	             pruning of what gitopsd built
//	files.go     compose secrets and configs: digests and injected files
//	resources.go networks and volumes
//	run.go       exec, lifecycle hooks and one-off runs
//	volumeio.go  a volume's content as a tar stream, read and written
//	             without pulling an image (snapshots and restores)
//	ports.go     host ports a container would bind that another holds
//	             (whether a start-first roll can run both at once)
//
// Every call that waits honours its context; a pull gives up when it goes
// DefaultPullStall without progress, so a stalled registry never holds the
// reconcile loop.
package engine
