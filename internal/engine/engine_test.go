package engine_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// loadProject loads a compose file the way the compose CLI does, without
// going through internal/stack, so these tests depend on the engine only.
func loadProject(t *testing.T, name, yaml string) *types.Project {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithName(name), cli.WithWorkingDirectory(dir), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load project: %v", err)
	}
	return p
}

func newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	testenv.Docker(t)
	e, err := engine.New(context.Background())
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

const webYAML = `services:
  web:
    image: %IMAGE%
    pull_policy: never
    command: ["serve"]
    environment: {VERSION: "1", EMPTY: ""}
    ports: ["127.0.0.1::8080"]
    healthcheck: {test: ["CMD", "/testapp", "probe"], interval: 1s, retries: 3}
    restart: unless-stopped
    tmpfs: [/scratch]
    volumes: [data:/data, ./conf:/conf:ro]
    networks: [default, back]
    labels: {io.gitopsd.test: "1"}
volumes:
  data: {labels: {io.gitopsd.test: "1"}}
networks:
  default: {labels: {io.gitopsd.test: "1"}}
  back: {labels: {io.gitopsd.test: "1"}}
`

// createService creates networks, volumes and replica 1 of web, started.
func createService(t *testing.T, e *engine.Engine, p *types.Project) (engine.ContainerSpec, string) {
	t.Helper()
	ctx := context.Background()
	extra := map[string]string{engine.LabelStack: p.Name}
	for _, key := range []string{"back", "default"} {
		if _, err := e.EnsureNetwork(ctx, p, key, extra); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.EnsureVolume(ctx, p, "data", extra); err != nil {
		t.Fatal(err)
	}
	svc := p.Services["web"]
	imageID, err := e.EnsureImage(ctx, svc.Image, svc.PullPolicy)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := engine.ServiceSpec(p, svc, 1, "hash", imageID, extra)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.CreateContainer(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	return spec, id
}

func TestCreatedContainerMatchesItsSpec(t *testing.T) {
	e := newEngine(t)
	image := testenv.AppImage(t, "gitopsd-test-engine:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "eng")
	p := loadProject(t, name, strings.ReplaceAll(webYAML, "%IMAGE%", image))
	spec, id := createService(t, e, p)
	ctx := context.Background()

	cs, err := e.Containers(ctx, name)
	if err != nil || len(cs) != 1 {
		t.Fatalf("containers: %v %v", cs, err)
	}
	c := cs[0]
	if c.ID != id || c.Name != name+"-web-1" || c.Service != "web" || c.Number != 1 || !c.Managed || c.ConfigHash != "hash" {
		t.Fatalf("observed %+v", c)
	}
	if d := engine.Differences(spec, c.Inspect); len(d) != 0 {
		t.Fatalf("a container created from its spec differs from it: %v", d)
	}
	// Both networks are attached, with compose's aliases.
	nets := c.Inspect.NetworkSettings.Networks
	for _, key := range []string{"default", "back"} {
		ep, ok := nets[name+"_"+key]
		if !ok {
			t.Fatalf("not on network %s_%s: %v", name, key, nets)
		}
		if !slices.Contains(ep.Aliases, "web") {
			t.Fatalf("network %s: aliases %v lack the service name", key, ep.Aliases)
		}
	}

	// Ensuring again changes nothing and returns the same objects.
	if _, err := e.EnsureNetwork(ctx, p, "default", nil); err != nil {
		t.Fatal(err)
	}
	if err := e.EnsureVolume(ctx, p, "data", nil); err != nil {
		t.Fatal(err)
	}
	ns, _ := e.Networks(ctx, name)
	vs, _ := e.Volumes(ctx, name)
	if len(ns) != 2 || len(vs) != 1 || vs[0].Key != "data" || !vs[0].Managed {
		t.Fatalf("networks %v volumes %v", ns, vs)
	}

	// A changed env value, port or mount is a difference, named.
	changed := loadProject(t, name, strings.ReplaceAll(strings.ReplaceAll(webYAML, "%IMAGE%", image), `VERSION: "1"`, `VERSION: "2"`))
	spec2, err := engine.ServiceSpec(changed, changed.Services["web"], 1, "hash", c.ImageID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := engine.Differences(spec2, c.Inspect); !slices.Contains(d, "env VERSION") {
		t.Fatalf("env change not seen: %v", d)
	}
	noPorts := spec
	hc := *spec.HostConfig
	hc.PortBindings = nil
	noPorts.HostConfig = &hc
	if d := engine.Differences(noPorts, c.Inspect); !slices.Contains(d, "ports") {
		t.Fatalf("port change not seen: %v", d)
	}

	// A network a running container is attached to is not removed, and
	// that is not mistaken for the engine's leak.
	err = e.RemoveNetwork(ctx, ns[0].ID)
	if err == nil || errors.Is(err, engine.ErrNetworkLeaked) || !strings.Contains(err.Error(), "still attached") {
		t.Fatalf("remove of a network in use: %v; want an error saying a container is still attached", err)
	}

	// Stop, rename and remove are idempotent where it matters.
	if err := e.StopContainer(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.RenameContainer(ctx, id, name+"-parked"); err != nil {
		t.Fatal(err)
	}
	if err := e.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.RemoveContainer(ctx, id); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if err := e.StopContainer(ctx, id, nil); err != nil {
		t.Fatalf("stop of a removed container: %v", err)
	}
	for _, n := range ns {
		err := e.RemoveNetwork(ctx, n.ID)
		if errors.Is(err, engine.ErrNetworkLeaked) && testenv.NetworkLeaked(t, n.ID) {
			t.Logf("network %s: %v", n.Name, err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	left, err := e.Networks(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range left {
		if !testenv.NetworkLeaked(t, n.ID) {
			t.Fatalf("network %s left", n.Name)
		}
	}
}

func TestComposeCreatedContainerHasNoDifferences(t *testing.T) {
	compose := testenv.ComposeV2(t)
	e := newEngine(t)
	image := testenv.AppImage(t, "gitopsd-test-engine:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "engc")
	yaml := strings.ReplaceAll(webYAML, "%IMAGE%", image)
	p := loadProject(t, name, yaml)
	file := filepath.Join(p.WorkingDir, "compose.yaml")
	run(t, append(compose, "-p", name, "-f", file, "up", "-d")...)

	ctx := context.Background()
	cs, err := e.Containers(ctx, name)
	if err != nil || len(cs) != 1 {
		t.Fatalf("containers: %v %v", cs, err)
	}
	spec, err := engine.ServiceSpec(p, p.Services["web"], 1, cs[0].ConfigHash, cs[0].ImageID, map[string]string{engine.LabelStack: name})
	if err != nil {
		t.Fatal(err)
	}
	if d := engine.Differences(spec, cs[0].Inspect); len(d) != 0 {
		t.Fatalf("gitopsd sees differences in a container compose created from the same file: %v", d)
	}
	if cs[0].Labels[engine.LabelImage] != cs[0].ImageID {
		t.Fatalf("compose's image label %q is not the image ID %q", cs[0].Labels[engine.LabelImage], cs[0].ImageID)
	}
}

func TestEnsureImageRespectsPullPolicy(t *testing.T) {
	e := newEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	image := testenv.AppImage(t, "gitopsd-test-engine:"+testenv.UniqueName(t, "v"))
	for _, policy := range []string{"never", "missing", "", "build"} {
		id, err := e.EnsureImage(ctx, image, policy)
		if err != nil || !strings.HasPrefix(id, "sha256:") {
			t.Fatalf("policy %q, local image: %q %v", policy, id, err)
		}
	}
	_, err := e.EnsureImage(ctx, "gitopsd-test-absent:1", "never")
	if err == nil || !strings.Contains(err.Error(), "pull_policy is never") {
		t.Fatalf("absent image with pull_policy never: %v", err)
	}
	// A pull that cannot reach a registry fails with the image named.
	_, err = e.EnsureImage(ctx, "127.0.0.1:1/gitopsd-test-absent:1", "missing")
	if err == nil || !strings.Contains(err.Error(), "gitopsd-test-absent") {
		t.Fatalf("unreachable registry: %v", err)
	}
}

func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := execCommand(argv...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return out
}

func execCommand(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}
