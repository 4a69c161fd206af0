package daemon

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// filesStack uses compose secrets and configs of every source gitopsd
// supports without swarm: a file (bind-mounted), an environment variable
// and inline content (written into the container), and a SOPS-encrypted
// file (decrypted in memory and written in).
func filesStack(image string) string {
	return simpleStack(image, `    secrets:
      - db_password
      - source: api_token
        target: token
      - sealed
      - sealed_token
    configs:
      - site
      - source: conf
        target: /etc/app.conf
secrets:
  db_password: {file: ./db_password.txt}
  api_token: {environment: API_TOKEN}
  sealed: {file: ./sealed.yaml}
  sealed_token: {file: ./token.bin}
configs:
  site: {content: "hello from ${GITOPSD_HOST}"}
  conf: {file: ./app.conf}`)
}

// readInContainer is a file's content as the container's own process
// reads it (the test app serves its files), trimmed: Exec's output is for
// people, with the stream's framing bytes dropped.
func readInContainer(t *testing.T, h *harness, id, path string) string {
	t.Helper()
	code, out, err := h.d.engine.Exec(context.Background(), id, []string{"/testapp", "get", "http://127.0.0.1:8080/file?path=" + path})
	if err != nil || code != 0 {
		t.Fatalf("read %s in the container: exit %d, %v: %s", path, code, err, out)
	}
	return out
}

// TestSecretsAndConfigs: compose secrets and configs reach the container
// where compose puts them; a SOPS-encrypted one arrives decrypted without
// its plaintext in the container's config; a changed secret rolls the
// service.
func TestSecretsAndConfigs(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Secrets.AgeKeyFile = secretFixture(t, "test.agekey")
	h.stop()
	h.start()
	name := testenv.Project(t, "files")
	dir := "stacks/" + name + "/"
	h.repo.Commit(t, "secrets and configs", map[string]string{
		dir + "compose.yaml":    filesStack(h.image),
		dir + ".env":            "API_TOKEN=tok-from-env\n",
		dir + "db_password.txt": "pw-v1\n",
		dir + "sealed.yaml":     readFixture(t, "app.yaml"),
		dir + "token.bin":       readFixture(t, "token.bin"),
		dir + "app.conf":        "listen 8080\n",
	})
	h.mustReconcile()
	id := h.containers(name)["app#1"]
	for path, want := range map[string]string{
		"/run/secrets/db_password":  "pw-v1\n",
		"/run/secrets/token":        "tok-from-env",
		"/run/secrets/sealed":       readFixture(t, "app.sops-decrypted.yaml"),
		"/run/secrets/sealed_token": "sealed-binary-secret\n",
		"/site":                     "hello from testhost",
		"/etc/app.conf":             "listen 8080\n",
	} {
		if got := readInContainer(t, h, id, path); !strings.Contains(got, strings.TrimSpace(want)) {
			t.Errorf("%s in the container is %q, want %q", path, got, want)
		}
	}
	inspect, err := h.docker.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	shown, _ := json.Marshal(inspect.Container)
	for _, secret := range []string{"hunter2-yaml", "sealed-binary-secret", "tok-from-env", "pw-v1"} {
		if strings.Contains(string(shown), secret) {
			t.Errorf("docker inspect shows the secret %q", secret)
		}
	}
	if inspect.Container.Config.Labels[engine.LabelFiles] == "" {
		t.Errorf("the container has no %s label", engine.LabelFiles)
	}

	// Nothing changed: nothing rolls. The password changes: the service rolls.
	h.mustReconcile()
	if again := h.containers(name)["app#1"]; again != id {
		t.Fatalf("a poll with unchanged secrets recreated the container")
	}
	h.repo.Commit(t, "rotate the password", map[string]string{dir + "db_password.txt": "hunter2-v2\n"})
	h.mustReconcile()
	rolled := h.containers(name)["app#1"]
	if rolled == id {
		t.Fatalf("a changed secret did not roll the service")
	}
	if got := readInContainer(t, h, rolled, "/run/secrets/db_password"); !strings.Contains(got, "hunter2-v2") {
		t.Errorf("after the rotation the container reads %q", got)
	}
}
