package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/sync"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// buildStack is the stack project, whose service app is built from ./app
// in the repository, with build args: BASE names the image the first stage
// copies the test app from (no image can be pulled here), the final stage
// is FROM scratch. Its service admin runs the image app builds, by the name
// compose gives it, and sorts first, as compose builds before it creates.
func buildStack(project, base, version string) map[string]string {
	return map[string]string{
		"compose.yaml": fmt.Sprintf(`services:
  app:
    build:
      context: ./app
      args:
        BASE: %[1]s
        VERSION: %[2]s
      labels:
        %[3]s: "1"
    healthcheck:
      test: ["CMD", "/testapp", "probe"]
      interval: 1s
      timeout: 2s
      retries: 3
    labels:
      %[3]s: "1"
  admin:
    image: %[4]s-app
    pull_policy: never
    command: ["serve"]
    deploy: {update_config: {monitor: 1s}}
    labels:
      %[3]s: "1"
networks:
  default:
    labels:
      %[3]s: "1"
`, base, version, testenv.TestLabel, project),
		"app/Dockerfile": `ARG BASE
FROM ${BASE} AS base

FROM scratch
ARG VERSION
COPY --from=base /testapp /testapp
COPY site/ /site/
ENV VERSION=${VERSION}
ENTRYPOINT ["/testapp"]
CMD ["serve"]
`,
		"app/site/index.txt": "hello\n",
		"app/.dockerignore":  "notes.md\n",
		"app/notes.md":       "not sent to the builder\n",
	}
}

// stackFiles prefixes a stack's files with their place in the repository.
func stackFiles(name string, files map[string]string) map[string]string {
	out := map[string]string{}
	for p, content := range files {
		out["stacks/"+name+"/"+p] = content
	}
	return out
}

// cleanupBuilds removes, when the test ends, the images gitopsd built for
// the stacks (recorded in its database) and their tags.
func cleanupBuilds(t *testing.T, h *harness, stacks ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, name := range stacks {
			builds, err := h.d.store.Builds(ctx, name)
			if err != nil {
				t.Errorf("list builds of %s: %v", name, err)
				continue
			}
			for _, b := range builds {
				for _, ref := range []string{b.Tag, b.ImageID} {
					if ref == "" {
						continue
					}
					_, err := h.docker.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
					if err != nil && !cerrdefs.IsNotFound(err) {
						t.Errorf("remove image %s: %v", ref, err)
					}
				}
			}
		}
	})
}

// runningImage is the image ID the service's first container runs, and
// that container's ID.
func runningImage(t *testing.T, h *harness, project, service string) (imageID, containerID string) {
	t.Helper()
	replica := service + "#1"
	imageID, containerID = h.imagesOf(project)[replica], h.containers(project)[replica]
	if containerID == "" {
		t.Fatalf("no container of %s/%s", project, service)
	}
	return imageID, containerID
}

func buildCount(t *testing.T, h *harness, stack string) int {
	t.Helper()
	builds, err := h.d.store.Builds(context.Background(), stack)
	if err != nil {
		t.Fatal(err)
	}
	return len(builds)
}

// TestBuildFromRepository: a stack built from its folder deploys; a commit
// changing a file of its context rebuilds and recreates it; a commit to
// another stack, or to a file .dockerignore excludes, builds nothing; a
// broken Dockerfile fails the deployment with the builder's error in
// history while the old container keeps serving.
func TestBuildFromRepository(t *testing.T) {
	h := newHarness(t, nil)
	built, other := testenv.UniqueName(t, "built"), testenv.UniqueName(t, "other")
	cleanupBuilds(t, h, built) // after the containers are gone: cleanups run last-in first-out
	testenv.CleanupProjects(t, built, other)

	files := stackFiles(built, buildStack(built, h.image, "v1"))
	for p, c := range stackFiles(other, map[string]string{"compose.yaml": webStack(h.image, "1")}) {
		files[p] = c
	}
	h.repo.Commit(t, "two stacks, one built", files)
	h.mustReconcile()
	if s := h.stackStatus(built); s.Sync != "Synced" || s.Health != "Healthy" {
		t.Fatalf("built stack after the first sync: %s/%s %s", s.Sync, s.Health, s.Error)
	}
	image1, container1 := runningImage(t, h, built, "app")
	tagged, err := h.docker.ImageInspect(context.Background(), built+"-app")
	if err != nil || tagged.ID != image1 {
		t.Fatalf("the image is tagged %s-app as compose tags it: %v (id %s, running %s)", built, err, tagged.ID, image1)
	}
	if env := strings.Join(h.env(container1), " "); !strings.Contains(env, "VERSION=v1") {
		t.Errorf("build arg VERSION did not reach the image: %s", env)
	}
	if n := buildCount(t, h, built); n != 1 {
		t.Fatalf("%d builds after the first deployment, want 1", n)
	}

	// diff, before anything is built, says a changed context recreates.
	changed := t.TempDir()
	for p, content := range buildStack(built, h.image, "v1") {
		if p == "app/site/index.txt" {
			content = "changed\n"
		}
		full := filepath.Join(changed, "stacks", built, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, err := stack.Load(context.Background(), changed, built, h.d.host)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := h.d.rec.Diff(context.Background(), st, "next")
	if err != nil || len(plan.Actions) != 1 || plan.Actions[0].Kind != sync.ActRecreate || plan.Actions[0].Service != "app" {
		t.Fatalf("diff of a changed build context: %v, %v", plan.Actions, err)
	}
	if n := buildCount(t, h, built); n != 1 {
		t.Fatalf("diff built something: %d builds", n)
	}

	// Another stack changes, and a file the builder never sees: no build.
	h.repo.Commit(t, "only the other stack", map[string]string{
		"stacks/" + other + "/compose.yaml": webStack(h.image, "2"),
		"stacks/" + built + "/app/notes.md": "still not sent\n",
	})
	h.mustReconcile()
	if n := buildCount(t, h, built); n != 1 {
		t.Errorf("%d builds after commits outside the build context, want 1", n)
	}
	if image, container := runningImage(t, h, built, "app"); image != image1 || container != container1 {
		t.Errorf("the built service changed without a change to its context: image %s→%s, container %s→%s", image1, image, container1, container)
	}

	// A file of the context changes: rebuilt and recreated.
	h.repo.Commit(t, "new site", map[string]string{"stacks/" + built + "/app/site/index.txt": "hello again\n"})
	h.mustReconcile()
	if n := buildCount(t, h, built); n != 2 {
		t.Errorf("%d builds after a change to the context, want 2", n)
	}
	image2, container2 := runningImage(t, h, built, "app")
	if image2 == image1 || container2 == container1 {
		t.Fatalf("a change to the context did not roll the service: image %s→%s, container %s→%s", image1, image2, container1, container2)
	}
	if s := h.stackStatus(built); s.Sync != "Synced" || s.Health != "Healthy" {
		t.Fatalf("built stack after the rebuild: %s/%s %s", s.Sync, s.Health, s.Error)
	}

	// A broken Dockerfile: the deployment fails with the builder's words,
	// nothing running is touched, and polls do not build it again.
	broken := buildStack(built, h.image, "v1")["app/Dockerfile"] + "COPY missing-file.txt /missing\n"
	h.repo.Commit(t, "broken Dockerfile", map[string]string{"stacks/" + built + "/app/Dockerfile": broken})
	if err := h.reconcile(); err == nil {
		t.Fatal("a revision whose build fails reconciled without error")
	}
	h.mustReconcile()
	if n := buildCount(t, h, built); n != 3 {
		t.Errorf("%d builds after a failed build and another poll, want 3 (one failed, not retried)", n)
	}
	if image, container := runningImage(t, h, built, "app"); image != image2 || container != container2 {
		t.Errorf("a failed build touched the running service: image %s→%s, container %s→%s", image2, image, container2, container)
	}
	s := h.stackStatus(built)
	if s.Sync != "Failed" || !strings.Contains(s.Error, "missing-file.txt") {
		t.Errorf("status of a failed build: %s %q", s.Sync, s.Error)
	}
	deps, err := h.d.History(context.Background(), built, 10)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(deps)
	if err != nil {
		t.Fatal(err)
	}
	if len(deps) == 0 || deps[0].Outcome != string(sync.OutcomeFailed) || !strings.Contains(deps[0].Error, "missing-file.txt") || !strings.Contains(deps[0].Error, "last lines of the builder") {
		t.Errorf("history --json does not carry the builder's error: %s", out)
	}
	if err := waitServing(t, h, built, "app"); err != nil {
		t.Errorf("the old container stopped serving: %v", err)
	}
}

// waitServing waits until the service's container answers its probe.
func waitServing(t *testing.T, h *harness, project, service string) error {
	_, id := runningImage(t, h, project, service)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		res, err := h.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err == nil && res.Container.State.Running && res.Container.State.Health != nil && res.Container.State.Health.Status == "healthy" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container %s not healthy: %v", id, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestPruneKeepsWhatARollbackNeeds: with images.prune_after set, the images
// gitopsd built for revisions no stack runs or may roll back to are
// removed; the image of the revision a failed deployment rolled back to
// stays, and so does every image gitopsd did not build.
func TestPruneKeepsWhatARollbackNeeds(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Images.PruneAfter = time.Millisecond
	name := testenv.UniqueName(t, "prune")
	cleanupBuilds(t, h, name)
	testenv.CleanupProjects(t, name)

	revision := func(site string, failHealth bool) string {
		files := buildStack(name, h.image, "v1")
		files["app/site/index.txt"] = site
		if failHealth {
			files["compose.yaml"] = strings.Replace(files["compose.yaml"], "    healthcheck:", "    environment:\n      FAIL_HEALTH: \"1\"\n    healthcheck:", 1)
		}
		h.repo.Commit(t, site, stackFiles(name, files))
		err := h.reconcile()
		image, _ := runningImage(t, h, name, "app")
		if failHealth != (err != nil) {
			t.Fatalf("revision %q (failing health: %v): reconcile error %v", site, failHealth, err)
		}
		return image
	}
	first := revision("one\n", false)
	good := revision("two\n", false)
	if rolledBackTo := revision("three\n", true); rolledBackTo != good {
		t.Fatalf("after the failed revision the service runs %s, want the good revision's %s", rolledBackTo, good)
	}
	builds, err := h.d.store.Builds(context.Background(), name)
	if err != nil || len(builds) != 3 {
		t.Fatalf("builds: %d, %v; want 3", len(builds), err)
	}
	failed := builds[0].ImageID

	// A build the database never recorded (a kill -9 between build and
	// record), and one another gitopsd made.
	ours := orphanBuild(t, h, h.d.rec.InstanceID)
	theirs := orphanBuild(t, h, "another-gitopsd")

	removed, err := h.d.pruneImages(context.Background())
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	if slices.Contains(removed, ours) {
		t.Errorf("an unrecorded build was removed before its grace period")
	}
	// Its grace period ran from the first prune: the next removes it.
	if err := waitFor(func() bool { return time.Since(adoptedAt(t, h, ours)) > h.cfg.Images.PruneAfter }); err != nil {
		t.Fatal(err)
	}
	again, err := h.d.pruneImages(context.Background())
	if err != nil {
		t.Fatalf("second prune: %v", err)
	}
	if !slices.Contains(again, ours) {
		t.Errorf("an unrecorded build of this gitopsd is still there after its grace period (removed: %v)", again)
	}
	if slices.Contains(append(removed, again...), theirs) {
		t.Errorf("prune removed an image another gitopsd built")
	}
	exists := func(id string) bool {
		_, ok, err := h.d.engine.LocalImage(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !exists(good) || slices.Contains(removed, good) {
		t.Errorf("the image of the revision the stack rolled back to was removed")
	}
	for what, id := range map[string]string{"the first revision's": first, "the failed revision's": failed} {
		if exists(id) || !slices.Contains(removed, id) {
			t.Errorf("%s image %s is still there (removed: %v)", what, id, removed)
		}
	}
	if !exists(h.image) {
		t.Errorf("prune removed %s, an image gitopsd did not build", h.image)
	}
}

// orphanBuild builds an image labelled as owner's build, outside any
// deployment, and removes it when the test ends if it is still there.
func orphanBuild(t *testing.T, h *harness, owner string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+h.image+"\nLABEL "+testenv.TestLabel+"=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := testenv.UniqueName(t, "orphan") + ":x"
	id, err := h.d.engine.Build(context.Background(), engine.BuildSpec{ContextDir: dir}, "orphan", owner, []string{tag}, 0)
	if err != nil {
		t.Fatalf("build an orphan image: %v", err)
	}
	t.Cleanup(func() {
		_, err := h.docker.ImageRemove(context.Background(), id, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove image %s: %v", id, err)
		}
	})
	return id
}

// adoptedAt is when the database first recorded an image.
func adoptedAt(t *testing.T, h *harness, id string) time.Time {
	t.Helper()
	images, err := h.d.store.Images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range images {
		if im.ID == id {
			return im.AddedAt
		}
	}
	t.Fatalf("image %s was not recorded", id)
	return time.Time{}
}

// waitFor polls cond for up to five seconds.
func waitFor(cond func() bool) error {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
