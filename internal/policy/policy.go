// Package policy owns what a stack may ask of this host: privileges, host
// namespaces, devices, capabilities, the Docker socket, bind mounts and
// paths outside the stack's folder. Whoever can push to the repository runs
// containers as root on every host of the fleet; the host's policy narrows
// what such a push can do there.
//
// The default allows what docker compose allows, except paths that leave
// the stack's folder. The strict preset,
// for edge fleets, allows none of it; the daemon configuration can open
// each rule again.
package policy

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/config"
)

// Policy is a resolved policy: every rule has a value.
type Policy struct {
	Privileged        bool
	HostNamespaces    bool
	Devices           bool
	DockerSocket      bool
	PathsOutsideStack bool
	// OtherContainers: a service may join the namespaces of, mount the
	// volumes of, or link to a container outside its stack.
	OtherContainers bool
	// Capabilities allowed in cap_add, without the CAP_ prefix; nil allows
	// any, ALL allows any too.
	Capabilities []string
	// BindPaths are the host folders a bind may come from; nil allows any.
	BindPaths []string
}

// Default is the policy without a preset: whatever docker compose would
// run, except paths that leave the stack's folder, which a repository has
// no business reading on a host unless the host says so.
func Default() Policy {
	return Policy{Privileged: true, HostNamespaces: true, Devices: true, DockerSocket: true, OtherContainers: true}
}

// Strict allows no privilege, host namespace, device, added capability,
// Docker socket, bind mount, container outside the stack or path outside
// the stack's folder.
func Strict() Policy {
	return Policy{Capabilities: []string{}, BindPaths: []string{}}
}

// FromConfig resolves the configured policy: the preset, then each key set.
// c must have passed config validation.
func FromConfig(c config.Policy) Policy {
	p := Default()
	if c.Preset == config.PresetStrict {
		p = Strict()
	}
	set := func(dst *bool, v *bool) {
		if v != nil {
			*dst = *v
		}
	}
	set(&p.Privileged, c.Privileged)
	set(&p.HostNamespaces, c.HostNamespaces)
	set(&p.Devices, c.Devices)
	set(&p.DockerSocket, c.DockerSocket)
	set(&p.PathsOutsideStack, c.PathsOutsideStack)
	set(&p.OtherContainers, c.OtherContainers)
	if c.Capabilities != nil {
		p.Capabilities = make([]string, 0, len(c.Capabilities))
		for _, cp := range c.Capabilities {
			p.Capabilities = append(p.Capabilities, capName(cp))
		}
	}
	if c.BindPaths != nil {
		p.BindPaths = slices.Clone(c.BindPaths)
	}
	return p
}

// Violation is one thing a stack asks that the policy does not allow.
type Violation struct {
	Service string
	// KeyPath is the dotted path of the offending key in the compose file
	// (services.web.privileged), for pointing at its line.
	KeyPath string
	// Rule is the configuration key that would allow it (policy.privileged).
	Rule   string
	Detail string
}

func (v Violation) Error() string {
	return fmt.Sprintf("service %s: %s is not allowed on this host (%s)", v.Service, v.Detail, v.Rule)
}

// DockerSockets are the host paths whose bind hands a container the engine.
var DockerSockets = []string{"/var/run/docker.sock", "/run/docker.sock", "/var/run/docker", "/run/docker"}

// Check returns what project's services ask that p does not allow, in
// service order. stackDir is the stack's folder: binds from inside it are
// part of the repository and need no bind_paths entry.
func (p Policy) Check(project *types.Project, stackDir string) []Violation {
	names := make([]string, 0, len(project.Services))
	for name := range project.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []Violation
	for _, name := range names {
		out = append(out, p.checkService(project.Services[name], stackDir)...)
	}
	return out
}

func (p Policy) checkService(svc types.ServiceConfig, stackDir string) []Violation {
	var out []Violation
	add := func(key, rule, format string, args ...any) {
		out = append(out, Violation{Service: svc.Name, KeyPath: "services." + svc.Name + "." + key, Rule: "policy." + rule, Detail: fmt.Sprintf(format, args...)})
	}
	if !p.Privileged {
		if svc.Privileged {
			add("privileged", "privileged", "privileged: true")
		}
		for _, opt := range svc.SecurityOpt {
			if strings.Contains(opt, "unconfined") || opt == "label:disable" || opt == "label=disable" {
				add("security_opt", "privileged", "security_opt %s", opt)
			}
		}
	}
	if !p.HostNamespaces {
		for _, ns := range []struct{ key, value string }{
			{"network_mode", svc.NetworkMode}, {"pid", svc.Pid}, {"ipc", svc.Ipc},
			{"uts", svc.Uts}, {"userns_mode", svc.UserNSMode}, {"cgroup", svc.Cgroup},
		} {
			if ns.value == "host" {
				add(ns.key, "host_namespaces", "%s: host", ns.key)
			}
		}
	}
	if !p.Devices {
		if len(svc.Devices) > 0 {
			add("devices", "devices", "devices")
		}
		if len(svc.DeviceCgroupRules) > 0 {
			add("device_cgroup_rules", "devices", "device_cgroup_rules")
		}
		if len(svc.Gpus) > 0 {
			add("gpus", "devices", "gpus")
		}
		if svc.Deploy != nil && svc.Deploy.Resources.Reservations != nil && len(svc.Deploy.Resources.Reservations.Devices) > 0 {
			add("deploy.resources.reservations.devices", "devices", "deploy.resources.reservations.devices")
		}
	}
	if !p.OtherContainers {
		// Another stack's container: its network, its memory, its volumes.
		for _, ns := range []struct{ key, value string }{{"network_mode", svc.NetworkMode}, {"pid", svc.Pid}, {"ipc", svc.Ipc}} {
			if strings.HasPrefix(ns.value, types.ContainerPrefix) {
				add(ns.key, "other_containers", "%s: %s (a container outside the stack)", ns.key, ns.value)
			}
		}
		for _, v := range svc.VolumesFrom {
			if strings.HasPrefix(v, types.ContainerPrefix) {
				add("volumes_from", "other_containers", "volumes_from %s (a container outside the stack)", v)
			}
		}
		if len(svc.ExternalLinks) > 0 {
			add("external_links", "other_containers", "external_links %s", strings.Join(svc.ExternalLinks, ", "))
		}
	}
	if p.Capabilities != nil && !slices.Contains(p.Capabilities, "ALL") {
		for _, c := range svc.CapAdd {
			if !slices.Contains(p.Capabilities, capName(c)) {
				add("cap_add", "capabilities", "cap_add %s", capName(c))
			}
		}
	}
	for _, v := range svc.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		src := filepath.Clean(v.Source)
		isSocket := slices.ContainsFunc(DockerSockets, func(s string) bool { return within(s, src) })
		holdsSocket := slices.ContainsFunc(DockerSockets, func(s string) bool { return within(src, s) })
		switch {
		case !p.DockerSocket && isSocket:
			add("volumes", "docker_socket", "a bind of %s (the Docker engine)", v.Source)
		case within(stackDir, src):
			// The repository's own files; escapes are refused when loading.
		case p.BindPaths != nil && !slices.ContainsFunc(p.BindPaths, func(dir string) bool { return within(dir, src) }):
			add("volumes", "bind_paths", "a bind of %s (outside the allowed bind paths %s)", v.Source, listOrNone(p.BindPaths))
		case !p.DockerSocket && holdsSocket:
			add("volumes", "docker_socket", "a bind of %s (it holds the Docker engine's socket)", v.Source)
		}
	}
	return out
}

// within says whether path is dir or under it; both must be clean.
func within(dir, path string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// Within says whether path is dir or under it, lexically.
func Within(dir, path string) bool { return within(filepath.Clean(dir), filepath.Clean(path)) }

// capName is a capability as Docker names it, without CAP_.
func capName(c string) string { return strings.TrimPrefix(strings.ToUpper(c), "CAP_") }

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "(none)"
	}
	return strings.Join(l, ", ")
}
