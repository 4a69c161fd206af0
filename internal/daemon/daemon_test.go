package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/sync"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// harness is one daemon over one Git repository, driven reconcile by
// reconcile (no timers), against the real engine.
type harness struct {
	t      testing.TB
	repo   *testenv.GitRepo
	cfg    *config.Config
	d      *Daemon
	docker *client.Client
	image  string
	watch  bool      // runDaemon watches the local repository
	logTo  io.Writer // gets the daemon's log too (set before start)
	halt   func()    // stops what runDaemon runs, before the test ends
}

func newHarness(t testing.TB, url func(*testenv.GitRepo) string) *harness {
	t.Helper()
	h := &harness{t: t, docker: testenv.Docker(t), repo: testenv.NewGitRepo(t)}
	h.image = testenv.AppImage(t, "gitopsd-test-daemon:"+strings.ToLower(testenv.UniqueName(t, "v")))
	h.configure(url)
	return h
}

// configure gives the harness a default config over its repository (or
// the URL url makes of it) and a fresh state_dir, and opens its daemon.
func (h *harness) configure(url func(*testenv.GitRepo) string) {
	h.t.Helper()
	cfg := config.Default()
	cfg.Source.URL = h.repo.Bare
	if url != nil {
		cfg.Source.URL = url(h.repo)
	}
	cfg.Host.Name = "testhost"
	cfg.StateDir = h.t.TempDir()
	cfg.Socket = filepath.Join(cfg.StateDir, "gitopsd.sock")
	cfg.Metrics = ""
	h.cfg = cfg
	h.start()
}

// start opens a daemon over the harness's state (again, after stop).
func (h *harness) start() {
	h.t.Helper()
	var out io.Writer = io.Discard
	if os.Getenv("GITOPSD_TEST_LOG") == "1" {
		out = os.Stderr // the daemon's log, when debugging a test
	}
	if h.logTo != nil {
		out = io.MultiWriter(out, h.logTo)
	}
	d, err := New(context.Background(), h.cfg, slog.New(slog.NewTextHandler(out, nil)))
	if err != nil {
		h.t.Fatalf("start daemon: %v", err)
	}
	h.d = d
	h.t.Cleanup(func() { d.Close() })
}

func (h *harness) stop() {
	h.t.Helper()
	if err := h.d.Close(); err != nil {
		h.t.Fatalf("stop daemon: %v", err)
	}
}

// reconcile runs one poll and returns its error (a stack may fail on purpose).
func (h *harness) reconcile() error {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return h.d.reconcile(ctx, "poll", "")
}

func (h *harness) mustReconcile() {
	h.t.Helper()
	if err := h.reconcile(); err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
}

// mustSyncNow is `gitopsd sync`: a full reconcile even when the head has
// not moved (a poll that finds the same head only checks the ref, and
// leaves what changed by hand to the drift checks).
func (h *harness) mustSyncNow() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.d.reconcile(ctx, sync.TriggerManual, ""); err != nil {
		h.t.Fatalf("sync: %v", err)
	}
}

func (h *harness) status() api.Status {
	h.t.Helper()
	st, err := h.d.Status(context.Background(), "")
	if err != nil {
		h.t.Fatalf("status: %v", err)
	}
	return st
}

func (h *harness) stackStatus(name string) api.StackStatus {
	h.t.Helper()
	for _, s := range h.status().Stacks {
		if s.Name == name {
			return s
		}
	}
	h.t.Fatalf("stack %s not in status", name)
	return api.StackStatus{}
}

// containers maps "service#number" to container ID for a project.
func (h *harness) containers(project string) map[string]string {
	h.t.Helper()
	return h.byReplica(project, func(c engine.Container) string { return c.ID })
}

// byReplica maps "service#number" to what pick reads off each container of
// a project.
func (h *harness) byReplica(project string, pick func(engine.Container) string) map[string]string {
	h.t.Helper()
	cs, err := h.d.engine.Containers(context.Background(), project)
	if err != nil {
		h.t.Fatalf("list containers of %s: %v", project, err)
	}
	out := map[string]string{}
	for _, c := range cs {
		out[fmt.Sprintf("%s#%d", c.Service, c.Number)] = pick(c)
	}
	return out
}

func (h *harness) env(id string) []string {
	h.t.Helper()
	res, err := h.docker.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		h.t.Fatalf("inspect %s: %v", id, err)
	}
	return res.Container.Config.Env
}

// webStack is a stack with a web service (healthchecked), a worker and a
// named volume; every object carries the test label.
func webStack(image, version string) string {
	return fmt.Sprintf(`services:
  web:
    image: %[1]s
    pull_policy: never
    environment:
      VERSION: %[2]q
    healthcheck:
      test: ["CMD", "/testapp", "probe"]
      interval: 1s
      timeout: 2s
      retries: 3
    volumes:
      - data:/data
    labels:
      %[3]s: "1"
  worker:
    image: %[1]s
    pull_policy: never
    environment:
      VERSION: worker
    deploy:
      update_config:
        monitor: 1s
    labels:
      %[3]s: "1"
volumes:
  data:
    labels:
      %[3]s: "1"
networks:
  default:
    labels:
      %[3]s: "1"
`, image, version, testenv.TestLabel)
}

func TestConvergeChangeBreakAndRemove(t *testing.T) {
	h := newHarness(t, nil)
	a, b := testenv.UniqueName(t, "a"), testenv.UniqueName(t, "b")
	testenv.CleanupProjects(t, a, b)

	h.repo.Commit(t, "two stacks", map[string]string{
		"stacks/" + a + "/compose.yaml": webStack(h.image, "a1"),
		"stacks/" + b + "/compose.yaml": webStack(h.image, "b1"),
	})
	h.mustReconcile()
	idsA, idsB := h.containers(a), h.containers(b)
	if len(idsA) != 2 || len(idsB) != 2 {
		t.Fatalf("want 2 containers per stack, got %v and %v", idsA, idsB)
	}
	for _, name := range []string{a, b} {
		if s := h.stackStatus(name); s.Sync != "Synced" {
			t.Fatalf("stack %s: sync %s (%s), want Synced", name, s.Sync, s.Error)
		}
	}

	// A change of one service's env recreates that service only.
	h.repo.Commit(t, "a2", map[string]string{"stacks/" + a + "/compose.yaml": webStack(h.image, "a2")})
	h.mustReconcile()
	idsA2, idsB2 := h.containers(a), h.containers(b)
	if idsA2["web#1"] == idsA["web#1"] {
		t.Fatalf("web of %s was not recreated", a)
	}
	if !slices.Contains(h.env(idsA2["web#1"]), "VERSION=a2") {
		t.Fatalf("web of %s does not run VERSION=a2: %v", a, h.env(idsA2["web#1"]))
	}
	if idsA2["worker#1"] != idsA["worker#1"] {
		t.Fatalf("worker of %s was recreated though it did not change", a)
	}
	if !mapsEqual(idsB, idsB2) {
		t.Fatalf("stack %s changed though its files did not: %v -> %v", b, idsB, idsB2)
	}

	// A commit that breaks B's YAML leaves B Invalid (and running), A applied.
	broken := "services:\n  web:\n    image: " + h.image + "\n   environment: [oops\n"
	h.repo.Commit(t, "break b, a3", map[string]string{
		"stacks/" + a + "/compose.yaml": webStack(h.image, "a3"),
		"stacks/" + b + "/compose.yaml": broken,
	})
	if err := h.reconcile(); err == nil {
		t.Fatal("reconcile of a broken stack reported no error")
	}
	sb := h.stackStatus(b)
	if sb.Sync != "Invalid" || !strings.Contains(sb.Error, "stacks/"+b+"/compose.yaml:") {
		t.Fatalf("stack %s: sync %q error %q; want Invalid naming stacks/%s/compose.yaml:<line>", b, sb.Sync, sb.Error, b)
	}
	if !mapsEqual(idsB, h.containers(b)) {
		t.Fatalf("invalid stack %s was touched", b)
	}
	if !slices.Contains(h.env(h.containers(a)["web#1"]), "VERSION=a3") {
		t.Fatalf("stack %s was not applied beside the broken stack", a)
	}

	// Removing A removes its containers and network and keeps its volume.
	h.repo.Commit(t, "remove a", nil, "stacks/"+a+"/compose.yaml")
	_ = h.reconcile() // b is still invalid
	if got := h.containers(a); len(got) != 0 {
		t.Fatalf("containers of removed stack %s remain: %v", a, got)
	}
	ctx := context.Background()
	nets, err := h.d.engine.Networks(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		if !testenv.NetworkLeaked(t, n.ID) {
			t.Fatalf("network %s of removed stack %s was left behind", n.Name, a)
		}
		t.Logf("network %s of removed stack %s: the engine leaked an endpoint (moby/moby#43286)", n.Name, a)
	}
	vols, err := h.d.engine.Volumes(ctx, a)
	if err != nil || len(vols) != 1 {
		t.Fatalf("volume of removed stack %s should be kept: %v, %v", a, vols, err)
	}
	for _, s := range h.status().Stacks {
		if s.Name == a {
			t.Fatalf("removed stack %s still in status", a)
		}
	}
	hist, err := h.d.History(ctx, a, 0)
	if err != nil || len(hist) < 3 {
		t.Fatalf("history of %s: %v, %v", a, hist, err)
	}
	if hist[0].To != h.status().Source.Head || hist[0].Outcome != "succeeded" {
		t.Fatalf("last deployment of %s: %+v", a, hist[0])
	}
}

func TestConvergeOverSmartHTTP(t *testing.T) {
	const token = "s3cret-token"
	var url string
	h := newHarness(t, func(r *testenv.GitRepo) string {
		url = r.ServeHTTP(t, token)
		return url
	})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.stop()
	h.cfg.Source.Auth.TokenFile = tokenFile
	h.start()

	a := testenv.Project(t, "http")
	h.repo.Commit(t, "one stack", map[string]string{"stacks/" + a + "/compose.yaml": webStack(h.image, "v1")})
	h.mustReconcile()
	ids := h.containers(a)
	if len(ids) != 2 {
		t.Fatalf("want 2 containers, got %v", ids)
	}
	h.repo.Commit(t, "v2", map[string]string{"stacks/" + a + "/compose.yaml": webStack(h.image, "v2")})
	h.mustReconcile()
	ids2 := h.containers(a)
	if ids2["web#1"] == ids["web#1"] || ids2["worker#1"] != ids["worker#1"] {
		t.Fatalf("over HTTP, want web recreated and worker kept: %v -> %v", ids, ids2)
	}
	st := h.status()
	if strings.Contains(fmt.Sprint(st), token) {
		t.Fatal("status shows the token")
	}
	if st.Source.Error != "" {
		t.Fatalf("source error: %s", st.Source.Error)
	}
}

func TestRestartChangesNothing(t *testing.T) {
	h := newHarness(t, nil)
	a := testenv.Project(t, "restart")
	h.repo.Commit(t, "one stack", map[string]string{"stacks/" + a + "/compose.yaml": webStack(h.image, "v1")})
	h.mustReconcile()
	before := h.containers(a)
	hist, _ := h.d.History(context.Background(), a, 0)

	h.stop()
	h.start()
	h.mustReconcile()
	if after := h.containers(a); !mapsEqual(before, after) {
		t.Fatalf("restart changed containers: %v -> %v", before, after)
	}
	hist2, _ := h.d.History(context.Background(), a, 0)
	if len(hist2) != len(hist) {
		t.Fatalf("restart recorded deployments: %d -> %d", len(hist), len(hist2))
	}
	if s := h.stackStatus(a); s.Sync != "Synced" {
		t.Fatalf("after restart: %s %s", s.Sync, s.Error)
	}
}

func TestComposeSeesAndIsAdopted(t *testing.T) {
	compose := testenv.ComposeV2(t)
	h := newHarness(t, nil)
	a, adopt := testenv.UniqueName(t, "ps"), testenv.UniqueName(t, "adopt")
	testenv.CleanupProjects(t, a, adopt)
	ctx := context.Background()

	// docker compose ps lists what gitopsd started.
	h.repo.Commit(t, "stack", map[string]string{"stacks/" + a + "/compose.yaml": webStack(h.image, "v1")})
	h.mustReconcile()
	out := run(t, append(compose, "-p", a, "ps", "-a", "--format", "{{.Name}}")...)
	for _, want := range []string{a + "-web-1", a + "-worker-1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("docker compose ps does not list %s:\n%s", want, out)
		}
	}

	// A stack started by docker compose up is adopted without a restart.
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(webStack(h.image, "v1")), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, append(compose, "-p", adopt, "-f", file, "up", "-d")...)
	before := h.containers(adopt)
	if len(before) != 2 {
		t.Fatalf("compose up started %v", before)
	}
	started := map[string]string{}
	for k, id := range before {
		res, err := h.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		started[k] = res.Container.State.StartedAt
	}
	h.repo.Commit(t, "adopt", map[string]string{"stacks/" + adopt + "/compose.yaml": webStack(h.image, "v1")})
	h.mustReconcile()
	if after := h.containers(adopt); !mapsEqual(before, after) {
		t.Fatalf("adoption recreated containers: %v -> %v", before, after)
	}
	for k, id := range before {
		res, err := h.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Container.State.StartedAt != started[k] {
			t.Fatalf("%s was restarted on adoption", k)
		}
	}
	if hist, _ := h.d.History(ctx, adopt, 0); len(hist) != 0 {
		t.Fatalf("adoption recorded deployments: %+v", hist)
	}
	// And the reverse: compose up over gitopsd's containers changes nothing.
	beforeA := h.containers(a)
	fileA := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(fileA, []byte(webStack(h.image, "v1")), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, append(compose, "-p", a, "-f", fileA, "up", "-d")...)
	if afterA := h.containers(a); !mapsEqual(beforeA, afterA) {
		t.Fatalf("docker compose up recreated gitopsd's containers: %v -> %v", beforeA, afterA)
	}
}

func run(t *testing.T, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
