package stack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// These tests hold gitopsd's loading and hashing to the docker compose v2
// CLI itself: the config hash on a container is what tells compose (and
// gitopsd) whether it is up to date, so one differing byte would make
// gitopsd and `docker compose up` recreate each other's containers.

const testLabel = testenv.TestLabel

// needCompose makes sure the compose v2 CLI is there, building it from the
// module proxy when it is not (as the engine and daemon tests do).
func needCompose(t *testing.T) {
	t.Helper()
	testenv.ComposeV2(t)
}

// kitchenSink is a stack using most of what changes a config hash. With
// envFiles it also uses the keys `config --hash` does not resolve the way
// `up` does (env_file, label_file, a variable passed through by name).
func kitchenSink(image string, envFiles bool) map[string]string {
	web := `  web:
    image: ${IMAGE}
    command: ["/app", "serve", "--port", "${PORT:-8080}"]
    environment:
      A: "1"
      HOST: ${GITOPSD_HOST}
      SITE: ${GITOPSD_LABEL_SITE}
      TAG: ${TAG}
      WHERE: ${PWD}
`
	if envFiles {
		web += `      BARE:
    env_file: [app.env]
    label_file: [labels.txt]
`
	}
	web += `    labels: {` + testLabel + `: stack, team: web}
    ports: ["9000", "127.0.0.1::9001/udp"]
    healthcheck: {test: ["CMD", "/app", "probe"], interval: 2s, timeout: 1s, retries: 3, start_period: 5s}
    volumes:
      - data:/data
      - ./conf:/conf:ro
      - {type: tmpfs, target: /scratch}
    depends_on:
      db: {condition: service_healthy}
    deploy:
      replicas: 2
      update_config: {order: start-first, failure_action: rollback, monitor: 30s}
      resources: {limits: {memory: 64M}}
    restart: unless-stopped
    networks: [default, back]
    stop_grace_period: 5s
    user: "1000"
    working_dir: /srv
`
	return map[string]string{
		"stacks/STACK/.env": "IMAGE=" + image + "\nTAG=7\n",
		"stacks/STACK/compose.yaml": `name: not-the-project-name
services:
` + web + `  db:
    image: ${IMAGE}
    command: ["/app", "db"]
    environment: [EXTRA=base]
    labels: {` + testLabel + `: stack}
    networks: [back]
    volumes: [data:/var/lib/db]
    healthcheck: {test: ["CMD", "/app", "probe"], interval: 1s}
  debug:
    image: ${IMAGE}
    profiles: [debug]
networks:
  default: {labels: {` + testLabel + `: stack}}
  back: {labels: {` + testLabel + `: stack}}
  unused: {labels: {` + testLabel + `: stack}}
volumes:
  data: {labels: {` + testLabel + `: stack}}
x-gitopsd: {drift: report}
`,
		"stacks/STACK/compose.edge-1.yaml": "services:\n  db:\n    environment: [EXTRA=overlay]\n",
		"stacks/STACK/app.env":             "FROM_ENV_FILE=yes\nREF=${TAG}\n",
		"stacks/STACK/labels.txt":          "from.label.file=yes\n",
		"stacks/STACK/conf/app.conf":       "x\n",
	}
}

// liveView lays the stack out as the daemon does: the checkout in one
// folder, and stacks/<name> in another one a symlink to it.
func liveView(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	renamed := map[string]string{}
	for p, content := range files {
		renamed[strings.ReplaceAll(p, "STACK", name)] = content
	}
	checkout := repo(t, renamed)
	live := t.TempDir()
	if err := os.MkdirAll(filepath.Join(live, "stacks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(checkout, "stacks", name), filepath.Join(live, "stacks", name)); err != nil {
		t.Fatal(err)
	}
	return live
}

// compose runs the docker compose CLI on a loaded stack's files, in its
// folder, with the environment a shell there would have.
func compose(t *testing.T, st *Stack, host Host, args ...string) string {
	t.Helper()
	full := []string{"compose", "-p", st.Name}
	for _, f := range st.Files {
		full = append(full, "-f", f)
	}
	cmd := exec.Command("docker", append(full, args...)...)
	cmd.Dir = st.Dir
	cmd.Env = append(append(os.Environ(), HostEnv(host)...), "PWD="+st.Dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
	return string(out)
}

// parseHashes reads "<service> <hash>" lines.
func parseHashes(out string) map[string]string {
	hashes := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if name, hash, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			hashes[name] = hash
		}
	}
	return hashes
}

func compareHashes(t *testing.T, st *Stack, theirs map[string]string) {
	t.Helper()
	if len(theirs) != len(st.Project.Services) {
		t.Errorf("compose hashed services %v, gitopsd has %v", theirs, st.Project.ServiceNames())
	}
	for _, name := range st.Project.ServiceNames() {
		mine, err := ServiceHash(st.Project.Services[name])
		if err != nil {
			t.Fatal(err)
		}
		if theirs[name] != mine {
			t.Errorf("service %s: gitopsd hash %s, compose %s", name, mine, theirs[name])
		}
	}
}

// TestHashEqualsComposeConfig compares hashes with `docker compose config
// --hash`, which needs no engine. That command does not resolve the
// service environment as `up` does (env_file, variables passed by name),
// so those keys are left to TestHashEqualsComposeUp.
func TestHashEqualsComposeConfig(t *testing.T) {
	needCompose(t)
	t.Setenv("PORT", "8181") // the process environment reaches both
	cases := []struct {
		name  string
		host  Host
		files map[string]string
	}{
		{"kitchen-sink", Host{Name: "edge-1", Labels: map[string]string{"site": "berlin"}}, kitchenSink("app:1", false)},
		{"no-overlay", Host{Name: "edge-2", Labels: map[string]string{"site": "paris"}}, kitchenSink("app:2", false)},
		{"minimal", host, map[string]string{"stacks/STACK/docker-compose.yml": "services:\n  one: {image: busybox}\n"}},
		{"long-syntax", host, map[string]string{"stacks/STACK/compose.yml": `services:
  app:
    image: app:1
    ports: [{target: 80, published: "8080", host_ip: 127.0.0.1, protocol: tcp}]
    volumes: [{type: bind, source: ., target: /src, read_only: true}]
    environment: [X=1, Y=two words]
    entrypoint: /bin/app --flag
    extra_hosts: ["db:10.0.0.2"]
    ulimits: {nofile: {soft: 1024, hard: 2048}}
    logging: {driver: json-file, options: {max-size: 10m}}
    cap_add: [NET_ADMIN]
    sysctls: {net.core.somaxconn: 1024}
`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			live := liveView(t, c.name, c.files)
			st, err := Load(context.Background(), live, c.name, c.host)
			if err != nil {
				t.Fatal(err)
			}
			compareHashes(t, st, parseHashes(compose(t, st, c.host, "config", "--hash", "*")))
		})
	}
}

// TestHashEqualsComposeUp compares hashes with the labels `docker compose
// up` really writes: it creates (never starts) the containers of a stack
// from an empty local image, so no registry is needed.
func TestHashEqualsComposeUp(t *testing.T) {
	testenv.Docker(t)
	needCompose(t)
	t.Setenv("BARE", "passed through by name")
	t.Setenv("PORT", "8181")

	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	name := "gitopsd-stack-test-" + hex.EncodeToString(suffix)
	image := name + ":1"
	testenv.CleanupProjects(t, name)
	importEmptyImage(t, image)

	h := Host{Name: "edge-1", Labels: map[string]string{"site": "berlin"}}
	live := liveView(t, name, kitchenSink(image, true))
	st, err := Load(context.Background(), live, name, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd := exec.Command("docker", "compose", "-p", name, "down", "--volumes", "--remove-orphans")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("clean up %s: %v\n%s", name, err, out)
		}
	})
	compose(t, st, h, "up", "--no-start", "--pull", "never")

	out, err := exec.Command("docker", "ps", "--all",
		"--filter", "label=com.docker.compose.project="+name,
		"--filter", "label="+testLabel,
		"--format", `{{.Label "com.docker.compose.service"}} {{.Label "com.docker.compose.config-hash"}}`).CombinedOutput()
	if err != nil {
		t.Fatalf("docker ps: %v\n%s", err, out)
	}
	theirs := parseHashes(string(out))
	compareHashes(t, st, theirs)

	// The env_file and label_file reached the hash the way up resolves them.
	web := st.Project.Services["web"]
	if v := web.Environment["FROM_ENV_FILE"]; v == nil || *v != "yes" || len(web.EnvFiles) != 0 {
		t.Errorf("env_file not resolved into the environment: %v %v", web.Environment, web.EnvFiles)
	}
	if v := web.Environment["BARE"]; v == nil || *v != "passed through by name" {
		t.Errorf("BARE = %v", v)
	}
}

// importEmptyImage makes an image with no layers content, labelled as a
// test object, and removes it when the test ends.
func importEmptyImage(t *testing.T, ref string) {
	t.Helper()
	var empty bytes.Buffer
	if err := tar.NewWriter(&empty).Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker", "import", "--change", "LABEL "+testLabel+"=stack", "-", ref)
	cmd.Stdin = &empty
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("docker", "image", "rm", "--force", ref).CombinedOutput(); err != nil {
			t.Logf("remove image %s: %v\n%s", ref, err, out)
		}
	})
}
