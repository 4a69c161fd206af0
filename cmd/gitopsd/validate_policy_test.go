package main

import (
	"strings"
	"testing"
)

// TestValidateStrictRefusesIndirectForms: `validate --strict` refuses what
// amounts to a privilege, a host namespace or a host path however it is
// written: a security_opt other than the known-safe ones (an inline seccomp
// profile allowing every call included), a build or a network reaching the
// host's network namespace or another container's, a privileged hook, a
// named volume that binds a host folder. Each names the file, line and
// rule; without --strict they all pass, as docker compose runs them.
func TestValidateStrictRefusesIndirectForms(t *testing.T) {
	app := "services:\n  app:\n    image: example/app:1\n"
	stacks := map[string]struct{ extra, want string }{
		"seccompjson": {"    security_opt:\n      - no-new-privileges:true\n      - 'seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}'\n",
			`stacks/seccompjson/compose.yaml:6: services.app.security_opt.1: service app: security_opt seccomp={"defaultAction":"SCMP_ACT_ALLOW"} (only no-new-privileges and apparmor=docker-default pass unless listed) is not allowed on this host (policy.security_options)`},
		"seccompoff":  {"    security_opt: [seccomp=unconfined]\n", "stacks/seccompoff/compose.yaml:4: services.app.security_opt.0:"},
		"apparmoroff": {"    security_opt: ['apparmor:unconfined']\n", "stacks/apparmoroff/compose.yaml:4: services.app.security_opt.0:"},
		"labeloff":    {"    security_opt: ['label:disable']\n", "(policy.security_options)"},
		"unmasked":    {"    security_opt: [systempaths=unconfined]\n", "(policy.security_options)"},
		"buildhost": {"    build: {context: ., network: host}\n",
			"stacks/buildhost/compose.yaml:4: services.app.build.network: service app: build.network: host is not allowed on this host (policy.host_namespaces)"},
		"buildjoin": {"    build: {context: ., network: 'container:other-db-1'}\n",
			"services.app.build.network: service app: build.network: container:other-db-1 (a container outside the stack) is not allowed on this host (policy.other_containers)"},
		"hostnet": {"    networks: [outside]\nnetworks:\n  outside: {name: host, external: true}\n",
			"stacks/hostnet/compose.yaml:4: services.app.networks.outside: service app: network outside (named host: the host's network) is not allowed on this host (policy.host_namespaces)"},
		"hook": {"    pre_stop:\n      - command: [/app, flush]\n        privileged: true\n",
			"stacks/hook/compose.yaml:6: services.app.pre_stop.0.privileged: service app: a pre_stop hook with privileged: true is not allowed on this host (policy.privileged)"},
		"bindvol": {"    volumes: [\"etc:/host-etc:ro\"]\nvolumes:\n  etc:\n    driver: local\n    driver_opts:\n      type: none\n      o: bind\n      device: /etc\n",
			"stacks/bindvol/compose.yaml:11: volumes.etc.driver_opts.device: volume etc: driver_opts that mount /etc (outside the allowed bind paths (none)) is not allowed on this host (policy.bind_paths)"},
		// The stack's own folder, writable through a volume: a container
		// could rewrite the revision it runs.
		"selfbind": {"    volumes: [\"repo:/repo\"]\nvolumes:\n  repo:\n    driver: local\n    driver_opts: {type: none, o: bind, device: .}\n",
			"(writable, in the stack's folder: bind it in the service's volumes, which are read-only there) is not allowed on this host (policy.bind_paths)"},
		"nfs": {"    volumes: [\"share:/share\"]\nvolumes:\n  share:\n    driver_opts: {type: nfs, o: addr=10.0.0.1, device: ':/export'}\n",
			"stacks/nfs/compose.yaml:7: volumes.share.driver_opts: volume share: driver_opts device, o, type is not allowed on this host (policy.volume_options)"},
		"plugin": {"    volumes: [\"data:/data\"]\nvolumes:\n  data: {driver: rexray/ebs}\n",
			"stacks/plugin/compose.yaml:6: volumes.data.driver: volume data: driver rexray/ebs (allowed: local) is not allowed on this host (policy.volume_drivers)"},
	}
	repo := t.TempDir()
	files := map[string]string{
		// What strict lets through: the options that only tighten, a
		// build on its own network, a plain named volume.
		"stacks/fine/compose.yaml": app + "    security_opt: [no-new-privileges, 'no-new-privileges:true', apparmor=docker-default]\n" +
			"    build: {context: ., network: none}\n    volumes: [\"data:/data\"]\nvolumes:\n  data: {driver: local}\n",
		"stacks/fine/Dockerfile": "FROM scratch\n",
	}
	for name, s := range stacks {
		files["stacks/"+name+"/compose.yaml"] = app + s.extra
		files["stacks/"+name+"/Dockerfile"] = "FROM scratch\n"
	}
	writeFiles(t, repo, files)

	out, errOut, code := gitopsd(t, nil, "validate", repo)
	if code != 0 || strings.Contains(out, "invalid") {
		t.Fatalf("validate without --strict: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = gitopsd(t, nil, "validate", repo, "--strict")
	if code != 1 {
		t.Fatalf("validate --strict: exit %d, want 1\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "ok       fine (1 services)") {
		t.Errorf("validate --strict refused what only tightens:\n%s", out)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, "invalid  "); ok {
			name, msg, _ := strings.Cut(rest, ": ")
			lines[name] = msg
		}
	}
	for name, s := range stacks {
		if !strings.Contains(lines[name], s.want) {
			t.Errorf("stack %s: %q\nwant it to hold %q", name, lines[name], s.want)
		}
	}
}
