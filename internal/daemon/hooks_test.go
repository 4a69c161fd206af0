package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// hookStack is a web service with compose lifecycle hooks: post_start
// writes a file in the container (or, with failingHook, exits 3), pre_stop
// leaves a note in the volume the next container mounts.
func hookStack(image string, port int, version string, failingHook bool) string {
	post := `["/testapp", "write", "/started", "` + version + `"]`
	if failingHook {
		post = `["/testapp", "job", "--for", "0s", "--exit", "3"]`
	}
	return fmt.Sprintf(`services:
  web:
    image: %[1]s
    pull_policy: never
    ports: ["127.0.0.1:%[2]d:8080"]
    environment: {VERSION: %[3]q}
    volumes: ["data:/data"]
    healthcheck: `+probeCheck+`
    post_start: [{command: %[4]s}]
    pre_stop: [{command: ["/testapp", "write", "/data/stopped", "stopped %[3]s"]}]
    labels: {%[5]s: "1"}
`+testenv.LabelledDefault("data"), image, port, version, post, testenv.TestLabel)
}

// post_start hooks run in each new container before its gate, pre_stop
// hooks in the old one before it stops; a post_start hook that fails fails
// the gate, and the old container serves again.
func TestLifecycleHooks(t *testing.T) {
	h := newHarness(t, nil)
	name := testenv.Project(t, "hooks")
	port := testenv.FreePort(t)
	file := "stacks/" + name + "/compose.yaml"

	h.repo.Commit(t, "v1", map[string]string{file: hookStack(h.image, port, "v1", false)})
	h.mustReconcile()
	if got := getFile(t, port, "/started"); got != "v1" {
		t.Fatalf("post_start wrote %q, want v1", got)
	}
	h.repo.Commit(t, "v2", map[string]string{file: hookStack(h.image, port, "v2", false)})
	h.mustReconcile()
	if got, err := waitServes(port, "v2", 5*time.Second); err != nil {
		t.Fatalf("v2 serves %q, %v", got, err)
	}
	// The old container runs the pre_stop hook of the file being applied
	// (the file it was made from may be gone), as compose's recreate does.
	if got := getFile(t, port, "/data/stopped"); got != "stopped v2" {
		t.Fatalf("the old container's pre_stop left %q in the volume, want \"stopped v2\"", got)
	}
	if got := getFile(t, port, "/started"); got != "v2" {
		t.Fatalf("post_start of the new container wrote %q, want v2", got)
	}

	h.repo.Commit(t, "v3, a failing hook", map[string]string{file: hookStack(h.image, port, "v3", true)})
	err := h.reconcile()
	if err == nil || !strings.Contains(err.Error(), `post_start hook: "/testapp job --for 0s --exit 3" exited 3`) {
		t.Fatalf("reconcile with a failing post_start hook: %v", err)
	}
	if got, err := waitServes(port, "v2", 5*time.Second); err != nil {
		t.Fatalf("after the failed hook the port answers %q, %v; want v2 again", got, err)
	}
}
