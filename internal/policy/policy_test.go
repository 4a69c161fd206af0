package policy

import (
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
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
	if vs := Resolve(Settings{}).Check(p, "/live/stacks/s"); len(vs) != 0 {
		t.Fatalf("the default policy refused %v", vs)
	}
	if Resolve(Settings{}).PathsOutsideStack {
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
	vs := Resolve(Settings{Preset: PresetStrict}).Check(p, "/live/stacks/s")
	want := []string{"policy.privileged", "policy.host_namespaces", "policy.host_namespaces", "policy.devices",
		"policy.capabilities", "policy.bind_paths", "policy.docker_socket", "policy.security_options", "policy.devices",
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
	c := Settings{Preset: PresetStrict, Devices: &yes, Capabilities: []string{"NET_ADMIN"}, BindPaths: []string{"/srv"}}
	p := project(types.ServiceConfig{
		Name: "web", CapAdd: []string{"CAP_NET_ADMIN", "SYS_TIME"},
		Devices: []types.DeviceMapping{{Source: "/dev/ttyUSB0", Target: "/dev/ttyUSB0"}},
		Volumes: []types.ServiceVolumeConfig{bind("/srv/app"), bind("/srv"), bind("/srvx"), bind("/etc")},
	})
	vs := Resolve(c).Check(p, "/live/stacks/s")
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
	vs = Resolve(Settings{Privileged: &no}).Check(project(types.ServiceConfig{Name: "web", Privileged: true, NetworkMode: "host"}), "/x")
	if !slices.Equal(rules(vs), []string{"policy.privileged"}) {
		t.Fatalf("privileged: false on the default preset: %v", vs)
	}
}

func TestDockerSocketUnderAnyName(t *testing.T) {
	for _, src := range []string{"/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run", "/"} {
		vs := Resolve(Settings{Preset: PresetStrict, BindPaths: []string{"/"}}).Check(project(types.ServiceConfig{Name: "w", Volumes: []types.ServiceVolumeConfig{bind(src)}}), "/x")
		if !slices.Equal(rules(vs), []string{"policy.docker_socket"}) {
			t.Errorf("bind of %s: %v, want the docker_socket rule", src, vs)
		}
	}
}

func strict() Policy { return Resolve(Settings{Preset: PresetStrict}) }

// TestSecurityOptionsOnlyKnownSafeUnderStrict: strict lets through only
// the options that tighten confinement; an inline seccomp profile that
// allows every call is as unconfined as seccomp=unconfined.
func TestSecurityOptionsOnlyKnownSafeUnderStrict(t *testing.T) {
	for opt, safe := range map[string]bool{
		"no-new-privileges":                           true,
		"no-new-privileges:true":                      true,
		"no-new-privileges=true":                      true,
		"apparmor=docker-default":                     true,
		"apparmor:docker-default":                     true,
		"no-new-privileges=false":                     false,
		`seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`:  false,
		`seccomp:{"defaultAction":"SCMP_ACT_ALLOW"}`:  false,
		"seccomp=unconfined":                          false,
		"seccomp=/etc/docker/seccomp/permissive.json": false,
		"apparmor=unconfined":                         false,
		"apparmor=some-host-profile":                  false,
		"label=disable":                               false,
		"label:disable":                               false,
		"label=type:spc_t":                            false,
		"label=level:s0-s0:c0.c1023":                  false,
		"systempaths=unconfined":                      false,
		"writable-cgroups=true":                       false,
		"no-new-privileges:true,seccomp=unconfined":   false,
	} {
		vs := strict().Check(project(types.ServiceConfig{Name: "w", SecurityOpt: []string{opt}}), "/x")
		if got := len(vs) == 0; got != safe {
			t.Errorf("security_opt %s under strict: violations %v, want safe=%v", opt, vs, safe)
			continue
		}
		if !safe && (vs[0].Rule != "policy.security_options" || vs[0].KeyPath != "services.w.security_opt.0") {
			t.Errorf("security_opt %s: rule %s at %s", opt, vs[0].Rule, vs[0].KeyPath)
		}
	}
	long := `seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mount"],"action":"SCMP_ACT_ALLOW"}]}`
	vs := strict().Check(project(types.ServiceConfig{Name: "w", SecurityOpt: []string{"no-new-privileges", long}}), "/x")
	if len(vs) != 1 || vs[0].KeyPath != "services.w.security_opt.1" || strings.Contains(vs[0].Detail, "mount") {
		t.Fatalf("an inline profile: %v", vs)
	}
}

func TestSecurityOptionsKey(t *testing.T) {
	opts := []string{"apparmor=my-profile", "apparmor:other", "seccomp=unconfined", "label=type:svirt_apache_t"}
	refused := func(c Settings) []string {
		t.Helper()
		var out []string
		for _, v := range Resolve(c).Check(project(types.ServiceConfig{Name: "w", SecurityOpt: opts}), "/x") {
			out = append(out, v.KeyPath)
		}
		return out
	}
	yes, no := true, false
	for _, tt := range []struct {
		name string
		c    Settings
		want []string
	}{
		{"strict", Settings{Preset: PresetStrict}, []string{"services.w.security_opt.0", "services.w.security_opt.1", "services.w.security_opt.2", "services.w.security_opt.3"}},
		{"strict, one listed in the other spelling", Settings{Preset: PresetStrict, SecurityOptions: []string{"apparmor:my-profile", "label=type:svirt_apache_t"}}, []string{"services.w.security_opt.1", "services.w.security_opt.2"}},
		{"strict, a prefix", Settings{Preset: PresetStrict, SecurityOptions: []string{"apparmor=*"}}, []string{"services.w.security_opt.2", "services.w.security_opt.3"}},
		{"strict, ALL", Settings{Preset: PresetStrict, SecurityOptions: []string{"ALL"}}, nil},
		// A privileged container is unconfined anyway: opening privileged
		// opens the options, as it did before they had a key.
		{"strict, privileged opened", Settings{Preset: PresetStrict, Privileged: &yes}, nil},
		{"strict, privileged opened, options listed", Settings{Preset: PresetStrict, Privileged: &yes, SecurityOptions: []string{}}, []string{"services.w.security_opt.0", "services.w.security_opt.1", "services.w.security_opt.2", "services.w.security_opt.3"}},
		{"default", Settings{}, nil},
		{"default, privileged closed", Settings{Privileged: &no}, []string{"services.w.security_opt.0", "services.w.security_opt.1", "services.w.security_opt.2", "services.w.security_opt.3"}},
	} {
		if got := refused(tt.c); !slices.Equal(got, tt.want) {
			t.Errorf("%s: refused %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestHooksAreJudgedWithTheirService: a post_start or pre_stop hook runs
// in the service's container; privileged: true there is privileged.
func TestHooksAreJudgedWithTheirService(t *testing.T) {
	svc := types.ServiceConfig{
		Name:      "w",
		PostStart: []types.ServiceHook{{Command: []string{"true"}}, {Command: []string{"sh"}, Privileged: true}},
		PreStop:   []types.ServiceHook{{Command: []string{"sh"}, Privileged: true, User: "root"}},
	}
	vs := strict().Check(project(svc), "/x")
	var paths []string
	for _, v := range vs {
		paths = append(paths, v.KeyPath)
		if v.Rule != "policy.privileged" {
			t.Errorf("rule %s, want policy.privileged", v.Rule)
		}
	}
	if want := []string{"services.w.post_start.1.privileged", "services.w.pre_stop.0.privileged"}; !slices.Equal(paths, want) {
		t.Fatalf("violations at %v, want %v", paths, want)
	}
	if got := vs[0].Error(); got != "service w: a post_start hook with privileged: true is not allowed on this host (policy.privileged)" {
		t.Fatalf("message %q", got)
	}
	if vs := Resolve(Settings{}).Check(project(svc), "/x"); len(vs) != 0 {
		t.Fatalf("the default policy refused a privileged hook: %v", vs)
	}
}

// TestVolumesThatAreBinds: a local volume whose driver_opts bind a host
// folder is a bind, judged by bind_paths and docker_socket; other drivers
// and other options need their own keys under strict.
func TestVolumesThatAreBinds(t *testing.T) {
	local := func(opts map[string]string) types.VolumeConfig {
		return types.VolumeConfig{Name: "s_x", Driver: "local", DriverOpts: opts}
	}
	bindOf := func(dev string) types.VolumeConfig {
		return local(map[string]string{"type": "none", "o": "bind", "device": dev})
	}
	yes := true
	strictSrv := Settings{Preset: PresetStrict, BindPaths: []string{"/srv"}}
	for _, tt := range []struct {
		name   string
		c      Settings
		v      types.VolumeConfig
		rules  []string
		detail string
	}{
		{"bind of /etc", Settings{Preset: PresetStrict}, bindOf("/etc"), []string{"policy.bind_paths"}, "driver_opts that mount /etc (outside the allowed bind paths (none))"},
		{"rbind with flags, no driver named", Settings{Preset: PresetStrict}, types.VolumeConfig{DriverOpts: map[string]string{"type": "none", "o": "ro,rbind", "device": "/etc"}}, []string{"policy.bind_paths"}, ""},
		// compose-go leaves it relative unless o is exactly bind; the
		// engine resolves it from /.
		{"relative device", strictSrv, local(map[string]string{"type": "none", "o": "bind,ro", "device": "etc"}), []string{"policy.bind_paths"}, "driver_opts that mount /etc ("},
		{"bind of an allowed path", strictSrv, bindOf("/srv/data"), nil, ""},
		// Binds into the stack's folder are the repository's own files,
		// which no container may rewrite: the volume must say ro.
		{"read-only bind inside the stack", Settings{Preset: PresetStrict}, local(map[string]string{"type": "none", "o": "bind,ro", "device": "/live/stacks/s/conf"}), nil, ""},
		{"writable bind inside the stack", Settings{Preset: PresetStrict}, bindOf("/live/stacks/s"), []string{"policy.bind_paths"}, "driver_opts that mount /live/stacks/s (writable, in the stack's folder: bind it in the service's volumes, which are read-only there)"},
		{"writable bind inside the stack, default", Settings{}, bindOf("/live/stacks/s"), nil, ""},
		{"an image file of the repository, read-only", Settings{Preset: PresetStrict, VolumeOptions: &yes}, local(map[string]string{"type": "ext4", "o": "loop,ro", "device": "/live/stacks/s/disk.img"}), nil, ""},
		{"an overlay on the repository", Settings{Preset: PresetStrict, VolumeOptions: &yes}, local(map[string]string{"type": "overlay", "device": "overlay", "o": "lowerdir=/live/stacks/s/base,upperdir=/live/stacks/s/u,workdir=/live/stacks/s/w"}), []string{"policy.bind_paths", "policy.bind_paths"}, "driver_opts that mount /live/stacks/s/u (writable"},
		{"a relative device path", Settings{Preset: PresetStrict, VolumeOptions: &yes}, local(map[string]string{"type": "ext4", "device": "dev/sda1"}), []string{"policy.bind_paths", "policy.devices"}, ""},
		{"cifs", Settings{Preset: PresetStrict, VolumeOptions: &yes}, local(map[string]string{"type": "cifs", "device": "//nas/share", "o": "addr=nas"}), nil, ""},
		{"nfs with a host name", Settings{Preset: PresetStrict, VolumeOptions: &yes}, local(map[string]string{"type": "nfs", "device": "nas:/export"}), nil, ""},
		{"bind of the socket's folder", Settings{Preset: PresetStrict, BindPaths: []string{"/"}}, bindOf("/run"), []string{"policy.docker_socket"}, "it holds the Docker engine's socket"},
		{"bind of the socket, default with docker_socket closed", Settings{DockerSocket: new(bool)}, bindOf("/var/run/docker.sock"), []string{"policy.docker_socket"}, "the Docker engine"},
		{"bind under the default", Settings{}, bindOf("/etc"), nil, ""},
		{"nfs", Settings{Preset: PresetStrict}, local(map[string]string{"type": "nfs", "o": "addr=10.0.0.1,rw", "device": ":/export"}), []string{"policy.volume_options"}, "driver_opts device, o, type"},
		{"nfs with volume_options", Settings{Preset: PresetStrict, VolumeOptions: &yes}, local(map[string]string{"type": "nfs", "o": "addr=10.0.0.1", "device": ":/export"}), nil, ""},
		{"tmpfs", Settings{Preset: PresetStrict}, local(map[string]string{"type": "tmpfs", "device": "tmpfs", "o": "size=100m"}), []string{"policy.volume_options"}, ""},
		{"a host disk", Settings{Preset: PresetStrict, VolumeOptions: &yes}, local(map[string]string{"type": "ext4", "device": "/dev/sda1"}), []string{"policy.bind_paths", "policy.devices"}, ""},
		{"an overlay of host folders", Settings{Preset: PresetStrict, VolumeOptions: &yes}, local(map[string]string{"type": "overlay", "device": "overlay", "o": "lowerdir=/etc:/srv/a,upperdir=/srv/u,workdir=/srv/w"}), []string{"policy.bind_paths", "policy.bind_paths", "policy.bind_paths", "policy.bind_paths"}, ""},
		{"an overlay within bind_paths", Settings{Preset: PresetStrict, VolumeOptions: &yes, BindPaths: []string{"/srv"}}, local(map[string]string{"type": "overlay", "device": "overlay", "o": "lowerdir=/srv/a,upperdir=/srv/u,workdir=/srv/w"}), nil, ""},
		{"another driver", Settings{Preset: PresetStrict}, types.VolumeConfig{Driver: "rexray/ebs"}, []string{"policy.volume_drivers"}, "driver rexray/ebs (allowed: local)"},
		{"another driver and its options", Settings{Preset: PresetStrict}, types.VolumeConfig{Driver: "vieux/sshfs", DriverOpts: map[string]string{"sshcmd": "u@h:/"}}, []string{"policy.volume_drivers", "policy.volume_options"}, ""},
		{"a listed driver", Settings{Preset: PresetStrict, VolumeDrivers: []string{"vieux/sshfs"}, VolumeOptions: &yes}, types.VolumeConfig{Driver: "vieux/sshfs", DriverOpts: map[string]string{"sshcmd": "u@h:/"}}, nil, ""},
		{"an external volume", Settings{Preset: PresetStrict}, types.VolumeConfig{Name: "shared", External: true}, nil, ""},
		{"a plain volume", Settings{Preset: PresetStrict}, types.VolumeConfig{Name: "s_x", Driver: "local"}, nil, ""},
	} {
		p := project(types.ServiceConfig{Name: "w", Volumes: []types.ServiceVolumeConfig{{Type: types.VolumeTypeVolume, Source: "x", Target: "/x"}}})
		p.Volumes = types.Volumes{"x": tt.v}
		vs := Resolve(tt.c).Check(p, "/live/stacks/s")
		if !slices.Equal(rules(vs), tt.rules) {
			t.Errorf("%s: rules %v, want %v (%v)", tt.name, rules(vs), tt.rules, vs)
			continue
		}
		if len(vs) > 0 && (vs[0].Volume != "x" || !strings.HasPrefix(vs[0].KeyPath, "volumes.x.") || !strings.HasPrefix(vs[0].Error(), "volume x: ")) {
			t.Errorf("%s: %q at %s", tt.name, vs[0].Error(), vs[0].KeyPath)
		}
		if tt.detail != "" && !strings.Contains(vs[0].Detail, tt.detail) {
			t.Errorf("%s: detail %q, want %q", tt.name, vs[0].Detail, tt.detail)
		}
	}
}

// TestHostNetworkUnderAnyName: the host's network namespace is refused
// however it is asked for: network_mode, a network whose name is host,
// or the network of a build's RUN steps.
func TestHostNetworkUnderAnyName(t *testing.T) {
	p := project(
		types.ServiceConfig{Name: "a", Networks: map[string]*types.ServiceNetworkConfig{"outside": nil}},
		types.ServiceConfig{Name: "b", Build: &types.BuildConfig{Context: "/live/stacks/s", Network: "host"}},
		types.ServiceConfig{Name: "c", Build: &types.BuildConfig{Context: "/live/stacks/s", Network: "container:other-db-1"}},
		types.ServiceConfig{Name: "ok", Build: &types.BuildConfig{Context: "/live/stacks/s", Network: "none"}},
	)
	p.Networks = types.Networks{"default": {Name: "s_default"}, "outside": {Name: "host", External: true}}
	vs := strict().Check(p, "/live/stacks/s")
	var got []string
	for _, v := range vs {
		got = append(got, v.KeyPath+" "+v.Rule)
	}
	want := []string{"services.a.networks.outside policy.host_namespaces", "services.b.build.network policy.host_namespaces", "services.c.build.network policy.other_containers"}
	if !slices.Equal(got, want) {
		t.Fatalf("violations %q, want %q", got, want)
	}
	// The default network may be called host too.
	p = project(types.ServiceConfig{Name: "d"})
	p.Networks = types.Networks{"default": {Name: "host", External: true}}
	if vs := strict().Check(p, "/x"); !slices.Equal(rules(vs), []string{"policy.host_namespaces"}) {
		t.Fatalf("a default network named host: %v", vs)
	}
	yes := true
	if vs := Resolve(Settings{Preset: PresetStrict, HostNamespaces: &yes, OtherContainers: &yes}).Check(p, "/x"); len(vs) != 0 {
		t.Fatalf("host_namespaces and other_containers opened: %v", vs)
	}
}
