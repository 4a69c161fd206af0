package sync

import (
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
)

// Services can run inside another service's container: network_mode, ipc
// and pid "service:<svc>" join its namespaces, volumes_from "<svc>" mounts
// its volumes. Docker knows only containers, so compose rewrites each such
// reference to the ID of <svc>'s first container when it creates the
// service, and hashes the rewritten form: a service that shares another's
// container is recreated whenever that container is. gitopsd does the same,
// from what runs when the plan is made and again when the container is
// created (the container it names may have been recreated in between).

// sharedServices names the services whose containers svc refers to, sorted.
func sharedServices(svc types.ServiceConfig) []string {
	seen := map[string]bool{}
	for _, mode := range []string{svc.NetworkMode, svc.Ipc, svc.Pid} {
		if name, ok := strings.CutPrefix(mode, types.ServicePrefix); ok {
			seen[name] = true
		}
	}
	for _, v := range svc.VolumesFrom {
		if name, _, _ := strings.Cut(v, ":"); name != "container" {
			seen[name] = true
		}
	}
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// resolveShared rewrites svc's references to other services' containers
// with the containers that run now: forHash is what compose hashes (mode
// suffixes of volumes_from dropped, as compose drops them), forSpec what
// the container is created with (a volumes_from mode such as :ro kept, so
// the file is honoured). A referenced service without a container yet is
// named by its first replica's container name: the hash then differs from
// any container's, so the service is created anew once that container
// exists, with its ID.
func resolveShared(p *types.Project, svc types.ServiceConfig, running []engine.Container) (forHash, forSpec types.ServiceConfig) {
	if len(sharedServices(svc)) == 0 && !hasContainerVolumesFrom(svc) {
		return svc, svc
	}
	owner := func(name string) string {
		if id := firstContainer(p, name, running); id != "" {
			return id
		}
		if other, ok := p.Services[name]; ok {
			return engine.ContainerName(p.Name, other, 1)
		}
		return p.Name + "-" + name + "-1"
	}
	mode := func(m string) string {
		if name, ok := strings.CutPrefix(m, types.ServicePrefix); ok {
			return types.ContainerPrefix + owner(name)
		}
		return m
	}
	forHash, forSpec = svc, svc
	forHash.NetworkMode, forHash.Ipc, forHash.Pid = mode(svc.NetworkMode), mode(svc.Ipc), mode(svc.Pid)
	forSpec.NetworkMode, forSpec.Ipc, forSpec.Pid = forHash.NetworkMode, forHash.Ipc, forHash.Pid
	if len(svc.VolumesFrom) > 0 {
		forHash.VolumesFrom = make([]string, len(svc.VolumesFrom))
		forSpec.VolumesFrom = make([]string, len(svc.VolumesFrom))
		for i, v := range svc.VolumesFrom {
			source, access := volumesFromParts(v)
			if name, ok := strings.CutPrefix(source, types.ContainerPrefix); ok {
				source = name
			} else {
				source = owner(source)
			}
			forHash.VolumesFrom[i] = source
			forSpec.VolumesFrom[i] = source
			if access != "" {
				forSpec.VolumesFrom[i] += ":" + access
			}
		}
	}
	return forHash, forSpec
}

// volumesFromParts splits a volumes_from entry, "<svc>[:ro|rw]" or
// "container:<name>[:ro|rw]", into its source and access mode.
func volumesFromParts(v string) (source, access string) {
	if name, ok := strings.CutPrefix(v, types.ContainerPrefix); ok {
		name, access, _ = strings.Cut(name, ":")
		return types.ContainerPrefix + name, access
	}
	source, access, _ = strings.Cut(v, ":")
	return source, access
}

func hasContainerVolumesFrom(svc types.ServiceConfig) bool {
	for _, v := range svc.VolumesFrom {
		if strings.HasPrefix(v, types.ContainerPrefix) {
			return true
		}
	}
	return false
}

// firstContainer is the ID of the container compose would pick for a
// reference to service name: the first by name among its containers, those
// with their canonical name (not one a roll parked) first. "" when none.
func firstContainer(p *types.Project, name string, running []engine.Container) string {
	svc, ok := p.Services[name]
	var candidates []engine.Container
	for _, c := range running {
		if c.Service == name && c.State != "removing" {
			candidates = append(candidates, c)
		}
	}
	canonical := func(c engine.Container) bool { return ok && c.Name == engine.ContainerName(p.Name, svc, c.Number) }
	sort.SliceStable(candidates, func(i, j int) bool {
		if ci, cj := canonical(candidates[i]), canonical(candidates[j]); ci != cj {
			return ci
		}
		return candidates[i].Name < candidates[j].Name
	})
	if len(candidates) == 0 {
		return ""
	}
	return candidates[0].ID
}
