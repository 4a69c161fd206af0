package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// filesYAML uses compose secrets and configs from a file, an environment
// variable and inline content.
const filesYAML = `services:
  app:
    image: %IMAGE%
    pull_policy: never
    labels: {io.gitopsd.test: "1"}
    secrets: [db_password, {source: token, target: api_token}]
    configs: [site, {source: conf, target: /etc/app.conf}]
secrets:
  db_password: {file: ./db_password.txt}
  token: {environment: TOKEN}
configs:
  site: {content: "hello"}
  conf: {file: ./app.conf}
networks:
  default: {labels: {io.gitopsd.test: "1"}}
`

// A container docker compose created with secrets and configs looks to
// gitopsd exactly like the one it would create itself, so such a stack is
// adopted without a restart; and the content-backed ones are written in.
func TestComposeCreatedSecretsAndConfigsHaveNoDifferences(t *testing.T) {
	compose := testenv.ComposeV2(t)
	e := newEngine(t)
	image := testenv.AppImage(t, "gitopsd-test-engine:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "engfiles")
	t.Setenv("TOKEN", "t0k3n")
	p := loadProject(t, name, strings.ReplaceAll(filesYAML, "%IMAGE%", image))
	p.Environment["TOKEN"] = "t0k3n" // what compose up reads from its environment
	for file, content := range map[string]string{"db_password.txt": "pw\n", "app.conf": "listen 8080\n"} {
		if err := os.WriteFile(filepath.Join(p.WorkingDir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, append(compose, "-p", name, "-f", filepath.Join(p.WorkingDir, "compose.yaml"), "up", "-d")...)

	ctx := context.Background()
	cs, err := e.Containers(ctx, name)
	if err != nil || len(cs) != 1 {
		t.Fatalf("containers: %v %v", cs, err)
	}
	spec, err := engine.ServiceSpec(p, p.Services["app"], 1, cs[0].ConfigHash, cs[0].ImageID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := engine.Differences(spec, cs[0].Inspect); len(d) != 0 {
		t.Fatalf("gitopsd sees differences in a container compose created with secrets and configs: %v", d)
	}
	written := map[string]string{}
	for _, f := range spec.Files {
		written[f.Path] = string(f.Content)
	}
	if len(written) != 2 || written["/run/secrets/api_token"] != "t0k3n" || written["/site"] != "hello" {
		t.Fatalf("files gitopsd would write into the container: %v", written)
	}
}

// gpusYAML asks for GPUs both ways compose knows: gpus: and
// deploy.resources.reservations.devices.
const gpusYAML = `services:
  all:
    image: %IMAGE%
    pull_policy: never
    labels: {io.gitopsd.test: "1"}
    gpus: all
  two:
    image: %IMAGE%
    pull_policy: never
    labels: {io.gitopsd.test: "1"}
    deploy:
      resources:
        reservations:
          devices:
            - {driver: nvidia, count: 2, capabilities: [gpu, utility]}
            - {device_ids: ["GPU-1"], capabilities: [compute]}
networks:
  default: {labels: {io.gitopsd.test: "1"}}
`

// Containers asking for GPUs are created with the device requests docker
// compose gives them, and hashed as compose hashes them. This host has no
// GPU, so the containers are created, not started.
func TestGPUsAsComposeRequestsThem(t *testing.T) {
	p, cs := composeCreated(t, "enggpu", gpusYAML, 2)
	for _, c := range cs {
		svc := p.Services[c.Service]
		hash, err := stack.ServiceHash(svc)
		if err != nil || hash != c.ConfigHash {
			t.Errorf("%s: gitopsd hashes %s (%v), compose %s", c.Service, hash, err, c.ConfigHash)
		}
		spec, err := engine.ServiceSpec(p, svc, 1, hash, c.ImageID, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, got := spec.HostConfig.DeviceRequests, c.Inspect.HostConfig.DeviceRequests
		if len(want) == 0 || !reflect.DeepEqual(want, got) {
			t.Errorf("%s: gitopsd requests devices %+v, compose %+v", c.Service, want, got)
		}
		if d := engine.Differences(spec, c.Inspect); len(d) != 0 {
			t.Errorf("%s: differences from compose's container: %v", c.Service, d)
		}
	}
}

// passThroughYAML uses host config keys gitopsd hands to the engine as
// they are written.
const passThroughYAML = `services:
  app:
    image: %IMAGE%
    pull_policy: never
    labels: {io.gitopsd.test: "1"}
    device_cgroup_rules: ["c 1:3 mr", "a 7:* rmw"]
    isolation: default
    blkio_config: {weight: 300}
networks:
  default: {labels: {io.gitopsd.test: "1"}}
`

// device_cgroup_rules, isolation and blkio_config reach the container as
// docker compose gives them (they were ignored before).
func TestHostConfigKeysAsComposeSetsThem(t *testing.T) {
	p, cs := composeCreated(t, "enghost", passThroughYAML, 1)
	spec, err := engine.ServiceSpec(p, p.Services["app"], 1, cs[0].ConfigHash, cs[0].ImageID, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, got := spec.HostConfig, cs[0].Inspect.HostConfig
	if !reflect.DeepEqual(want.DeviceCgroupRules, got.DeviceCgroupRules) || len(want.DeviceCgroupRules) != 2 {
		t.Errorf("device_cgroup_rules: gitopsd %q, compose %q", want.DeviceCgroupRules, got.DeviceCgroupRules)
	}
	if want.Isolation != got.Isolation || want.Isolation != "default" {
		t.Errorf("isolation: gitopsd %q, compose %q", want.Isolation, got.Isolation)
	}
	// The engine drops a block IO weight its kernel cannot apply (as here),
	// so only gitopsd's request is checked.
	if want.BlkioWeight != 300 {
		t.Errorf("blkio_config.weight: gitopsd asks %d", want.BlkioWeight)
	}
	if d := engine.Differences(spec, cs[0].Inspect); len(d) != 0 {
		t.Errorf("differences from compose's container: %v", d)
	}
}

// composeCreated has docker compose create (not start: a key may need what
// this host lacks) the project that yaml describes, %IMAGE% being the test
// app, and returns it with the want containers compose made.
func composeCreated(t *testing.T, prefix, yaml string, want int) (*types.Project, []engine.Container) {
	t.Helper()
	compose := testenv.ComposeV2(t)
	e := newEngine(t)
	image := testenv.AppImage(t, "gitopsd-test-engine:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, prefix)
	p := loadProject(t, name, strings.ReplaceAll(yaml, "%IMAGE%", image))
	run(t, append(compose, "-p", name, "-f", filepath.Join(p.WorkingDir, "compose.yaml"), "create")...)
	cs, err := e.Containers(context.Background(), name)
	if err != nil || len(cs) != want {
		t.Fatalf("containers: %v %v", cs, err)
	}
	return p, cs
}

// A hook for a container that is not running is ErrNotRunning (a pre_stop
// of a container already stopped is skipped), not a failed hook.
func TestHookInAContainerNotRunning(t *testing.T) {
	_, cs := composeCreated(t, "enghook", passThroughYAML, 1)
	err := newEngine(t).RunHook(context.Background(), cs[0].ID, engine.Hook{Cmd: []string{"/testapp", "write", "/x", "y"}})
	if !errors.Is(err, engine.ErrNotRunning) {
		t.Fatalf("hook in a created container: %v, want ErrNotRunning", err)
	}
}
