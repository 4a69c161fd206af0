package sync

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
)

// Desired is what one stack should look like on this host: the output of
// loading a revision and resolving its images, ready to compare.
type Desired struct {
	Stack    string
	Revision string
	Services []DesiredService
	Networks []string // compose keys of the networks the stack declares or uses
	Volumes  []string // compose keys of the named volumes the stack declares
}

// DesiredService is one service with the container it wants per replica.
type DesiredService struct {
	Name       string
	DependsOn  []string
	ConfigHash string
	ImageID    string
	// Specs holds the container for replica i+1; len(Specs) is the replica count.
	Specs []engine.ContainerSpec
	// Gate is what a new container of the service must show to be kept.
	Gate health.Gate
	// Roll is how changed replicas are rolled: deploy.update_config, or
	// deploy.rollback_config when the deployment is a rollback.
	Roll RollConfig
	// RollbackRoll is deploy.rollback_config, which Roll becomes for a rollback.
	RollbackRoll RollConfig
	// OneShot: the service is a job other services wait for with condition
	// service_completed_successfully; once it exited 0 it is done, not down.
	OneShot bool
	// RestartWith are the dependencies (depends_on with restart: true)
	// whose recreation restarts this service, as docker compose does.
	RestartWith []string
	// Shares are the services whose containers this one's config names
	// (network_mode, ipc or pid service:<svc>, volumes_from): when one of
	// them is created or recreated, this service is recreated after it,
	// its spec resolved again against the new container.
	Shares []string
}

// Failure actions of deploy.update_config and deploy.rollback_config.
const (
	FailureRollback = "rollback" // the whole stack returns to its last healthy revision
	FailurePause    = "pause"    // the roll stops where it failed; nothing is rolled back
	FailureContinue = "continue" // the roll goes on with the next replicas and services
)

// RollConfig is one of compose's update_config or rollback_config as a roll
// applies it.
type RollConfig struct {
	// StartFirst: a changed replica's new container starts beside the old
	// one, which stops only once the new one passed its gate.
	StartFirst bool
	// Parallelism is how many replicas roll at once; 0 means all of them.
	Parallelism int
	// Delay is the pause between two batches of replicas.
	Delay time.Duration
	// FailureAction is FailureRollback, FailurePause or FailureContinue.
	FailureAction string
	// Monitor, when set, replaces the gate's monitor window.
	Monitor time.Duration
}

// Observed is what runs now for one stack.
type Observed struct {
	Containers []engine.Container
	Networks   []engine.Network
	Volumes    []engine.Volume
}

// ActionKind names one step of a plan. The applier runs them in plan order.
type ActionKind string

const (
	ActCreateNetwork ActionKind = "create-network"
	ActCreateVolume  ActionKind = "create-volume"
	// ActRestoreVolume fills a volume the plan creates from its newest
	// copy (Filler); Sync adds it, MakePlan never does.
	ActRestoreVolume ActionKind = "restore-volume"
	ActCreate        ActionKind = "create"
	ActRecreate      ActionKind = "recreate"
	ActStart         ActionKind = "start"
	ActUnpause       ActionKind = "unpause"
	ActRestart       ActionKind = "restart"
	ActRemove        ActionKind = "remove"
	ActRemoveNetwork ActionKind = "remove-network"
)

// Action is one thing the applier must do.
type Action struct {
	Kind    ActionKind
	Service string
	Number  int    // replica number for create/recreate/start/remove
	ID      string // existing container or network ID
	Name    string // container, network or volume name (for people)
	Key     string // compose key of a network or volume
	Reasons []string
}

func (a Action) String() string {
	var b strings.Builder
	b.WriteString(string(a.Kind))
	switch {
	case a.Service != "":
		fmt.Fprintf(&b, " %s", a.Service)
		if a.Number > 0 {
			fmt.Fprintf(&b, "#%d", a.Number)
		}
	case a.Key != "":
		fmt.Fprintf(&b, " %s", a.Key)
	}
	if a.Name != "" && a.Name != a.Key {
		fmt.Fprintf(&b, " (%s)", a.Name)
	}
	if len(a.Reasons) > 0 {
		fmt.Fprintf(&b, ": %s", strings.Join(a.Reasons, ", "))
	}
	return b.String()
}

// Plan is the ordered list of actions that takes Observed to Desired, plus
// what gitopsd leaves alone on purpose but reports.
type Plan struct {
	Stack   string
	Actions []Action
	// OrphanVolumes are volumes of the project that the desired state no
	// longer declares. Volumes are never removed by a sync.
	OrphanVolumes []string
	// Warnings are what the stack uses as it finds it though it should not
	// have to, as compose warns of it: a volume it declares that exists
	// under its name but was not created for it. They change nothing.
	Warnings []string
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Actions) == 0 }

// Warning is the plan's warnings as one line, "" when there is none.
func (p Plan) Warning() string { return strings.Join(p.Warnings, "; ") }

// MakePlan compares desired with observed and returns the actions, in the
// order they must run:
//
//  1. networks and volumes the stack needs and that do not exist;
//  2. containers of services that left the stack, removed;
//  3. services in depends_on order: per replica create, recreate (when the
//     container differs from its spec, field by field), start (when it
//     exists as specified but is stopped, unless it is a one-shot job that
//     completed) or unpause; a container that Docker is restarting by its
//     restart policy is left to Docker; surplus replicas removed; replicas
//     of a service that shares the container of one that gets a new
//     container (network_mode service:, volumes_from), recreated; replicas
//     of a service that depends on a recreated one with restart: true,
//     restarted;
//  4. networks of the project that no service needs any more, removed.
//
// It is a pure function: no I/O, the same inputs give the same plan.
func MakePlan(desired Desired, observed Observed) (Plan, error) {
	plan := Plan{Stack: desired.Stack}
	order, err := serviceOrder(desired.Services)
	if err != nil {
		return plan, fmt.Errorf("plan %s: %w", desired.Stack, err)
	}

	haveNetworks := map[string]bool{}
	for _, n := range observed.Networks {
		haveNetworks[n.Key] = true
	}
	for _, key := range desired.Networks {
		if !haveNetworks[key] {
			plan.Actions = append(plan.Actions, Action{Kind: ActCreateNetwork, Key: key})
		}
	}
	wantVolumes := map[string]bool{}
	haveVolumes := map[string]bool{}
	for _, v := range observed.Volumes {
		haveVolumes[v.Key] = true
	}
	for _, key := range desired.Volumes {
		for _, v := range observed.Volumes {
			if v.Key == key && v.Foreign != "" {
				// Used as it is, as compose uses it: creating it again would
				// find it there, and a plan that never empties would heal it forever.
				plan.Warnings = append(plan.Warnings, fmt.Sprintf("volumes.%s: %s; used as it is, as docker compose uses it (declare it external: true, name: %s to say so)", key, v.Foreign, v.Name))
			}
		}
	}
	for _, key := range desired.Volumes {
		wantVolumes[key] = true
		if !haveVolumes[key] {
			plan.Actions = append(plan.Actions, Action{Kind: ActCreateVolume, Key: key})
		}
	}
	for _, v := range observed.Volumes {
		if !wantVolumes[v.Key] {
			plan.OrphanVolumes = append(plan.OrphanVolumes, v.Name)
		}
	}
	sort.Strings(plan.OrphanVolumes)

	byService := map[string][]engine.Container{}
	for _, c := range observed.Containers {
		byService[c.Service] = append(byService[c.Service], c)
	}
	wanted := map[string]bool{}
	for _, s := range desired.Services {
		wanted[s.Name] = true
	}
	var gone []string
	for name := range byService {
		if !wanted[name] {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		for _, c := range byService[name] {
			plan.Actions = append(plan.Actions, Action{Kind: ActRemove, Service: name, Number: c.Number, ID: c.ID, Name: c.Name, Reasons: []string{"service removed"}})
		}
	}

	recreated := map[string]bool{}
	replaced := map[string]bool{} // created or recreated: a new container
	for _, svc := range order {
		actions := planService(svc, byService[svc.Name])
		actions = withSharedRecreates(svc, byService[svc.Name], actions, replaced)
		for _, a := range actions {
			if a.Kind == ActRecreate {
				recreated[svc.Name] = true
			}
			if a.Kind == ActRecreate || a.Kind == ActCreate {
				replaced[svc.Name] = true
			}
		}
		actions = append(actions, restartsFor(svc, byService[svc.Name], actions, recreated)...)
		plan.Actions = append(plan.Actions, actions...)
	}

	usedNetworks := map[string]bool{}
	for _, key := range desired.Networks {
		usedNetworks[key] = true
	}
	for _, n := range observed.Networks {
		if !usedNetworks[n.Key] && n.Managed {
			plan.Actions = append(plan.Actions, Action{Kind: ActRemoveNetwork, Key: n.Key, ID: n.ID, Name: n.Name, Reasons: []string{"network no longer used"}})
		}
	}
	return plan, nil
}

// planService decides, replica by replica, what one service needs.
func planService(svc DesiredService, have []engine.Container) []Action {
	var actions []Action
	byNumber := map[int][]engine.Container{}
	removing := map[int]bool{}
	for _, c := range have {
		if c.State == "removing" {
			// Going away already: its replica is planned once it is gone
			// (a new one could not take its name before).
			removing[c.Number] = true
			continue
		}
		byNumber[c.Number] = append(byNumber[c.Number], c)
	}
	for i, spec := range svc.Specs {
		number := i + 1
		candidates := byNumber[number]
		delete(byNumber, number)
		if len(candidates) == 0 && removing[number] {
			continue
		}
		if len(candidates) == 0 {
			actions = append(actions, Action{Kind: ActCreate, Service: svc.Name, Number: number, Name: spec.Name})
			continue
		}
		// Keep the best candidate (running, newest first); duplicates left by an
		// interrupted recreate are removed.
		sort.SliceStable(candidates, func(a, b int) bool { return betterCandidate(candidates[a], candidates[b], spec.Name) })
		keep := candidates[0]
		for _, dup := range candidates[1:] {
			actions = append(actions, Action{Kind: ActRemove, Service: svc.Name, Number: number, ID: dup.ID, Name: dup.Name, Reasons: []string{"duplicate replica"}})
		}
		if reasons := containerDifferences(svc, spec, keep); len(reasons) > 0 {
			actions = append(actions, Action{Kind: ActRecreate, Service: svc.Name, Number: number, ID: keep.ID, Name: keep.Name, Reasons: reasons})
			continue
		}
		switch {
		case keep.State == "running", svc.OneShot && keep.Completed():
		case keep.State == "restarting":
			// The container's own restart policy is at work: Docker starts
			// it again, and starting it here would race Docker.
		case keep.State == "paused":
			actions = append(actions, Action{Kind: ActUnpause, Service: svc.Name, Number: number, ID: keep.ID, Name: keep.Name, Reasons: []string{"container paused"}})
		default:
			actions = append(actions, Action{Kind: ActStart, Service: svc.Name, Number: number, ID: keep.ID, Name: keep.Name, Reasons: []string{"container " + keep.State}})
		}
	}
	var surplus []int
	for number := range byNumber {
		surplus = append(surplus, number)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(surplus)))
	for _, number := range surplus {
		for _, c := range byNumber[number] {
			actions = append(actions, Action{Kind: ActRemove, Service: svc.Name, Number: number, ID: c.ID, Name: c.Name, Reasons: []string{"scaled down"}})
		}
	}
	return actions
}

// withSharedRecreates is svc's actions with every replica that nothing
// replaces yet recreated (instead of started or unpaused) when a service
// whose container svc shares (Shares) gets a new container: the old one's
// ID, which svc's containers name, is gone.
func withSharedRecreates(svc DesiredService, have []engine.Container, actions []Action, replaced map[string]bool) []Action {
	because := firstIn(svc.Shares, replaced)
	if because == "" {
		return actions
	}
	touched := map[string]bool{}
	kept := actions[:0:0]
	for _, a := range actions {
		switch a.Kind {
		case ActRecreate, ActRemove:
			touched[a.ID] = true
		case ActStart, ActUnpause:
			continue // recreated below
		}
		kept = append(kept, a)
	}
	var recreates []Action
	for _, c := range have {
		if touched[c.ID] || c.State == "removing" || c.Number < 1 || c.Number > len(svc.Specs) {
			continue
		}
		recreates = append(recreates, Action{Kind: ActRecreate, Service: svc.Name, Number: c.Number, ID: c.ID, Name: c.Name, Reasons: []string{because + " got a new container, which this one shares"}})
	}
	sort.Slice(recreates, func(i, j int) bool { return recreates[i].Number < recreates[j].Number })
	return append(kept, recreates...)
}

// firstIn is the first of names in set, or "".
func firstIn(names []string, set map[string]bool) string {
	for _, name := range names {
		if set[name] {
			return name
		}
	}
	return ""
}

// restartsFor restarts the running replicas of svc that nothing else touches
// when a dependency it declares with restart: true was recreated.
func restartsFor(svc DesiredService, have []engine.Container, actions []Action, recreated map[string]bool) []Action {
	because := firstIn(svc.RestartWith, recreated)
	if because == "" {
		return nil
	}
	touched := map[string]bool{}
	for _, a := range actions {
		touched[a.ID] = true
	}
	var restarts []Action
	for _, c := range have {
		if touched[c.ID] || c.State != "running" || c.Number < 1 || c.Number > len(svc.Specs) {
			continue
		}
		restarts = append(restarts, Action{Kind: ActRestart, Service: svc.Name, Number: c.Number, ID: c.ID, Name: c.Name, Reasons: []string{because + " was recreated (depends_on restart: true)"}})
	}
	sort.Slice(restarts, func(i, j int) bool { return restarts[i].Number < restarts[j].Number })
	return restarts
}

func betterCandidate(a, b engine.Container, canonical string) bool {
	if (a.State == "running") != (b.State == "running") {
		return a.State == "running"
	}
	// The container carrying the canonical name is the one a roll left in
	// place; the other is a half-made replacement or a parked old one.
	return a.Name == canonical && b.Name != canonical
}

// containerDifferences says why an existing container does not match its
// spec: the compose config hash first (what docker compose itself checks),
// then the image it runs, then field by field, so a container changed by
// hand under an unchanged hash label is still caught.
func containerDifferences(svc DesiredService, spec engine.ContainerSpec, c engine.Container) []string {
	var reasons []string
	if c.Name != spec.Name {
		// A roll cut off before the new container got its name.
		reasons = append(reasons, "name "+c.Name)
	}
	if c.ConfigHash != svc.ConfigHash {
		reasons = append(reasons, "config changed")
	}
	if svc.ImageID != "" && c.ImageID != "" && c.ImageID != svc.ImageID {
		reasons = append(reasons, "image changed")
	}
	// A container compose created (adopted) has no digest of its secrets
	// and configs: only one gitopsd wrote can tell they changed.
	if have, ok := c.Labels[engine.LabelFiles]; ok && have != spec.Config.Labels[engine.LabelFiles] {
		reasons = append(reasons, "secrets or configs changed")
	}
	for _, field := range engine.Differences(spec, c.Inspect) {
		if field == "image" && len(reasons) > 0 {
			continue
		}
		reasons = append(reasons, field)
	}
	return reasons
}

// serviceOrder sorts services so that every service comes after those it
// depends on; ties keep the order by name. A cycle is an error.
func serviceOrder(services []DesiredService) ([]DesiredService, error) {
	byName := map[string]DesiredService{}
	names := make([]string, 0, len(services))
	for _, s := range services {
		byName[s.Name] = s
		names = append(names, s.Name)
	}
	sort.Strings(names)
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var ordered []DesiredService
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("depends_on cycle: %s", strings.Join(append(path, name), " -> "))
		}
		state[name] = visiting
		deps := append([]string(nil), byName[name].DependsOn...)
		sort.Strings(deps)
		for _, dep := range deps {
			if _, ok := byName[dep]; !ok {
				continue // a dependency that is not deployed here (profile, not targeted)
			}
			if err := visit(dep, append(path, name)); err != nil {
				return err
			}
		}
		state[name] = done
		ordered = append(ordered, byName[name])
		return nil
	}
	for _, name := range names {
		if err := visit(name, nil); err != nil {
			return nil, err
		}
	}
	return ordered, nil
}
