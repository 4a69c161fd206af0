package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// registryStack is a worker and a web service on a fixed host port (so web
// rolls stop-first), both from image under pull_policy; failWeb makes web
// fail its health gate after the worker rolled.
func registryStack(image, pullPolicy string, port int, version string, failWeb bool) string {
	fail := ""
	if failWeb {
		fail = `, FAIL_HEALTH: "1"`
	}
	return fmt.Sprintf(`services:
  worker:
    image: %[1]s
    pull_policy: %[2]s
    environment: {VERSION: %[4]q}
    deploy: {update_config: {monitor: 1s}}
    labels: {%[6]s: "1"}
  web:
    image: %[1]s
    pull_policy: %[2]s
    depends_on: [worker]
    ports: ["127.0.0.1:%[3]d:8080"]
    environment: {VERSION: %[4]q%[5]s}
    healthcheck: `+probeCheck+`
    labels: {%[6]s: "1"}
`+testenv.LabelledDefault(), image, pullPolicy, port, version, fail, testenv.TestLabel)
}

// newRegistryCase is what each registry test starts from: a daemon, a
// private registry, and a stack name whose containers go when it ends.
func newRegistryCase(t *testing.T, prefix string) (*harness, *testenv.Registry, string) {
	t.Helper()
	h := newHarness(t, nil)
	reg := testenv.StartRegistry(t)
	name := testenv.Project(t, prefix)
	return h, reg, name
}

// withDockerConfig restarts the harness's daemon reading registry
// credentials from path.
func (h *harness) withDockerConfig(path string) {
	h.t.Helper()
	h.stop()
	h.cfg.Images.DockerConfig = path
	h.start()
}

// imagesOf maps "service#number" to the image ID the container runs.
func (h *harness) imagesOf(project string) map[string]string {
	h.t.Helper()
	return h.byReplica(project, func(c engine.Container) string { return c.ImageID })
}

// noSecret fails the test when the registry's password shows in what a
// user or a scraper reads: status, history (as JSON, steps included).
func (h *harness) noSecret(stackName, secret string) {
	h.t.Helper()
	st, err := json.Marshal(h.status())
	if err != nil {
		h.t.Fatal(err)
	}
	hist, err := json.Marshal(h.history(stackName))
	if err != nil {
		h.t.Fatal(err)
	}
	if strings.Contains(string(st), secret) || strings.Contains(string(hist), secret) {
		h.t.Fatal("the registry password shows in status or history")
	}
}

func TestRegistryPullWithCredentialsFromDockerConfig(t *testing.T) {
	h, reg, a := newRegistryCase(t, "reg")
	port := testenv.FreePort(t)

	ref, id := reg.PushApp(t, a+"/app:v1", "v1")
	reg.RemoveLocal(t, ref) // so gitopsd really pulls it
	h.withDockerConfig(testenv.WriteDockerConfig(t, reg.Host, reg.User, reg.Password))

	h.repo.Commit(t, "v1 from the private registry", map[string]string{"stacks/" + a + "/compose.yaml": registryStack(ref, "missing", port, "v1", false)})
	h.mustReconcile()
	if got := h.imagesOf(a); got["web#1"] != id || got["worker#1"] != id {
		t.Fatalf("containers run %v, want the pushed image %s", got, id)
	}
	if got, err := waitServes(port, "v1", 5*time.Second); err != nil {
		t.Fatalf("v1 serves %q, %v", got, err)
	}
	if s := h.stackStatus(a); s.Sync != "Synced" || s.Error != "" {
		t.Fatalf("status: %+v", s)
	}
	p, ok, err := h.d.store.LastPull(context.Background(), ref)
	if err != nil || !ok || p.ImageID != id {
		t.Fatalf("the pull is not recorded: %+v %v %v", p, ok, err)
	}
	h.noSecret(a, reg.Password)
}

func TestRegistryWrongCredentialsFailTheDeploymentAndTouchNothing(t *testing.T) {
	h, reg, a := newRegistryCase(t, "regauth")
	port, file := testenv.FreePort(t), "stacks/"+a+"/compose.yaml"

	v1, _ := reg.PushApp(t, a+"/app:v1", "v1")
	v2, _ := reg.PushApp(t, a+"/app:v2", "v2")
	reg.RemoveLocal(t, v1)
	reg.RemoveLocal(t, v2)
	config := testenv.WriteDockerConfig(t, reg.Host, reg.User, reg.Password)
	h.withDockerConfig(config)
	h.repo.Commit(t, "v1", map[string]string{file: registryStack(v1, "missing", port, "v1", false)})
	h.mustReconcile()
	before := h.containers(a)

	// The same file, now with a wrong password: it is read at each pull,
	// as after a `docker login`, without a restart.
	const wrong = "not-the-password"
	wrongConfig, err := os.ReadFile(testenv.WriteDockerConfig(t, reg.Host, reg.User, wrong))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, wrongConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := h.repo.Commit(t, "v2", map[string]string{file: registryStack(v2, "missing", port, "v2", false)})
	err = h.reconcile()
	want := fmt.Sprintf("pull image %s from registry %s: unauthorized", v2, reg.Host)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("reconcile with wrong credentials: %v; want %q", err, want)
	}
	s := h.stackStatus(a)
	if s.Sync != "Failed" || !strings.Contains(s.Error, want) {
		t.Fatalf("status: sync %s, error %q; want Failed with %q", s.Sync, s.Error, want)
	}
	hist := h.history(a)
	if len(hist) == 0 || hist[0].To != bad || hist[0].Outcome != "failed" || !strings.Contains(hist[0].Error, want) {
		t.Fatalf("history: %+v; want a failed deployment of %s saying %q", hist, bad[:12], want)
	}
	if after := h.containers(a); !mapsEqual(before, after) {
		t.Fatalf("a failed pull touched the running containers: %v -> %v", before, after)
	}
	if got, err := waitServes(port, "v1", 5*time.Second); err != nil {
		t.Fatalf("v1 no longer serves: %q, %v", got, err)
	}
	h.noSecret(a, reg.Password)
	h.noSecret(a, wrong)
}

func TestRegistryMovedTagUnderPullAlwaysRollsTheServices(t *testing.T) {
	h, reg, a := newRegistryCase(t, "regtag")
	port := testenv.FreePort(t)
	ctx := context.Background()

	ref, first := reg.PushApp(t, a+"/app:stable", "first")
	reg.RemoveLocal(t, ref)
	var logs lockedBuffer
	h.logTo = &logs
	h.withDockerConfig(testenv.WriteDockerConfig(t, reg.Host, reg.User, reg.Password))
	h.repo.Commit(t, "stable, always pulled", map[string]string{"stacks/" + a + "/compose.yaml": registryStack(ref, "always", port, "v1", false)})
	h.mustReconcile()
	if got := h.imagesOf(a); got["web#1"] != first || got["worker#1"] != first {
		t.Fatalf("containers run %v, want %s", got, first)
	}

	// The tag moves in the registry only: the host keeps the first image
	// under it, and the second one is not on the host at all.
	_, second := reg.PushApp(t, a+"/app:stable", "second")
	if second == first {
		t.Fatal("the second push is the same image")
	}
	if _, err := h.docker.ImageTag(ctx, client.ImageTagOptions{Source: first, Target: ref}); err != nil {
		t.Fatal(err)
	}
	reg.RemoveLocal(t, second)

	pulledBefore := strings.Count(logs.String(), `msg="pulled image"`)
	h.mustReconcile() // a poll, nothing new in Git
	if got := h.imagesOf(a); got["web#1"] != second || got["worker#1"] != second {
		t.Fatalf("after the tag moved, containers run %v, want %s", got, second)
	}
	if got, err := waitServes(port, "v1", 5*time.Second); err != nil {
		t.Fatalf("the rolled service does not serve: %q, %v", got, err)
	}
	// Two services share the image: one pull per reconcile.
	if n := strings.Count(logs.String(), `msg="pulled image"`) - pulledBefore; n != 1 {
		t.Fatalf("the poll pulled %d times, want once:\n%s", n, logs.String())
	}
	if s := h.stackStatus(a); s.Sync != "Synced" || s.Health != "Healthy" {
		t.Fatalf("status after the roll: %+v", s)
	}

	// The next poll pulls again and finds nothing to do.
	rolled := h.containers(a)
	h.mustReconcile()
	if after := h.containers(a); !mapsEqual(rolled, after) {
		t.Fatalf("a poll with an unmoved tag recreated containers: %v -> %v", rolled, after)
	}
}

func TestRegistryRollbackWithoutTheRegistryUsesImagesOnTheHost(t *testing.T) {
	h, reg, a := newRegistryCase(t, "regback")
	port, file := testenv.FreePort(t), "stacks/"+a+"/compose.yaml"

	ref, id := reg.PushApp(t, a+"/app:v1", "v1")
	reg.RemoveLocal(t, ref)
	h.withDockerConfig(testenv.WriteDockerConfig(t, reg.Host, reg.User, reg.Password))
	good := h.repo.Commit(t, "v1, always pulled", map[string]string{file: registryStack(ref, "always", port, "v1", false)})
	h.mustReconcile()
	if got, err := waitServes(port, "v1", 5*time.Second); err != nil {
		t.Fatalf("v1 serves %q, %v", got, err)
	}

	// The registry goes away; v2 (from a local image) rolls the worker,
	// then web fails its gate: the stack must go back to v1, whose images
	// only the host has now.
	reg.Stop()
	bad := h.repo.Commit(t, "v2, web unhealthy", map[string]string{file: registryStack(h.image, "never", port, "v2", true)})
	err := h.reconcile()
	if err == nil || !strings.Contains(err.Error(), "health gate") {
		t.Fatalf("reconcile of an unhealthy revision: %v", err)
	}
	if got, err := waitServes(port, "v1", 5*time.Second); err != nil {
		t.Fatalf("v1 does not serve again after the rollback: %q, %v", got, err)
	}
	ids, images := h.containers(a), h.imagesOf(a)
	for _, svc := range []string{"worker#1", "web#1"} {
		if env := h.env(ids[svc]); !slices.Contains(env, "VERSION=v1") || images[svc] != id {
			t.Fatalf("%s runs %s with %v after the rollback; want %s with VERSION=v1", svc, images[svc], env, id)
		}
	}
	s := h.stackStatus(a)
	if s.Sync != "Failed" || s.Revision != good || !strings.Contains(s.Error, "rolled back to "+good[:12]) || strings.Contains(s.Error, "rollback failed") {
		t.Fatalf("status after the rollback: %+v", s)
	}
	hist := h.history(a)
	if len(hist) < 3 || hist[0].Trigger != "rollback" || hist[0].To != good || hist[0].Outcome != "succeeded" ||
		hist[1].To != bad || hist[1].Outcome != "rolled_back" {
		t.Fatalf("history: %+v", hist)
	}

	// Polls with the registry still away fail nothing and touch nothing:
	// v1's tag cannot be checked, so the image on the host stands for it.
	h.mustReconcile()
	if after := h.containers(a); !mapsEqual(ids, after) {
		t.Fatalf("a poll without the registry touched the stack: %v -> %v", ids, after)
	}
}

// TestRegistryRollbackKeepsTheImageTheGoodRevisionRan: under
// pull_policy: always, a revision whose poll pulled a moved tag (a new
// image that fails its health gate) is rolled back to the image the good
// revision ran, not to what the tag names now.
func TestRegistryRollbackKeepsTheImageTheGoodRevisionRan(t *testing.T) {
	h, reg, a := newRegistryCase(t, "regmoved")
	port, file := testenv.FreePort(t), "stacks/"+a+"/compose.yaml"

	ref, good := reg.PushApp(t, a+"/app:stable", "good")
	h.withDockerConfig(testenv.WriteDockerConfig(t, reg.Host, reg.User, reg.Password))
	h.repo.Commit(t, "v1", map[string]string{file: registryStack(ref, "always", port, "v1", false)})
	h.mustReconcile()
	if got, err := waitServes(port, "v1", 5*time.Second); err != nil {
		t.Fatalf("v1 serves %q, %v", got, err)
	}

	// The tag moves to an image whose healthcheck fails; the next revision
	// pulls it, fails its gate, and is rolled back.
	_, bad := reg.PushAppWith(t, a+"/app:stable", "bad", "ENV FAIL_HEALTH=1")
	if bad == good {
		t.Fatal("the re-pushed image has the same ID")
	}
	h.repo.Commit(t, "v2", map[string]string{file: registryStack(ref, "always", port, "v2", false)})
	if err := h.reconcile(); err == nil || !strings.Contains(err.Error(), "health gate") {
		t.Fatalf("reconcile of a revision whose image fails its health: %v", err)
	}
	if got, err := waitServes(port, "v1", 5*time.Second); err != nil {
		t.Fatalf("v1 does not serve after the rollback: %q, %v", got, err)
	}
	for svc, id := range h.imagesOf(a) {
		if id != good {
			t.Errorf("%s runs %s after the rollback, want the good revision's %s (the moved tag names %s)", svc, id, good, bad)
		}
	}
	s := h.stackStatus(a)
	if strings.Contains(s.Error, "rollback failed") || !strings.Contains(s.Error, "rolled back") {
		t.Errorf("status after the rollback: %s", s.Error)
	}
	if hist := h.history(a); len(hist) == 0 || hist[0].Trigger != "rollback" || hist[0].Outcome != "succeeded" {
		t.Errorf("the rollback was not recorded as succeeded: %+v", hist)
	}
}

func TestPullPolicyEveryPullsOncePerPeriod(t *testing.T) {
	h, reg, a := newRegistryCase(t, "regevery")
	ctx := context.Background()

	ref, id := reg.PushApp(t, a+"/app:v1", "v1")
	reg.RemoveLocal(t, ref)
	h.withDockerConfig(testenv.WriteDockerConfig(t, reg.Host, reg.User, reg.Password))
	h.repo.Commit(t, "v1 every 1h", map[string]string{"stacks/" + a + "/compose.yaml": registryStack(ref, "every_1h", testenv.FreePort(t), "v1", false)})
	h.mustReconcile()
	lastPull := func() store.Pull {
		t.Helper()
		p, ok, err := h.d.store.LastPull(ctx, ref)
		if err != nil || !ok || p.ImageID != id {
			t.Fatalf("last pull of %s: %+v %v %v", ref, p, ok, err)
		}
		return p
	}
	first := lastPull()

	// Within the hour, polls do not pull.
	h.mustReconcile()
	if again := lastPull(); !again.PulledAt.Equal(first.PulledAt) {
		t.Fatalf("a poll within the period pulled: %v -> %v", first.PulledAt, again.PulledAt)
	}
	// An hour later they do.
	old := time.Now().Add(-61 * time.Minute).UTC()
	if err := h.d.store.RecordPull(ctx, store.Pull{Ref: ref, ImageID: id, PulledAt: old}); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile()
	if again := lastPull(); !again.PulledAt.After(first.PulledAt) {
		t.Fatalf("a poll after the period did not pull: last pull %v", again.PulledAt)
	}
	if s := h.stackStatus(a); s.Sync != "Synced" || s.Error != "" {
		t.Fatalf("status: %+v", s)
	}
}
