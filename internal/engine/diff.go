package engine

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
)

// ignoredLabels are labels whose value legitimately differs between two
// containers of the same service config: where the files were read from,
// which tool wrote them, and what gitopsd checks by other means (the config
// hash and image ID are compared by the planner).
var ignoredLabels = map[string]bool{
	LabelVersion:     true,
	LabelWorkingDir:  true,
	LabelConfigFiles: true,
	LabelEnvFile:     true,
	LabelDependsOn:   true,
	LabelReplace:     true,
	LabelConfigHash:  true,
	LabelImage:       true,
	LabelStack:       true,
	LabelRevision:    true,
	LabelOneShot:     true,
	LabelFiles:       true, // compared by the planner, when there
}

// Differences lists, field by field, where an inspected container differs
// from the spec it should match ("env FOO", "image", "command", ...), ignoring
// what Docker fills in by itself (image defaults, generated fields).
//
// Where the spec leaves a field to the image (no command, no user...), the
// container's value is not compared: the image supplies it and the image ID
// is compared by the planner. Env and labels are compared one way (every
// wanted entry must be there with its value) for the same reason.
func Differences(want ContainerSpec, have container.InspectResponse) []string {
	if want.Config == nil || have.Config == nil || have.HostConfig == nil {
		return nil
	}
	var d []string
	add := func(cond bool, field string) {
		if cond {
			d = append(d, field)
		}
	}
	wc, hc := want.Config, have.Config
	add(wc.Image != hc.Image, "image")

	haveEnv := map[string]string{}
	for _, e := range hc.Env {
		k, v, _ := strings.Cut(e, "=")
		haveEnv[k] = v
	}
	for _, e := range wc.Env {
		k, v, hasValue := strings.Cut(e, "=")
		got, ok := haveEnv[k]
		if hasValue {
			add(!ok || got != v, "env "+k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(wc.Labels)) {
		if ignoredLabels[k] {
			continue
		}
		got, ok := hc.Labels[k]
		add(!ok || got != wc.Labels[k], "label "+k)
	}
	add(wc.Cmd != nil && !slices.Equal(wc.Cmd, hc.Cmd), "command")
	add(wc.Entrypoint != nil && !slices.Equal(wc.Entrypoint, hc.Entrypoint), "entrypoint")
	add(wc.User != "" && wc.User != hc.User, "user")
	add(wc.WorkingDir != "" && wc.WorkingDir != hc.WorkingDir, "working_dir")
	add(wc.Hostname != "" && wc.Hostname != hc.Hostname, "hostname")
	add(wc.Domainname != "" && wc.Domainname != hc.Domainname, "domainname")
	add(wc.Tty != hc.Tty, "tty")
	add(wc.OpenStdin != hc.OpenStdin, "stdin_open")
	add(wc.StopSignal != "" && wc.StopSignal != hc.StopSignal, "stop_signal")
	add(wc.StopTimeout != nil && (hc.StopTimeout == nil || *wc.StopTimeout != *hc.StopTimeout), "stop_grace_period")
	add(wc.Healthcheck != nil && !sameHealth(wc.Healthcheck, hc.Healthcheck), "healthcheck")

	wh, hh := want.HostConfig, have.HostConfig
	add(restartName(wh.RestartPolicy) != restartName(hh.RestartPolicy) || wh.RestartPolicy.MaximumRetryCount != hh.RestartPolicy.MaximumRetryCount, "restart")
	add(!slices.Equal(portBindings(wh), portBindings(hh)), "ports")
	add(wh.Privileged != hh.Privileged, "privileged")
	add(wh.ReadonlyRootfs != hh.ReadonlyRootfs, "read_only")
	add(!slices.Equal(caps(wh.CapAdd), caps(hh.CapAdd)), "cap_add")
	add(!slices.Equal(caps(wh.CapDrop), caps(hh.CapDrop)), "cap_drop")
	add(wh.Memory != hh.Memory, "mem_limit")
	add(wh.NanoCPUs != hh.NanoCPUs, "cpus")
	add(!sameSet(wh.ExtraHosts, hh.ExtraHosts), "extra_hosts")
	add(string(wh.NetworkMode) != string(hh.NetworkMode) && !(wh.NetworkMode == "" && hh.NetworkMode == "default"), "network_mode")
	if !sameMounts(want, have) {
		d = append(d, "volumes")
	}
	if wantNets := wantedNetworks(want); wantNets != nil && have.NetworkSettings != nil {
		add(!slices.Equal(wantNets, slices.Sorted(maps.Keys(have.NetworkSettings.Networks))), "networks")
	}
	return d
}

func sameHealth(a, b *container.HealthConfig) bool {
	if b == nil {
		return false
	}
	return slices.Equal(a.Test, b.Test) && a.Interval == b.Interval && a.Timeout == b.Timeout &&
		a.StartPeriod == b.StartPeriod && a.Retries == b.Retries
}

func restartName(p container.RestartPolicy) string {
	if p.Name == "" {
		return "no"
	}
	return string(p.Name)
}

func portBindings(h *container.HostConfig) []string {
	var out []string
	for port, bs := range h.PortBindings {
		for _, b := range bs {
			ip := ""
			if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
				ip = b.HostIP.String()
			}
			out = append(out, fmt.Sprintf("%s:%s->%s", ip, b.HostPort, port))
		}
	}
	sort.Strings(out)
	return out
}

// caps normalises capability names as the engine stores them.
func caps(in []string) []string {
	out := make([]string, 0, len(in))
	for _, c := range in {
		c = strings.ToUpper(c)
		if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

type mountKey struct {
	Type   mount.Type
	Source string // volume name or host path; "" for anonymous volumes and tmpfs
	RW     bool
}

var anonymousVolume = regexp.MustCompile(`^[0-9a-f]{64}$`)

// sameMounts compares what is mounted where. Binds strings and the Mount
// API are two ways to say the same thing, so both sides are reduced to the
// inspected mount points.
func sameMounts(want ContainerSpec, have container.InspectResponse) bool {
	wanted := map[string]mountKey{}
	for _, b := range want.HostConfig.Binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 {
			continue
		}
		k := mountKey{Type: mount.TypeVolume, Source: parts[0], RW: true}
		if strings.HasPrefix(parts[0], "/") {
			k.Type = mount.TypeBind
		}
		if len(parts) > 2 && slices.Contains(strings.Split(parts[2], ","), "ro") {
			k.RW = false
		}
		wanted[parts[1]] = k
	}
	for _, m := range want.HostConfig.Mounts {
		k := mountKey{Type: m.Type, Source: m.Source, RW: !m.ReadOnly}
		if m.Type == mount.TypeTmpfs {
			k.Source = ""
		}
		wanted[m.Target] = k
	}
	for target := range want.HostConfig.Tmpfs {
		wanted[target] = mountKey{Type: mount.TypeTmpfs, RW: true}
	}
	got := map[string]mountKey{}
	for _, m := range have.Mounts {
		k := mountKey{Type: m.Type, Source: m.Source, RW: m.RW}
		switch m.Type {
		case mount.TypeVolume:
			k.Source = m.Name
			if _, ok := wanted[m.Destination]; !ok && anonymousVolume.MatchString(m.Name) {
				continue // a VOLUME of the image
			}
		case mount.TypeTmpfs:
			k.Source = ""
		}
		if _, ok := wanted[m.Destination]; !ok && len(want.HostConfig.VolumesFrom) > 0 {
			continue // inherited through volumes_from: what those containers mount
		}
		got[m.Destination] = k
	}
	// HostConfig.Tmpfs mounts are not listed among inspected mount points.
	for target := range have.HostConfig.Tmpfs {
		got[target] = mountKey{Type: mount.TypeTmpfs, RW: true}
	}
	if len(wanted) != len(got) {
		return false
	}
	for target, w := range wanted {
		g, ok := got[target]
		if !ok {
			return false
		}
		if w.Type == mount.TypeVolume && w.Source == "" && g.Type == mount.TypeVolume {
			g.Source = ""
		}
		if w != g {
			return false
		}
	}
	return true
}

// wantedNetworks is the sorted list of network names a spec connects to, or
// nil when the container is not on user networks (host, none...).
func wantedNetworks(want ContainerSpec) []string {
	if want.Networking == nil {
		return nil
	}
	var out []string
	for name := range want.Networking.EndpointsConfig {
		out = append(out, name)
	}
	for name := range want.Extra {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
