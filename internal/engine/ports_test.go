package engine_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestPortsInUse: of the fixed host ports a spec publishes, those another
// process holds are named; those the container being replaced publishes
// (it runs, so the engine holds them) are not, nor are free or ephemeral
// ones.
func TestPortsInUse(t *testing.T) {
	e := newEngine(t)
	image := testenv.AppImage(t, "gitopsd-test-engine:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "ports")
	ctx := context.Background()

	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().(*net.TCPAddr).Port
	own, free := testenv.FreePort(t), testenv.FreePort(t)
	yaml := func(ports ...string) string {
		return fmt.Sprintf(`services:
  web:
    image: %s
    pull_policy: never
    ports: [%s]
    labels: {%s: "1"}
networks:
  default: {labels: {%s: "1"}}
`, image, strings.Join(ports, ", "), testenv.TestLabel, testenv.TestLabel)
	}
	p := loadProject(t, name, yaml(fmt.Sprintf(`"127.0.0.1:%d:8080"`, own)))
	if _, err := e.EnsureNetwork(ctx, p, "default", nil); err != nil {
		t.Fatal(err)
	}
	imageID, err := e.EnsureImage(ctx, image, "never")
	if err != nil {
		t.Fatal(err)
	}
	running, err := engine.ServiceSpec(p, p.Services["web"], 1, "hash", imageID, nil)
	if err != nil {
		t.Fatal(err)
	}
	old, err := e.CreateContainer(ctx, running)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.StartContainer(ctx, old); err != nil {
		t.Fatal(err)
	}

	next := loadProject(t, name, yaml(fmt.Sprintf(`"127.0.0.1:%d:8080"`, own), fmt.Sprintf(`"127.0.0.1:%d:8081"`, taken),
		fmt.Sprintf(`"127.0.0.1:%d:8082"`, free), `"127.0.0.1::8083"`))
	spec, err := engine.ServiceSpec(next, next.Services["web"], 1, "hash2", imageID, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.PortsInUse(ctx, spec, old)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{fmt.Sprintf("127.0.0.1:%d/tcp", taken)}; !slices.Equal(got, want) {
		t.Fatalf("ports in use %v, want %v", got, want)
	}
	// Without the old container to free it, its own port is in use too.
	if got, err := e.PortsInUse(ctx, spec, ""); err != nil || len(got) != 2 {
		t.Fatalf("ports in use with nothing freed: %v, %v; want the old container's port and the taken one", got, err)
	}
}
