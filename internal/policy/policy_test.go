package policy

import (
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/config"
)

func project(services ...types.ServiceConfig) *types.Project {
	p := &types.Project{Name: "s", Services: types.Services{}}
	for _, s := range services {
		p.Services[s.Name] = s
	}
	return p
}

func bind(src string) types.ServiceVolumeConfig {
	return types.ServiceVolumeConfig{Type: types.VolumeTypeBind, Source: src, Target: "/x"}
}

// rules lists the rules the violations name, in order.
func rules(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	return out
}

func TestDefaultAllowsWhatComposeDoes(t *testing.T) {
	p := project(types.ServiceConfig{
		Name: "web", Privileged: true, NetworkMode: "host", Pid: "host",
		Devices: []types.DeviceMapping{{Source: "/dev/ttyUSB0", Target: "/dev/ttyUSB0"}},
		CapAdd:  []string{"SYS_ADMIN"}, Volumes: []types.ServiceVolumeConfig{bind("/"), bind("/var/run/docker.sock")},
		Gpus: []types.DeviceRequest{{Count: -1}}, Ipc: "container:other-1", VolumesFrom: []string{"container:other-1"}, ExternalLinks: []string{"other-1"},
	})
	if vs := FromConfig(config.Policy{}).Check(p, "/live/stacks/s"); len(vs) != 0 {
		t.Fatalf("the default policy refused %v", vs)
	}
	if FromConfig(config.Policy{}).PathsOutsideStack {
		t.Fatal("the default policy lets stacks read paths outside their folder")
	}
}

func TestStrictRefusesEachRuleNamingIt(t *testing.T) {
	p := project(
		types.ServiceConfig{Name: "a", Privileged: true},
		types.ServiceConfig{Name: "b", NetworkMode: "host", Ipc: "host"},
		types.ServiceConfig{Name: "c", Devices: []types.DeviceMapping{{Source: "/dev/ttyUSB0", Target: "/dev/ttyUSB0"}}},
		types.ServiceConfig{Name: "d", CapAdd: []string{"cap_net_admin"}},
		types.ServiceConfig{Name: "e", Volumes: []types.ServiceVolumeConfig{bind("/")}},
		types.ServiceConfig{Name: "f", Volumes: []types.ServiceVolumeConfig{bind("/var/run/docker.sock")}},
		types.ServiceConfig{Name: "g", SecurityOpt: []string{"seccomp:unconfined"}},
		types.ServiceConfig{Name: "h", Gpus: []types.DeviceRequest{{Count: -1}}},
		types.ServiceConfig{Name: "i", NetworkMode: "container:other-db-1", VolumesFrom: []string{"container:other-db-1:ro"}, ExternalLinks: []string{"other-db-1:db"}},
		// Joining a service of its own stack is the stack's own business.
		types.ServiceConfig{Name: "ok", NetworkMode: "service:i", VolumesFrom: []string{"i"}, Links: []string{"i"}, Volumes: []types.ServiceVolumeConfig{bind("/live/stacks/s/conf"), {Type: types.VolumeTypeVolume, Source: "data", Target: "/data"}}},
	)
	vs := FromConfig(config.Policy{Preset: config.PresetStrict}).Check(p, "/live/stacks/s")
	want := []string{"policy.privileged", "policy.host_namespaces", "policy.host_namespaces", "policy.devices",
		"policy.capabilities", "policy.bind_paths", "policy.docker_socket", "policy.privileged", "policy.devices",
		"policy.other_containers", "policy.other_containers", "policy.other_containers"}
	if !slices.Equal(rules(vs), want) {
		t.Fatalf("rules %v, want %v (%v)", rules(vs), want, vs)
	}
	if got := vs[0].Error(); got != "service a: privileged: true is not allowed on this host (policy.privileged)" {
		t.Fatalf("message %q", got)
	}
	if vs[0].KeyPath != "services.a.privileged" || vs[4].KeyPath != "services.d.cap_add" {
		t.Fatalf("key paths %q %q", vs[0].KeyPath, vs[4].KeyPath)
	}
	if !strings.Contains(vs[5].Error(), "a bind of / (outside the allowed bind paths (none))") {
		t.Fatalf("bind message %q", vs[5].Error())
	}
}

func TestKeysOpenStrictRulesAgain(t *testing.T) {
	yes := true
	c := config.Policy{Preset: config.PresetStrict, Devices: &yes, Capabilities: []string{"NET_ADMIN"}, BindPaths: []string{"/srv"}}
	p := project(types.ServiceConfig{
		Name: "web", CapAdd: []string{"CAP_NET_ADMIN", "SYS_TIME"},
		Devices: []types.DeviceMapping{{Source: "/dev/ttyUSB0", Target: "/dev/ttyUSB0"}},
		Volumes: []types.ServiceVolumeConfig{bind("/srv/app"), bind("/srv"), bind("/srvx"), bind("/etc")},
	})
	vs := FromConfig(c).Check(p, "/live/stacks/s")
	var details []string
	for _, v := range vs {
		details = append(details, v.Detail)
	}
	want := []string{"cap_add SYS_TIME", "a bind of /srvx (outside the allowed bind paths /srv)", "a bind of /etc (outside the allowed bind paths /srv)"}
	if !slices.Equal(details, want) {
		t.Fatalf("violations %q, want %q", details, want)
	}
	// A rule closed on top of the default preset.
	no := false
	vs = FromConfig(config.Policy{Privileged: &no}).Check(project(types.ServiceConfig{Name: "web", Privileged: true, NetworkMode: "host"}), "/x")
	if !slices.Equal(rules(vs), []string{"policy.privileged"}) {
		t.Fatalf("privileged: false on the default preset: %v", vs)
	}
}

func TestDockerSocketUnderAnyName(t *testing.T) {
	for _, src := range []string{"/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run", "/"} {
		vs := FromConfig(config.Policy{Preset: config.PresetStrict, BindPaths: []string{"/"}}).Check(project(types.ServiceConfig{Name: "w", Volumes: []types.ServiceVolumeConfig{bind(src)}}), "/x")
		if !slices.Equal(rules(vs), []string{"policy.docker_socket"}) {
			t.Errorf("bind of %s: %v, want the docker_socket rule", src, vs)
		}
	}
}
