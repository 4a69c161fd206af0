// Package synctest is an in-memory container engine for the reconciler's
// unit tests: a fake of sync.Runtime that keeps containers, networks,
// volumes and images in maps, answers health gates as a test scripts them,
// and records every call, so a test can drive a roll through every
// failure_action, order and rare path without Docker.
//
// It behaves as the real engine does where the reconciler relies on it:
// names are unique, a container is created stopped and runs once started,
// an image must be on the host (or in the registry) to be used, and
// Containers reports what the engine's inspect would, built from the spec
// the container was created from. The daemon's tests against the real
// engine are the proof that it tells the truth; when they disagree, the
// fake is wrong.
package synctest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	gosync "sync"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/stack/vocab"
)

// ErrNotFound is what the fake answers for a container, network or image
// it does not have.
var ErrNotFound = errors.New("no such object")

// Runtime is the fake engine. Its zero value is not usable: call New.
type Runtime struct {
	// Gate decides the health gate of a container (nil: it passes). It
	// runs without the fake's lock held, so it may call the fake.
	Gate func(c engine.Container, g health.Gate) error
	// Before runs before each call that changes something, with the call
	// as Calls records it; a non-nil error fails the call instead. Tests
	// use it to make the engine refuse one step, or to change the world
	// (a container vanishing) at an exact point of a roll. It runs
	// without the fake's lock held.
	Before func(call string) error
	// PortsHeld are host ports another process holds: PortsInUse reports
	// those a spec publishes.
	PortsHeld []string

	mu         gosync.Mutex
	seq        int
	containers map[string]*box           // by ID
	networks   map[string]engine.Network // by name
	volumes    map[string]engine.Volume  // by name
	images     map[string]string         // ref or ID -> ID
	registry   map[string]string         // ref -> ID a pull would bring
	external   map[string]bool           // external networks that exist
	calls      []string
	gating     int // gates waited for now
	maxGating  int
}

type box struct {
	c    engine.Container
	spec engine.ContainerSpec
}

// New returns an engine with no container, no network, no volume and no
// image.
func New() *Runtime {
	return &Runtime{
		containers: map[string]*box{}, networks: map[string]engine.Network{}, volumes: map[string]engine.Volume{},
		images: map[string]string{}, registry: map[string]string{}, external: map[string]bool{},
	}
}

// AddImage puts an image on the host under ref, as `docker pull` would.
func (f *Runtime) AddImage(ref, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images[ref], f.images[id] = id, id
}

// Publish makes the registry serve id for ref.
func (f *Runtime) Publish(ref, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registry[ref] = id
}

// AddExternalNetwork makes a network that no stack created exist.
func (f *Runtime) AddExternalNetwork(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.external[name] = true
}

// Calls is every call that changed something, in order: "create NAME",
// "start NAME", "stop NAME", "remove NAME", "rename OLD NEW", "unpause
// NAME", "restart NAME", "hook NAME", "gate NAME", "pull REF", "tag REF",
// "build TAG", "create-network NAME", "remove-network NAME",
// "create-volume NAME".
func (f *Runtime) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// ResetCalls forgets the calls so far.
func (f *Runtime) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// MaxConcurrentGates is the most health gates that were waited for at once.
func (f *Runtime) MaxConcurrentGates() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxGating
}

// Vanish removes a container behind the reconciler's back, as `docker rm
// -f` by hand would.
func (f *Runtime) Vanish(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, b := range f.containers {
		if b.c.Name == name {
			delete(f.containers, id)
		}
	}
}

// SetState sets a container's state (running, exited, paused...) as if it
// had changed outside the reconciler.
func (f *Runtime) SetState(name, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.containers {
		if b.c.Name == name {
			b.c.State = state
		}
	}
}

// act records call and runs Before; a refusal fails the call.
func (f *Runtime) act(call string) error {
	if f.Before != nil {
		if err := f.Before(call); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
	return nil
}

// Containers lists the project's containers as the engine reports them,
// sorted by service, number and name.
func (f *Runtime) Containers(_ context.Context, project string) ([]engine.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.Container
	for _, b := range f.containers {
		if project == "" || b.c.Project == project {
			out = append(out, b.view())
		}
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

// view is the container as inspect shows it: its spec, its state.
func (b *box) view() engine.Container {
	c := b.c
	cfg := *b.spec.Config
	c.Labels = cfg.Labels
	exit := 0
	if c.State == "exited" && c.Labels[engine.LabelOneShot] == "" {
		exit = 137 // stopped, not completed
	}
	c.Inspect = container.InspectResponse{
		ID: c.ID, Name: "/" + c.Name, Image: c.ImageID, Config: &cfg, HostConfig: b.spec.HostConfig,
		State: &container.State{Status: container.ContainerState(c.State), Running: c.State == "running", ExitCode: exit},
	}
	return c
}

// Networks lists the project's networks.
func (f *Runtime) Networks(_ context.Context, project string) ([]engine.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ofProject(f.networks, project, func(n engine.Network) (string, string) { return n.Project, n.Name }), nil
}

// Volumes lists the project's volumes.
func (f *Runtime) Volumes(_ context.Context, project string) ([]engine.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ofProject(f.volumes, project, func(v engine.Volume) (string, string) { return v.Project, v.Name }), nil
}

// ofProject is the objects of project, by name, as the engine lists them.
func ofProject[M ~map[K]T, K comparable, T any](all M, project string, key func(T) (project, name string)) []T {
	var out []T
	for _, o := range all {
		if p, _ := key(o); p == project {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { _, a := key(out[i]); _, b := key(out[j]); return a < b })
	return out
}

// DeclaredVolume finds no volume made by hand: the fake has none.
func (f *Runtime) DeclaredVolume(context.Context, *types.Project, string) (engine.Volume, bool, error) {
	return engine.Volume{}, false, nil
}

// PortsInUse is the host ports of spec that PortsHeld holds.
func (f *Runtime) PortsInUse(_ context.Context, spec engine.ContainerSpec, _ string) ([]string, error) {
	var held []string
	for port, bindings := range spec.HostConfig.PortBindings {
		for _, b := range bindings {
			if slices.Contains(f.PortsHeld, b.HostPort) {
				held = append(held, b.HostPort+"/"+string(port.Proto()))
			}
		}
	}
	sort.Strings(held)
	return held, nil
}

// EnsureNetwork creates the project's network key unless it exists; an
// external one must exist.
func (f *Runtime) EnsureNetwork(_ context.Context, p *types.Project, key string, _ map[string]string) (string, error) {
	n, ok := p.Networks[key]
	if !ok {
		return "", fmt.Errorf("network %s is not declared", key)
	}
	f.mu.Lock()
	if n.External {
		defer f.mu.Unlock()
		if !f.external[n.Name] {
			return "", fmt.Errorf("external network %s not found", n.Name)
		}
		return "ext-" + n.Name, nil
	}
	if have, ok := f.networks[n.Name]; ok {
		f.mu.Unlock()
		return have.ID, nil
	}
	f.mu.Unlock()
	if err := f.act("create-network " + n.Name); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	net := engine.Network{ID: "net-" + n.Name, Name: n.Name, Project: p.Name, Key: key, Managed: true}
	f.networks[n.Name] = net
	return net.ID, nil
}

// RemoveNetwork removes a network by ID.
func (f *Runtime) RemoveNetwork(_ context.Context, id string) error {
	f.mu.Lock()
	name := ""
	for n, net := range f.networks {
		if net.ID == id {
			name = n
		}
	}
	f.mu.Unlock()
	if name == "" {
		return fmt.Errorf("remove network %s: %w", id, ErrNotFound)
	}
	if err := f.act("remove-network " + name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.networks, name)
	return nil
}

// DropVolume removes a volume by name, as an operator (or a lost disk)
// would.
func (f *Runtime) DropVolume(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.volumes, name)
}

// EnsureVolume creates the project's volume key unless it exists.
func (f *Runtime) EnsureVolume(_ context.Context, p *types.Project, key string, _ map[string]string) error {
	name := p.Volumes[key].Name
	if name == "" {
		name = p.Name + "_" + key
	}
	f.mu.Lock()
	_, ok := f.volumes[name]
	f.mu.Unlock()
	if ok {
		return nil
	}
	if err := f.act("create-volume " + name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.volumes[name] = engine.Volume{Name: name, Project: p.Name, Key: key}
	return nil
}

// CreateContainer creates a stopped container from spec; its image must
// be on the host and its name free.
func (f *Runtime) CreateContainer(_ context.Context, spec engine.ContainerSpec) (string, error) {
	if err := f.act("create " + spec.Name); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.containers {
		if b.c.Name == spec.Name {
			return "", fmt.Errorf("create %s: the name is in use by container %s", spec.Name, b.c.ID)
		}
	}
	imageID, ok := f.images[spec.Config.Image]
	if !ok {
		return "", fmt.Errorf("create %s: image %s: %w", spec.Name, spec.Config.Image, ErrNotFound)
	}
	f.seq++
	id := fmt.Sprintf("%04d%060x", f.seq, f.seq) // 64 characters, as Docker's
	labels := spec.Config.Labels
	number, _ := strconv.Atoi(labels[engine.LabelContainerNumber])
	_, managed := labels[engine.LabelStack]
	f.containers[id] = &box{spec: spec, c: engine.Container{
		ID: id, Name: spec.Name, Project: labels[engine.LabelProject], Service: labels[engine.LabelService], Number: number,
		ConfigHash: labels[engine.LabelConfigHash], Image: spec.Config.Image, ImageID: imageID, State: "created", Managed: managed,
	}}
	return id, nil
}

// find is the container id; the lock is held.
func (f *Runtime) find(id string) (*box, error) {
	b, ok := f.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, ErrNotFound)
	}
	return b, nil
}

// nameOf is the container's name for the call log ("" when it is gone).
func (f *Runtime) nameOf(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.containers[id]; ok {
		return b.c.Name
	}
	return id
}

// change runs call on container id and, when Before lets it, sets its state.
func (f *Runtime) change(verb, id, state string) error {
	if err := f.act(verb + " " + f.nameOf(id)); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := f.find(id)
	if err != nil {
		return err
	}
	b.c.State = state
	return nil
}

// StartContainer runs a container.
func (f *Runtime) StartContainer(_ context.Context, id string) error {
	return f.change("start", id, "running")
}

// StopContainer stops a container.
func (f *Runtime) StopContainer(_ context.Context, id string, _ *int) error {
	return f.change("stop", id, "exited")
}

// RestartContainer restarts a container.
func (f *Runtime) RestartContainer(_ context.Context, id string, _ *int) error {
	return f.change("restart", id, "running")
}

// UnpauseContainer unpauses a container.
func (f *Runtime) UnpauseContainer(_ context.Context, id string) error {
	return f.change("unpause", id, "running")
}

// RemoveContainer removes a container, running or not.
func (f *Runtime) RemoveContainer(_ context.Context, id string) error {
	if err := f.act("remove " + f.nameOf(id)); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.find(id); err != nil {
		return err
	}
	delete(f.containers, id)
	return nil
}

// RenameContainer renames a container; the new name must be free.
func (f *Runtime) RenameContainer(_ context.Context, id, newName string) error {
	if err := f.act("rename " + f.nameOf(id) + " " + newName); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := f.find(id)
	if err != nil {
		return err
	}
	for other, o := range f.containers {
		if other != id && o.c.Name == newName {
			return fmt.Errorf("rename %s: the name %s is in use", b.c.Name, newName)
		}
	}
	b.c.Name, b.spec.Name = newName, newName
	return nil
}

// RunHook runs a lifecycle hook in a running container.
func (f *Runtime) RunHook(_ context.Context, id string, _ engine.Hook) error {
	f.mu.Lock()
	b, err := f.find(id)
	running := err == nil && b.c.State == "running"
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if !running {
		return engine.ErrNotRunning
	}
	return f.act("hook " + f.nameOf(id))
}

// WaitHealthy answers the gate as Gate scripts it. A one-shot container
// that passes has exited 0, as a completed job has.
func (f *Runtime) WaitHealthy(ctx context.Context, id string, g health.Gate) error {
	f.mu.Lock()
	b, err := f.find(id)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	c := b.view()
	f.gating++
	f.maxGating = max(f.maxGating, f.gating)
	f.calls = append(f.calls, "gate "+c.Name)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.gating--
		f.mu.Unlock()
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.State != "running" {
		return &health.Failure{Container: c.Name, Reason: "not running"}
	}
	if f.Gate != nil {
		if err := f.Gate(c, g); err != nil {
			return err
		}
	}
	if g.Completes {
		f.mu.Lock()
		if b, ok := f.containers[id]; ok {
			b.c.State = "exited"
		}
		f.mu.Unlock()
	}
	return nil
}

// LocalImage is the ID ref names on the host. Before sees it as
// "inspect-image REF" (and may fail it), but it is not a call that changes
// anything, so Calls leaves it out.
func (f *Runtime) LocalImage(_ context.Context, ref string) (string, bool, error) {
	if f.Before != nil {
		if err := f.Before("inspect-image " + ref); err != nil {
			return "", false, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.images[ref]
	return id, ok, nil
}

// ResolveImage takes the image on the host, pulling it from the registry
// when the host lacks it or the policy is always (except to restore).
func (f *Runtime) ResolveImage(_ context.Context, req engine.ImageRequest) (engine.ResolvedImage, error) {
	f.mu.Lock()
	local, present := f.images[req.Ref]
	remote, published := f.registry[req.Ref]
	f.mu.Unlock()
	pull := !present || (req.Policy.Name == vocab.PullAlways && req.Mode != engine.ForRestore)
	if !pull {
		return engine.ResolvedImage{ID: local}, nil
	}
	if !published {
		err := fmt.Errorf("pull %s: %w", req.Ref, ErrNotFound)
		if present && req.Mode != engine.ForDeploy {
			return engine.ResolvedImage{ID: local, PullErr: err}, nil
		}
		return engine.ResolvedImage{}, err
	}
	if err := f.act("pull " + req.Ref); err != nil {
		return engine.ResolvedImage{}, err
	}
	f.AddImage(req.Ref, remote)
	return engine.ResolvedImage{ID: remote, Pulled: true}, nil
}

// TagImage names image id ref too.
func (f *Runtime) TagImage(_ context.Context, id, ref string) error {
	if err := f.act("tag " + ref); err != nil {
		return err
	}
	f.AddImage(ref, id)
	return nil
}

// Build makes an image whose ID derives from the digest, tagged tags.
func (f *Runtime) Build(_ context.Context, _ engine.BuildSpec, digest, _ string, tags []string, _ int64) (string, error) {
	if err := f.act("build " + strings.Join(tags, ",")); err != nil {
		return "", err
	}
	id := "sha256:built-" + digest[:min(12, len(digest))]
	for _, t := range tags {
		f.AddImage(t, id)
	}
	return id, nil
}
