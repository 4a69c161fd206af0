package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestComposeUpChangesNothingOnAProfiledMultiFileStack: a stack made of
// several files (COMPOSE_FILE in .env, another included, a service
// extending another and overridden by the second file, YAML anchors) with profiles from .env is deployed by
// gitopsd, and `docker compose up -d` run in the stack's folder, reading
// the same .env, then changes nothing: gitopsd created exactly the
// containers compose creates, of the active profiles only.
func TestComposeUpChangesNothingOnAProfiledMultiFileStack(t *testing.T) {
	compose := testenv.ComposeV2(t)
	h := newHarness(t, nil)
	name := testenv.Project(t, "multi")
	label := testenv.TestLabel
	dir := "stacks/" + name + "/"
	h.repo.Commit(t, "a stack of several files with profiles", map[string]string{
		dir + ".env": "COMPOSE_FILE=base.yaml:extra.yaml\nCOMPOSE_PROFILES=debug\nVERSION=v7\n",
		dir + "base.yaml": fmt.Sprintf(`include:
  - common.yaml
x-app: &app
  image: %[1]s
  pull_policy: never
  labels: {%[2]s: "1"}
  deploy: {update_config: {monitor: 1s}}
services:
  web:
    <<: *app
    environment: {VERSION: "${VERSION:-none}", ROLE: web}
  worker:
    extends: {service: web}
  debug:
    <<: *app
    profiles: [debug]
    environment: {ROLE: debug}
  hidden:
    <<: *app
    profiles: [other]
`+testenv.LabelledDefault(), h.image, label),
		dir + "extra.yaml": `services:
  worker:
    environment: {ROLE: worker}
`,
		dir + "common.yaml": fmt.Sprintf(`services:
  cache:
    image: %[1]s
    pull_policy: never
    labels: {%[2]s: "1"}
    deploy: {update_config: {monitor: 1s}}
`, h.image, label),
	})
	h.mustReconcile()
	before := h.containers(name)
	want := []string{"cache#1", "debug#1", "web#1", "worker#1"}
	if len(before) != len(want) {
		t.Fatalf("gitopsd runs %v, want %v", before, want)
	}
	for _, k := range want {
		if before[k] == "" {
			t.Fatalf("gitopsd runs %v, want %v", before, want)
		}
	}
	if env := strings.Join(h.env(before["worker#1"]), " "); !strings.Contains(env, "VERSION=v7") || !strings.Contains(env, "ROLE=worker") {
		t.Errorf("worker's environment: %s", env)
	}

	// compose, in the folder gitopsd deploys from, with nothing but what
	// the folder says.
	folder := filepath.Join(h.cfg.StateDir, "live", "stacks", name)
	cmd := exec.Command(compose[0], append(compose[1:], "-p", name, "up", "-d")...)
	cmd.Dir = folder
	cmd.Env = composeEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker compose up: %v\n%s", err, out)
	}
	if after := h.containers(name); !mapsEqual(before, after) {
		t.Fatalf("docker compose up changed gitopsd's containers: %v -> %v", before, after)
	}
}

// composeEnv is the environment of a compose command run by hand: the
// process's, without variables that would select files or profiles.
func composeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "COMPOSE_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}
