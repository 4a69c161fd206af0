// Package policy owns what a stack may ask of this host: privileges, host
// namespaces, devices, capabilities, security options, the Docker socket,
// bind mounts, volume drivers and paths outside the stack's folder.
// Whoever can push to the repository runs containers as root on every host
// of the fleet; the host's policy narrows what such a push can do there.
//
// A rule judges what a request amounts to, not the key it is written
// under: a named volume of the local driver with o=bind is a bind of its
// device, a lifecycle hook runs in the service's container and is judged
// with it, a network named host is the host's network namespace, and a
// build's network is a namespace its RUN steps join.
//
// The default allows what docker compose allows, except paths that leave
// the stack's folder. The strict preset, for edge fleets, allows none of
// it; the daemon configuration can open each rule again.
package policy

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
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
	// SecurityOptions are the security_opt values allowed besides the
	// known-safe ones (safeSecurityOptions); nil allows any, ALL too. An
	// entry ending in * allows every value it is a prefix of.
	SecurityOptions []string
	// VolumeDrivers are the volume drivers allowed besides local; nil
	// allows any, ALL too.
	VolumeDrivers []string
	// VolumeOptions allows driver_opts on volumes. A local volume that
	// binds a host path is judged as a bind whatever this says.
	VolumeOptions bool
}

// Default is the policy without a preset: whatever docker compose would
// run, except paths that leave the stack's folder, which a repository has
// no business reading on a host unless the host says so.
func Default() Policy {
	return Policy{Privileged: true, HostNamespaces: true, Devices: true, DockerSocket: true, OtherContainers: true, VolumeOptions: true}
}

// Strict allows no privilege, host namespace, device, added capability,
// security option but the known-safe ones, Docker socket, bind mount,
// volume driver but local, volume driver option, container outside the
// stack or path outside the stack's folder.
func Strict() Policy {
	return Policy{Capabilities: []string{}, BindPaths: []string{}, SecurityOptions: []string{}, VolumeDrivers: []string{}}
}

// Settings are the policy a host's configuration asks for (the daemon
// maps the policy keys of its configuration to them): a preset, and each
// rule it sets over the preset. A nil field keeps the preset's value.
type Settings struct {
	Preset            string // PresetDefault or PresetStrict
	Privileged        *bool
	HostNamespaces    *bool
	Devices           *bool
	DockerSocket      *bool
	PathsOutsideStack *bool
	OtherContainers   *bool
	Capabilities      []string
	BindPaths         []string
	SecurityOptions   []string
	VolumeDrivers     []string
	VolumeOptions     *bool
}

// Presets of Settings.
const (
	PresetDefault = ""
	PresetStrict  = "strict"
)

// Resolve resolves settings into a policy: the preset, then each rule set.
// The settings must have passed config validation.
func Resolve(c Settings) Policy {
	p := Default()
	if c.Preset == PresetStrict {
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
	set(&p.VolumeOptions, c.VolumeOptions)
	if c.VolumeDrivers != nil {
		p.VolumeDrivers = slices.Clone(c.VolumeDrivers)
	}
	// Without a list, security options follow privileged: a privileged
	// container runs without seccomp, AppArmor or SELinux confinement
	// anyway, and a host that refuses privileged must not let
	// seccomp=unconfined or a permissive profile in by another door.
	switch {
	case c.SecurityOptions != nil:
		p.SecurityOptions = make([]string, 0, len(c.SecurityOptions))
		for _, o := range c.SecurityOptions {
			p.SecurityOptions = append(p.SecurityOptions, canonicalSecurityOpt(o))
		}
	case p.Privileged:
		p.SecurityOptions = nil
	default:
		p.SecurityOptions = []string{}
	}
	return p
}

// Violation is one thing a stack asks that the policy does not allow.
type Violation struct {
	// Service asks it, or, for a top-level volume, Volume declares it.
	Service string
	Volume  string
	// KeyPath is the dotted path of the offending key in the compose file
	// (services.web.privileged), for pointing at its line.
	KeyPath string
	// Rule is the configuration key that would allow it (policy.privileged).
	Rule   string
	Detail string
}

func (v Violation) Error() string {
	if v.Service == "" {
		return fmt.Sprintf("volume %s: %s is not allowed on this host (%s)", v.Volume, v.Detail, v.Rule)
	}
	return fmt.Sprintf("service %s: %s is not allowed on this host (%s)", v.Service, v.Detail, v.Rule)
}

// DockerSockets are the host paths whose bind hands a container the engine.
var DockerSockets = []string{"/var/run/docker.sock", "/run/docker.sock", "/var/run/docker", "/run/docker"}

// Check returns what project asks that p does not allow: its services in
// name order, then its volumes in name order. stackDir is the stack's
// folder: binds from inside it are part of the repository and need no
// bind_paths entry.
func (p Policy) Check(project *types.Project, stackDir string) []Violation {
	var out []Violation
	for _, name := range slices.Sorted(maps.Keys(project.Services)) {
		out = append(out, p.checkService(project, project.Services[name], stackDir)...)
	}
	for _, name := range slices.Sorted(maps.Keys(project.Volumes)) {
		out = append(out, p.checkVolume(name, project.Volumes[name], stackDir)...)
	}
	return out
}

func (p Policy) checkService(project *types.Project, svc types.ServiceConfig, stackDir string) []Violation {
	var out []Violation
	add := func(key, rule, format string, args ...any) {
		out = append(out, Violation{Service: svc.Name, KeyPath: "services." + svc.Name + "." + key, Rule: "policy." + rule, Detail: fmt.Sprintf(format, args...)})
	}
	if !p.Privileged {
		if svc.Privileged {
			add("privileged", "privileged", "privileged: true")
		}
		// A hook is an exec in the service's container: a privileged one
		// gets every capability and device of the host, whatever the
		// container was given.
		for _, hooks := range []struct {
			key   string
			hooks []types.ServiceHook
		}{{"post_start", svc.PostStart}, {"pre_stop", svc.PreStop}} {
			for i, h := range hooks.hooks {
				if h.Privileged {
					add(fmt.Sprintf("%s.%d.privileged", hooks.key, i), "privileged", "a %s hook with privileged: true", hooks.key)
				}
			}
		}
	}
	if p.SecurityOptions != nil && !slices.Contains(p.SecurityOptions, "ALL") {
		for i, opt := range svc.SecurityOpt {
			if !safeSecurityOpt(opt) && !p.allowsSecurityOpt(opt) {
				add(fmt.Sprintf("security_opt.%d", i), "security_options", "security_opt %s (only no-new-privileges and apparmor=docker-default pass unless listed)", shorten(opt))
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
		// The engine's network called host is the host's network
		// namespace, whether the file calls it external or not.
		for _, key := range serviceNetworks(svc) {
			if n, ok := project.Networks[key]; ok && n.Name == "host" {
				add("networks."+key, "host_namespaces", "network %s (named host: the host's network)", key)
			}
		}
		// A build's RUN steps run in its network: host reaches what
		// listens on the host's loopback.
		if svc.Build != nil && svc.Build.Network == "host" {
			add("build.network", "host_namespaces", "build.network: host")
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
		if svc.Build != nil && strings.HasPrefix(svc.Build.Network, types.ContainerPrefix) {
			add("build.network", "other_containers", "build.network: %s (a container outside the stack)", svc.Build.Network)
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
		if rule, detail := p.checkBind(v.Source, stackDir); rule != "" {
			add("volumes", rule, "a bind of %s (%s)", v.Source, detail)
		}
	}
	return out
}

// checkBind judges a host path a container would see: the rule it breaks
// (its key under policy.) and why, or "".
func (p Policy) checkBind(source, stackDir string) (rule, detail string) {
	src := filepath.Clean(source)
	isSocket := slices.ContainsFunc(DockerSockets, func(s string) bool { return within(s, src) })
	holdsSocket := slices.ContainsFunc(DockerSockets, func(s string) bool { return within(src, s) })
	switch {
	case !p.DockerSocket && isSocket:
		return "docker_socket", "the Docker engine"
	case within(stackDir, src):
		// The repository's own files; escapes are refused when loading.
	case p.BindPaths != nil && !p.bindPathAllows(src):
		return "bind_paths", "outside the allowed bind paths " + listOrNone(p.BindPaths)
	case !p.DockerSocket && holdsSocket:
		return "docker_socket", "it holds the Docker engine's socket"
	}
	return "", ""
}

// bindPathAllows says whether bind_paths holds the clean path src.
func (p Policy) bindPathAllows(src string) bool {
	return slices.ContainsFunc(p.BindPaths, func(dir string) bool { return within(dir, src) })
}

// checkVolume judges a top-level volume: its driver, its options, and
// the host paths the local driver would mount into it. An external
// volume is the host's own, made outside any stack.
func (p Policy) checkVolume(name string, v types.VolumeConfig, stackDir string) []Violation {
	if v.External {
		return nil
	}
	var out []Violation
	add := func(key, rule, format string, args ...any) {
		out = append(out, Violation{Volume: name, KeyPath: "volumes." + name + "." + key, Rule: "policy." + rule, Detail: fmt.Sprintf(format, args...)})
	}
	driver := v.Driver
	if driver == "" {
		driver = "local"
	}
	if driver != "local" && p.VolumeDrivers != nil && !slices.Contains(p.VolumeDrivers, "ALL") && !slices.Contains(p.VolumeDrivers, driver) {
		add("driver", "volume_drivers", "driver %s (allowed: local%s)", driver, prefixed(", ", p.VolumeDrivers))
	}
	if len(v.DriverOpts) == 0 {
		return out
	}
	if driver != "local" {
		if !p.VolumeOptions {
			add("driver_opts", "volume_options", "driver_opts %s", strings.Join(slices.Sorted(maps.Keys(v.DriverOpts)), ", "))
		}
		return out
	}
	paths := localVolumePaths(v.DriverOpts)
	if len(paths) == 0 || !isBind(v.DriverOpts) {
		// Anything but a plain bind (a filesystem of its own, nfs, tmpfs,
		// an overlay of host folders) needs the options opened.
		if !p.VolumeOptions {
			add("driver_opts", "volume_options", "driver_opts %s", strings.Join(slices.Sorted(maps.Keys(v.DriverOpts)), ", "))
		}
	}
	for _, hp := range paths {
		rule, detail := p.checkBind(hp.path, stackDir)
		if rule == "" && hp.writable && within(stackDir, hp.path) && p.BindPaths != nil && !p.bindPathAllows(hp.path) {
			// A service's binds into the stack's folder are mounted
			// read-only, so that no container rewrites the revision it
			// runs; the local driver mounts what its options say, so such
			// a volume is the repository's own files only when o holds ro.
			// (compose-go resolves a relative device only for o: bind,
			// so a service bind is the practical way to say read-only.)
			rule, detail = "bind_paths", "writable, in the stack's folder: bind it in the service's volumes, which are read-only there"
		}
		if rule != "" {
			add("driver_opts."+hp.key, rule, "driver_opts that mount %s (%s)", hp.path, detail)
		}
		if !p.Devices && !isBind(v.DriverOpts) && hp.key == "device" && within("/dev", hp.path) {
			add("driver_opts.device", "devices", "driver_opts that mount the device %s", hp.path)
		}
	}
	return out
}

// hostPath is a host path the local volume driver mounts, the
// driver_opts key that names it, and whether a container may write there
// through the volume.
type hostPath struct {
	key, path string
	writable  bool
}

// localVolumePaths are the host paths the local volume driver would mount
// for these driver_opts: device when it is a path (a bind's source, a
// block device, an image file), and an overlay's lowerdir, upperdir and
// workdir. A relative path is judged from /, the engine's working
// directory, as compose-go leaves it relative unless driver is "local"
// and o is exactly "bind".
func localVolumePaths(opts map[string]string) []hostPath {
	var out []hostPath
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return filepath.Clean(p)
		}
		return filepath.Join("/", p)
	}
	flags := strings.Split(opts["o"], ",")
	dev := opts["device"]
	// nfs and cifs name a server (":/export", "host:/export",
	// "//host/share"); tmpfs and overlay a word.
	isPath := strings.Contains(dev, "/") && !strings.Contains(dev, ":") && !strings.HasPrefix(dev, "//")
	if dev != "" && (isBind(opts) || isPath) {
		out = append(out, hostPath{"device", abs(dev), !slices.Contains(flags, "ro")})
	}
	for _, o := range flags {
		k, v, ok := strings.Cut(o, "=")
		if !ok || (k != "lowerdir" && k != "upperdir" && k != "workdir") {
			continue
		}
		for _, d := range strings.Split(v, ":") {
			if d != "" {
				// An overlay writes to its upperdir and workdir only.
				out = append(out, hostPath{"o", abs(d), k != "lowerdir"})
			}
		}
	}
	return out
}

// isBind says whether the local driver's options make a bind mount: o
// holds bind or rbind (mount(8) takes either among other flags).
func isBind(opts map[string]string) bool {
	return strings.Contains(opts["o"], "bind")
}

// serviceNetworks are the network keys svc joins: its networks, else the
// stack's default one.
func serviceNetworks(svc types.ServiceConfig) []string {
	if svc.NetworkMode != "" {
		return nil
	}
	if len(svc.Networks) == 0 {
		return []string{"default"}
	}
	return slices.Sorted(maps.Keys(svc.Networks))
}

// safeSecurityOptions are the security_opt values that only tighten what
// a container may do, and pass whatever the policy says. Everything else
// either loosens confinement (seccomp=unconfined, a custom seccomp
// profile, apparmor=unconfined, label=disable, systempaths=unconfined) or
// names something only the host can vouch for (an AppArmor profile, an
// SELinux type or level), and needs a policy.security_options entry.
var safeSecurityOptions = []string{"no-new-privileges", "no-new-privileges=true", "apparmor=docker-default"}

// safeSecurityOpt says whether opt is one of safeSecurityOptions, in
// either of Docker's spellings (key=value or key:value).
func safeSecurityOpt(opt string) bool {
	return slices.Contains(safeSecurityOptions, canonicalSecurityOpt(opt))
}

func (p Policy) allowsSecurityOpt(opt string) bool {
	opt = canonicalSecurityOpt(opt)
	return slices.ContainsFunc(p.SecurityOptions, func(allowed string) bool {
		if prefix, ok := strings.CutSuffix(allowed, "*"); ok {
			return strings.HasPrefix(opt, prefix)
		}
		return opt == allowed
	})
}

// canonicalSecurityOpt spells opt as key=value: Docker splits at the
// first "=", or, without one, at the first ":" (the older spelling).
func canonicalSecurityOpt(opt string) string {
	if strings.Contains(opt, "=") {
		return opt
	}
	if k, v, ok := strings.Cut(opt, ":"); ok {
		return k + "=" + v
	}
	return opt
}

// shorten keeps an inline seccomp profile from filling a status line.
func shorten(s string) string {
	if len(s) <= 60 {
		return s
	}
	return s[:57] + "..."
}

func prefixed(sep string, l []string) string {
	if len(l) == 0 {
		return ""
	}
	return sep + strings.Join(l, sep)
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
