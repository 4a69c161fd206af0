package engine

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// Labels written by docker compose v2, which gitopsd writes the same way.
const (
	LabelProject         = "com.docker.compose.project"
	LabelService         = "com.docker.compose.service"
	LabelContainerNumber = "com.docker.compose.container-number"
	LabelConfigHash      = "com.docker.compose.config-hash"
	LabelOneoff          = "com.docker.compose.oneoff"
	LabelWorkingDir      = "com.docker.compose.project.working_dir"
	LabelConfigFiles     = "com.docker.compose.project.config_files"
	LabelImage           = "com.docker.compose.image"
	LabelDependsOn       = "com.docker.compose.depends_on"
	LabelVersion         = "com.docker.compose.version"
	LabelNetwork         = "com.docker.compose.network"
	LabelVolume          = "com.docker.compose.volume"
	LabelReplace         = "com.docker.compose.replace"
	LabelEnvFile         = "com.docker.compose.project.environment_file"
)

// ComposeVersion is the docker compose release whose object model gitopsd
// reproduces; it is written in LabelVersion like compose writes its own.
const ComposeVersion = "2.40.3"

// Labels of gitopsd's own. LabelStack marks an object gitopsd created.
const (
	LabelStack    = "io.gitopsd.stack"    // stack name
	LabelRevision = "io.gitopsd.revision" // Git revision the container was created from
	// LabelOneShot marks the container of a job that is done once it exits
	// 0 (a service depended on with condition service_completed_successfully).
	LabelOneShot = "io.gitopsd.oneshot"
)

// Engine is gitopsd's handle on the Docker engine.
type Engine struct {
	cli *client.Client
	// dockerConfig is the config.json pulls take registry credentials
	// from; "" is where the docker CLI looks (DefaultDockerConfig).
	dockerConfig string
	// pullStall is how long a pull may go without a word of progress
	// before it is given up (DefaultPullStall when zero).
	pullStall time.Duration
}

// DefaultPullStall is how long a pull may go without progress: a
// registry that accepts and never answers must not hold a deploy (and the
// reconcile loop) forever, while a big image on a slow link still pulls as
// long as it moves.
const DefaultPullStall = 2 * time.Minute

// Option configures an Engine.
type Option func(*Engine)

// WithDockerConfig makes pulls take registry credentials from the Docker
// config.json at path ("" is where the docker CLI looks).
func WithDockerConfig(path string) Option {
	return func(e *Engine) { e.dockerConfig = path }
}

// WithPullStall sets how long a pull may go without progress before it
// fails as unreachable (DefaultPullStall when zero).
func WithPullStall(d time.Duration) Option {
	return func(e *Engine) { e.pullStall = d }
}

// New connects to the engine from the environment (DOCKER_HOST etc.),
// negotiates the API version and pings it.
func New(ctx context.Context, opts ...Option) (*Engine, error) {
	cli, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker engine at %s does not answer: %w", cli.DaemonHost(), err)
	}
	e := &Engine{cli: cli}
	for _, opt := range opts {
		opt(e)
	}
	if e.pullStall <= 0 {
		e.pullStall = DefaultPullStall
	}
	return e, nil
}

// Accepting says whether the engine takes new connections now, on a
// connection of its own: the client's pooled ones may outlive the
// listener of an engine going down (dockerd closes it first, then stops
// every container), and nothing is to be started under its shutdown. nil
// when it does.
func (e *Engine) Accepting(ctx context.Context) error {
	conn, err := e.cli.Dialer()(ctx)
	if err != nil {
		return fmt.Errorf("docker engine at %s takes no new connection (going down?): %w", e.cli.DaemonHost(), err)
	}
	return conn.Close()
}

// Client exposes the underlying client for tests and rare callers.
func (e *Engine) Client() *client.Client { return e.cli }

// Close releases the client.
func (e *Engine) Close() error { return e.cli.Close() }

// Container is the observed state of one container of a compose project.
type Container struct {
	ID         string
	Name       string // without the leading slash
	Project    string
	Service    string
	Number     int
	ConfigHash string
	Image      string // image reference as configured
	ImageID    string // sha256:... the container runs
	State      string // created, running, paused, restarting, exited, dead
	Health     string // "", starting, healthy, unhealthy
	Labels     map[string]string
	Managed    bool // carries LabelStack
	// Inspect is the full inspect result, filled by Containers.
	Inspect container.InspectResponse
}

// Completed reports whether the container ran to its end and exited 0, as
// a one-shot job does.
func (c Container) Completed() bool {
	st := c.Inspect.State
	return c.State == "exited" && st != nil && st.ExitCode == 0 && !st.OOMKilled
}

// Containers lists all containers (running or not) whose compose project
// label is project; with project == "", every container that carries a
// compose project label. One-off containers (compose run) are left out:
// they are not part of a stack's desired state.
func (e *Engine) Containers(ctx context.Context, project string) ([]Container, error) {
	filter := LabelProject
	if project != "" {
		filter += "=" + project
	}
	list, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", filter)})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]Container, 0, len(list.Items))
	for _, item := range list.Items {
		if item.Labels[LabelOneoff] == "True" {
			continue
		}
		res, err := e.cli.ContainerInspect(ctx, item.ID, client.ContainerInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			continue // removed between list and inspect
		}
		if err != nil {
			return nil, fmt.Errorf("inspect container %s: %w", item.ID, err)
		}
		out = append(out, fromInspect(res.Container))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		if out[i].Number != out[j].Number {
			return out[i].Number < out[j].Number
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func fromInspect(in container.InspectResponse) Container {
	c := Container{ID: in.ID, Name: strings.TrimPrefix(in.Name, "/"), ImageID: in.Image, Inspect: in, Labels: map[string]string{}}
	if in.Config != nil {
		c.Image = in.Config.Image
		if in.Config.Labels != nil {
			c.Labels = in.Config.Labels
		}
	}
	c.Project = c.Labels[LabelProject]
	c.Service = c.Labels[LabelService]
	c.Number, _ = strconv.Atoi(c.Labels[LabelContainerNumber])
	c.ConfigHash = c.Labels[LabelConfigHash]
	_, c.Managed = c.Labels[LabelStack]
	if in.State != nil {
		c.State = string(in.State.Status)
		if in.State.Health != nil {
			c.Health = string(in.State.Health.Status)
		}
	}
	return c
}

// ContainerSpec is everything needed to create one container.
type ContainerSpec struct {
	Name       string
	Config     *container.Config
	HostConfig *container.HostConfig
	Networking *network.NetworkingConfig
	// Extra are the endpoints of the networks besides the primary one, keyed
	// by network name: engines before API 1.44 take one network at create
	// time, so these are connected after create and before start, as
	// compose does.
	Extra map[string]*network.EndpointSettings
	// Files are secrets and configs written into the container after
	// create, before start.
	Files []InjectedFile
	// PostStart and PreStop are compose's lifecycle hooks: commands the
	// caller runs in the container after it starts and before it stops.
	PostStart, PreStop []Hook
}

// CreateContainer creates (does not start) a container and connects it to
// its extra networks. A half-created container is removed again.
func (e *Engine) CreateContainer(ctx context.Context, spec ContainerSpec) (string, error) {
	res, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: spec.Name, Config: spec.Config, HostConfig: spec.HostConfig, NetworkingConfig: spec.Networking,
	})
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	names := make([]string, 0, len(spec.Extra))
	for name := range spec.Extra {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, err := e.cli.NetworkConnect(ctx, name, client.NetworkConnectOptions{Container: res.ID, EndpointConfig: spec.Extra[name]}); err != nil {
			_ = e.RemoveContainer(context.WithoutCancel(ctx), res.ID)
			return "", fmt.Errorf("connect container %s to network %s: %w", spec.Name, name, err)
		}
	}
	if err := e.injectFiles(ctx, res.ID, spec.Files); err != nil {
		_ = e.RemoveContainer(context.WithoutCancel(ctx), res.ID)
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	return res.ID, nil
}

// StartContainer starts a container; starting a running one is no error.
func (e *Engine) StartContainer(ctx context.Context, id string) error {
	if _, err := e.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", ids.Short(id), err)
	}
	return nil
}

// StopContainer stops with the given grace period (nil: the container's own).
// Stopping a stopped or missing container is no error.
func (e *Engine) StopContainer(ctx context.Context, id string, timeoutSeconds *int) error {
	_, err := e.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: timeoutSeconds})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", ids.Short(id), err)
	}
	return nil
}

// PauseContainer freezes a running container.
func (e *Engine) PauseContainer(ctx context.Context, id string) error {
	if _, err := e.cli.ContainerPause(ctx, id, client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause container %s: %w", ids.Short(id), err)
	}
	return nil
}

// UnpauseContainer resumes a paused container.
func (e *Engine) UnpauseContainer(ctx context.Context, id string) error {
	if _, err := e.cli.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("unpause container %s: %w", ids.Short(id), err)
	}
	return nil
}

// RestartContainer stops a container (within timeoutSeconds, nil: its own
// stop timeout) and starts it again.
func (e *Engine) RestartContainer(ctx context.Context, id string, timeoutSeconds *int) error {
	if _, err := e.cli.ContainerRestart(ctx, id, client.ContainerRestartOptions{Timeout: timeoutSeconds}); err != nil {
		return fmt.Errorf("restart container %s: %w", ids.Short(id), err)
	}
	return nil
}

// RemoveContainer force-removes a container with its anonymous volumes;
// named volumes are kept. Removing a missing container is no error.
func (e *Engine) RemoveContainer(ctx context.Context, id string) error {
	_, err := e.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) && !isRemovalInProgress(err) {
		return fmt.Errorf("remove container %s: %w", ids.Short(id), err)
	}
	return nil
}

// RenameContainer renames a container.
func (e *Engine) RenameContainer(ctx context.Context, id, newName string) error {
	if _, err := e.cli.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: newName}); err != nil {
		return fmt.Errorf("rename container %s to %s: %w", ids.Short(id), newName, err)
	}
	return nil
}

func isRemovalInProgress(err error) bool {
	return err != nil && strings.Contains(err.Error(), "is already in progress")
}
