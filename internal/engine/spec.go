package engine

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/gitopsd/gitopsd/internal/stack/vocab"
	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
)

// ServiceSpec converts a compose service into the container docker compose
// v2 would create for it (replica number n), labels included; extraLabels
// (gitopsd's own) are added to the container without entering the hash.
//
// It follows docker compose v2.40.3's create path (getCreateConfigs) for the
// keys gitopsd supports; keys it cannot honour are an error rather than
// silently ignored, so a stack never runs differently from what its file says.
func ServiceSpec(project *types.Project, svc types.ServiceConfig, number int, configHash, imageID string, extraLabels map[string]string) (ContainerSpec, error) {
	if err := unsupported(svc); err != nil {
		return ContainerSpec{}, err
	}
	name := ContainerName(project.Name, svc, number)
	labels := map[string]string{}
	for k, v := range svc.Labels {
		labels[k] = v
	}
	for k, v := range svc.CustomLabels {
		labels[k] = v
	}
	for k, v := range composeLabels(project, svc, number, configHash, imageID) {
		labels[k] = v
	}
	for k, v := range extraLabels {
		labels[k] = v
	}

	health, err := healthConfig(svc.HealthCheck)
	if err != nil {
		return ContainerSpec{}, err
	}
	cfg := &container.Config{
		Hostname:        svc.Hostname,
		Domainname:      svc.DomainName,
		User:            svc.User,
		ExposedPorts:    network.PortSet{},
		Tty:             svc.Tty,
		OpenStdin:       svc.StdinOpen,
		AttachStdout:    true,
		AttachStderr:    true,
		Cmd:             svc.Command,
		Image:           svc.Image,
		WorkingDir:      svc.WorkingDir,
		Entrypoint:      svc.Entrypoint,
		NetworkDisabled: svc.NetworkMode == "disabled",
		Labels:          labels,
		StopSignal:      svc.StopSignal,
		Env:             envList(svc.Environment),
		Healthcheck:     health,
	}
	if svc.StopGracePeriod != nil {
		s := int(time.Duration(*svc.StopGracePeriod).Seconds())
		cfg.StopTimeout = &s
	}
	bindings := network.PortMap{}
	for _, e := range svc.Expose {
		p, err := network.ParsePort(e)
		if err != nil {
			return ContainerSpec{}, fmt.Errorf("expose %q: %w", e, err)
		}
		cfg.ExposedPorts[p] = struct{}{}
	}
	for _, sp := range svc.Ports {
		p, err := network.ParsePort(fmt.Sprintf("%d/%s", sp.Target, protocol(sp.Protocol)))
		if err != nil {
			return ContainerSpec{}, fmt.Errorf("port %d: %w", sp.Target, err)
		}
		cfg.ExposedPorts[p] = struct{}{}
		b := network.PortBinding{HostPort: sp.Published}
		if sp.HostIP != "" {
			if b.HostIP, err = netip.ParseAddr(sp.HostIP); err != nil {
				return ContainerSpec{}, fmt.Errorf("port %d: host_ip %q: %w", sp.Target, sp.HostIP, err)
			}
		}
		bindings[p] = append(bindings[p], b)
	}

	refs, err := fileReferences(project, svc)
	if err != nil {
		return ContainerSpec{}, err
	}
	binds, mounts, err := volumeMounts(project, svc)
	if err != nil {
		return ContainerSpec{}, err
	}
	fileBinds, files, err := fileMounts(svc, refs)
	if err != nil {
		return ContainerSpec{}, err
	}
	mounts = append(mounts, fileBinds...)
	tmpfs := map[string]string{}
	for _, t := range svc.Tmpfs {
		target, opts, _ := strings.Cut(t, ":")
		tmpfs[target] = opts
	}

	host := &container.HostConfig{
		Binds:          binds,
		Mounts:         mounts,
		CapAdd:         svc.CapAdd,
		CapDrop:        svc.CapDrop,
		Init:           svc.Init,
		IpcMode:        container.IpcMode(svc.Ipc),
		CgroupnsMode:   container.CgroupnsMode(svc.Cgroup),
		ReadonlyRootfs: svc.ReadOnly,
		RestartPolicy:  restartPolicy(svc),
		ShmSize:        int64(svc.ShmSize),
		Sysctls:        svc.Sysctls,
		PortBindings:   bindings,
		Resources:      resources(svc),
		DNS:            dnsAddrs(svc.DNS),
		DNSSearch:      svc.DNSSearch,
		DNSOptions:     svc.DNSOpts,
		ExtraHosts:     svc.ExtraHosts.AsList(":"),
		SecurityOpt:    svc.SecurityOpt,
		UsernsMode:     container.UsernsMode(svc.UserNSMode),
		UTSMode:        container.UTSMode(svc.Uts),
		Privileged:     svc.Privileged,
		PidMode:        container.PidMode(svc.Pid),
		Tmpfs:          tmpfs,
		Runtime:        svc.Runtime,
		GroupAdd:       svc.GroupAdd,
		OomScoreAdj:    int(svc.OomScoreAdj),
		VolumesFrom:    svc.VolumesFrom,
		VolumeDriver:   svc.VolumeDriver,
		Annotations:    svc.Annotations,
		StorageOpt:     svc.StorageOpt,
		Isolation:      container.Isolation(svc.Isolation),
	}
	host.Resources.DeviceRequests = deviceRequests(svc)
	if svc.Logging != nil {
		host.LogConfig = container.LogConfig{Type: svc.Logging.Driver, Config: svc.Logging.Options}
	}

	spec := ContainerSpec{Name: name, Config: cfg, HostConfig: host, Files: files, PostStart: hooks(svc.PostStart), PreStop: hooks(svc.PreStop)}
	if err := networking(project, svc, number, &spec); err != nil {
		return ContainerSpec{}, err
	}
	return spec, nil
}

// ContainerName is compose's name for replica number of a service.
func ContainerName(project string, svc types.ServiceConfig, number int) string {
	if svc.ContainerName != "" {
		return svc.ContainerName
	}
	return project + "-" + svc.Name + "-" + strconv.Itoa(number)
}

// composeLabels are the labels docker compose puts on a service's container.
func composeLabels(project *types.Project, svc types.ServiceConfig, number int, configHash, imageID string) map[string]string {
	deps := make([]string, 0, len(svc.DependsOn))
	for name, d := range svc.DependsOn {
		deps = append(deps, fmt.Sprintf("%s:%s:%t", name, d.Condition, d.Restart))
	}
	// compose joins these in map order; sorted keeps gitopsd's specs stable.
	sort.Strings(deps)
	l := map[string]string{
		LabelProject:         project.Name,
		LabelService:         svc.Name,
		LabelVersion:         ComposeVersion,
		LabelWorkingDir:      project.WorkingDir,
		LabelConfigFiles:     strings.Join(project.ComposeFiles, ","),
		LabelOneoff:          "False",
		LabelConfigHash:      configHash,
		LabelContainerNumber: strconv.Itoa(number),
		LabelDependsOn:       strings.Join(deps, ","),
	}
	if imageID != "" {
		l[LabelImage] = imageID
	}
	return l
}

func envList(env types.MappingWithEquals) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		if v == nil {
			out = append(out, k)
			continue
		}
		out = append(out, k+"="+*v)
	}
	sort.Strings(out)
	return out
}

func protocol(p string) string {
	if p == "" {
		return "tcp"
	}
	return p
}

func healthConfig(h *types.HealthCheckConfig) (*container.HealthConfig, error) {
	if h == nil {
		return nil, nil
	}
	hc := &container.HealthConfig{Test: h.Test}
	if h.Disable {
		hc.Test = []string{"NONE"}
	}
	if h.Interval != nil {
		hc.Interval = time.Duration(*h.Interval)
	}
	if h.Timeout != nil {
		hc.Timeout = time.Duration(*h.Timeout)
	}
	if h.StartPeriod != nil {
		hc.StartPeriod = time.Duration(*h.StartPeriod)
	}
	if h.Retries != nil {
		hc.Retries = int(*h.Retries)
	}
	if h.StartInterval != nil {
		// The engines gitopsd targets (API 1.41) reject it; compose does too.
		return nil, fmt.Errorf("healthcheck.start_interval needs Docker Engine 25 or later")
	}
	return hc, nil
}

func restartPolicy(svc types.ServiceConfig) container.RestartPolicy {
	var rp container.RestartPolicy
	mode := func(c string) container.RestartPolicyMode {
		switch c {
		case "none", "no":
			return container.RestartPolicyDisabled
		case "on-failure":
			return container.RestartPolicyOnFailure
		case "unless-stopped":
			return container.RestartPolicyUnlessStopped
		case "any", "always":
			return container.RestartPolicyAlways
		}
		return container.RestartPolicyMode(c)
	}
	if svc.Restart != "" {
		name, count, _ := strings.Cut(svc.Restart, ":")
		n, _ := strconv.Atoi(count)
		rp = container.RestartPolicy{Name: mode(name), MaximumRetryCount: n}
	}
	if svc.Deploy != nil && svc.Deploy.RestartPolicy != nil {
		p := svc.Deploy.RestartPolicy
		rp = container.RestartPolicy{Name: mode(p.Condition)}
		if p.MaxAttempts != nil {
			rp.MaximumRetryCount = int(*p.MaxAttempts)
		}
	}
	return rp
}

func resources(svc types.ServiceConfig) container.Resources {
	r := container.Resources{
		CgroupParent:       svc.CgroupParent,
		Memory:             int64(svc.MemLimit),
		MemorySwap:         int64(svc.MemSwapLimit),
		MemoryReservation:  int64(svc.MemReservation),
		OomKillDisable:     &svc.OomKillDisable,
		CPUPeriod:          svc.CPUPeriod,
		CPUQuota:           svc.CPUQuota,
		CPUShares:          svc.CPUShares,
		NanoCPUs:           int64(svc.CPUS * 1e9),
		CpusetCpus:         svc.CPUSet,
		CPUCount:           svc.CPUCount,
		CPUPercent:         int64(svc.CPUPercent),
		CPURealtimePeriod:  svc.CPURTPeriod,
		CPURealtimeRuntime: svc.CPURTRuntime,
		DeviceCgroupRules:  svc.DeviceCgroupRules,
	}
	if b := svc.BlkioConfig; b != nil {
		r.BlkioWeight = b.Weight
		for _, d := range b.WeightDevice {
			r.BlkioWeightDevice = append(r.BlkioWeightDevice, &blkiodev.WeightDevice{Path: d.Path, Weight: d.Weight})
		}
		throttle := func(in []types.ThrottleDevice) []*blkiodev.ThrottleDevice {
			var out []*blkiodev.ThrottleDevice
			for _, d := range in {
				out = append(out, &blkiodev.ThrottleDevice{Path: d.Path, Rate: uint64(d.Rate)})
			}
			return out
		}
		r.BlkioDeviceReadBps, r.BlkioDeviceWriteBps = throttle(b.DeviceReadBps), throttle(b.DeviceWriteBps)
		r.BlkioDeviceReadIOps, r.BlkioDeviceWriteIOps = throttle(b.DeviceReadIOps), throttle(b.DeviceWriteIOps)
	}
	if svc.MemSwappiness != 0 {
		v := int64(svc.MemSwappiness)
		r.MemorySwappiness = &v
	}
	if svc.PidsLimit != 0 {
		v := svc.PidsLimit
		r.PidsLimit = &v
	}
	if svc.Deploy != nil {
		if l := svc.Deploy.Resources.Limits; l != nil {
			if l.NanoCPUs != 0 {
				r.NanoCPUs = int64(float64(l.NanoCPUs) * 1e9)
			}
			if l.MemoryBytes != 0 {
				r.Memory = int64(l.MemoryBytes)
			}
			if l.Pids != 0 {
				v := l.Pids
				r.PidsLimit = &v
			}
		}
		if res := svc.Deploy.Resources.Reservations; res != nil && res.MemoryBytes != 0 {
			r.MemoryReservation = int64(res.MemoryBytes)
		}
	}
	for _, d := range svc.Devices {
		r.Devices = append(r.Devices, container.DeviceMapping{PathOnHost: d.Source, PathInContainer: d.Target, CgroupPermissions: d.Permissions})
	}
	names := make([]string, 0, len(svc.Ulimits))
	for name := range svc.Ulimits {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		u := svc.Ulimits[name]
		soft, hard := u.Single, u.Single
		if u.Soft != 0 {
			soft = u.Soft
		}
		if u.Hard != 0 {
			hard = u.Hard
		}
		r.Ulimits = append(r.Ulimits, &container.Ulimit{Name: name, Soft: int64(soft), Hard: int64(hard)})
	}
	return r
}

func dnsAddrs(in []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range in {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// volumeMounts mirrors compose's choice between the legacy Binds strings
// (for plain named volumes and binds) and the Mount API (anything with
// options), so a container compose created and one gitopsd created look the
// same to `docker inspect`.
func volumeMounts(project *types.Project, svc types.ServiceConfig) ([]string, []mount.Mount, error) {
	var binds []string
	var mounts []mount.Mount
	access := func(v types.ServiceVolumeConfig, extra ...string) string {
		opts := []string{"rw"}
		if v.ReadOnly {
			opts[0] = "ro"
		}
		for _, e := range extra {
			if e != "" {
				opts = append(opts, e)
			}
		}
		return strings.Join(opts, ",")
	}
	for _, v := range svc.Volumes {
		switch v.Type {
		case types.VolumeTypeVolume:
			if v.Source == "" {
				mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Target: v.Target, ReadOnly: v.ReadOnly})
				continue
			}
			source := v.Source
			if pv, ok := project.Volumes[v.Source]; ok {
				source = pv.Name
			}
			if v.Volume == nil || (len(v.Volume.Labels) == 0 && v.Volume.Subpath == "" && !v.Volume.NoCopy) {
				binds = append(binds, fmt.Sprintf("%s:%s:%s", source, v.Target, access(v)))
				continue
			}
			mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: source, Target: v.Target, ReadOnly: v.ReadOnly,
				VolumeOptions: &mount.VolumeOptions{NoCopy: v.Volume.NoCopy, Subpath: v.Volume.Subpath, Labels: v.Volume.Labels}})
		case types.VolumeTypeBind:
			source := v.Source
			if !filepath.IsAbs(source) {
				source = filepath.Join(project.WorkingDir, source)
			}
			if v.Bind == nil || (v.Bind.CreateHostPath && v.Bind.Propagation == "" && v.Bind.Recursive == "") {
				var selinux, propagation string
				if v.Bind != nil {
					selinux, propagation = v.Bind.SELinux, v.Bind.Propagation
				}
				binds = append(binds, fmt.Sprintf("%s:%s:%s", source, v.Target, access(v, selinux, propagation)))
				continue
			}
			opts := &mount.BindOptions{Propagation: mount.Propagation(v.Bind.Propagation), CreateMountpoint: v.Bind.CreateHostPath}
			switch v.Bind.Recursive {
			case "disabled":
				opts.NonRecursive = true
			case "writable":
				opts.ReadOnlyNonRecursive = true
			case "readonly":
				opts.ReadOnlyForceRecursive = true
			}
			mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: source, Target: v.Target, ReadOnly: v.ReadOnly, BindOptions: opts})
		case types.VolumeTypeTmpfs:
			m := mount.Mount{Type: mount.TypeTmpfs, Target: v.Target, ReadOnly: v.ReadOnly}
			if v.Tmpfs != nil {
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size), Mode: os.FileMode(v.Tmpfs.Mode)}
			}
			mounts = append(mounts, m)
		default:
			return nil, nil, fmt.Errorf("volumes: type %q (target %s) is not supported", v.Type, v.Target)
		}
	}
	return binds, mounts, nil
}

// networking sets the network mode, the primary endpoint (in the create
// call) and the extra ones (connected before start), with compose's aliases.
func networking(project *types.Project, svc types.ServiceConfig, number int, spec *ContainerSpec) error {
	if svc.NetworkMode != "" {
		// "container:<id>" is how the caller resolved "service:<svc>".
		spec.HostConfig.NetworkMode = container.NetworkMode(svc.NetworkMode)
		return nil
	}
	if len(project.Networks) == 0 {
		spec.HostConfig.NetworkMode = "none"
		return nil
	}
	keys := []string{"default"}
	if len(svc.Networks) > 0 {
		keys = svc.NetworksByPriority()
	}
	for i, key := range keys {
		n, ok := project.Networks[key]
		if !ok {
			return fmt.Errorf("network %s is not declared", key)
		}
		ep := endpoint(project, svc, number, key)
		if i == 0 {
			ep.Links = links(project, svc, number)
			spec.HostConfig.NetworkMode = container.NetworkMode(n.Name)
			spec.Networking = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{n.Name: ep}}
			continue
		}
		if spec.Extra == nil {
			spec.Extra = map[string]*network.EndpointSettings{}
		}
		spec.Extra[n.Name] = ep
	}
	return nil
}

func endpoint(project *types.Project, svc types.ServiceConfig, number int, key string) *network.EndpointSettings {
	ep := &network.EndpointSettings{Aliases: []string{ContainerName(project.Name, svc, number), svc.Name}}
	cfg := svc.Networks[key]
	if cfg == nil {
		return ep
	}
	ep.Aliases = append(ep.Aliases, cfg.Aliases...)
	if cfg.Ipv4Address != "" || cfg.Ipv6Address != "" || len(cfg.LinkLocalIPs) > 0 {
		ipam := &network.EndpointIPAMConfig{}
		if a, err := netip.ParseAddr(cfg.Ipv4Address); err == nil {
			ipam.IPv4Address = a
		}
		if a, err := netip.ParseAddr(cfg.Ipv6Address); err == nil {
			ipam.IPv6Address = a
		}
		for _, s := range cfg.LinkLocalIPs {
			if a, err := netip.ParseAddr(s); err == nil {
				ipam.LinkLocalIPs = append(ipam.LinkLocalIPs, a)
			}
		}
		ep.IPAMConfig = ipam
	}
	ep.DriverOpts = cfg.DriverOpts
	return ep
}

func hooks(in []types.ServiceHook) []Hook {
	var out []Hook
	for _, h := range in {
		out = append(out, Hook{Cmd: h.Command, User: h.User, Privileged: h.Privileged, WorkingDir: h.WorkingDir, Env: envList(h.Environment)})
	}
	return out
}

// links are compose's legacy links of the container for replica number:
// each container of a linked service under the link's alias, and under
// "<svc>-<number>" and "<project>-<svc>-<number>", number being this
// container's own, as docker compose v2.40.3 writes them; then the
// external_links, containers named as they are.
func links(project *types.Project, svc types.ServiceConfig, number int) []string {
	var out []string
	for _, link := range svc.Links {
		name, alias, found := strings.Cut(link, ":")
		if !found {
			alias = name
		}
		linked, ok := project.Services[name]
		if !ok {
			continue // not deployed here (a profile): compose finds no container either
		}
		for n := 1; n <= linked.GetScale(); n++ {
			target := ContainerName(project.Name, linked, n)
			out = append(out,
				target+":"+alias,
				fmt.Sprintf("%s:%s-%d", target, name, number),
				fmt.Sprintf("%s:%s-%s-%d", target, project.Name, name, number))
		}
	}
	for _, link := range svc.ExternalLinks { // "<container>[:<alias>]"
		target, alias, found := strings.Cut(link, ":")
		if !found {
			alias = target
		}
		out = append(out, target+":"+alias)
	}
	return out
}

// deviceRequests are compose's gpus and deploy.resources.reservations
// devices as the engine takes them.
func deviceRequests(svc types.ServiceConfig) []container.DeviceRequest {
	var out []container.DeviceRequest
	if svc.Deploy != nil && svc.Deploy.Resources.Reservations != nil {
		for _, d := range svc.Deploy.Resources.Reservations.Devices {
			out = append(out, container.DeviceRequest{Driver: d.Driver, Count: int(d.Count), DeviceIDs: d.IDs, Capabilities: [][]string{d.Capabilities}, Options: d.Options})
		}
	}
	for _, g := range svc.Gpus {
		caps := g.Capabilities
		if !slices.Contains(caps, "gpu") {
			caps = append(slices.Clone(caps), "gpu")
		}
		out = append(out, container.DeviceRequest{Driver: g.Driver, Count: int(g.Count), DeviceIDs: g.IDs, Capabilities: [][]string{caps}, Options: g.Options})
	}
	return out
}

// unsupported names the service keys gitopsd cannot create, so such a
// stack is reported instead of run half-configured. The stack loader
// refuses vocab.CannotCreate's keys already, with their line; a "service:" mode
// left here means the caller did not resolve it (sync's resolveShared).
func unsupported(svc types.ServiceConfig) error {
	var keys []string
	for key, mode := range map[string]string{"network_mode": svc.NetworkMode, "ipc": svc.Ipc, "pid": svc.Pid} {
		if strings.HasPrefix(mode, types.ServicePrefix) {
			keys = append(keys, key+": "+mode)
		}
	}
	sort.Strings(keys)
	keys = append(keys, vocab.CannotCreate(svc)...)
	if len(keys) > 0 {
		return fmt.Errorf("service %s uses %s, which gitopsd cannot create", svc.Name, strings.Join(keys, ", "))
	}
	return nil
}
