package daemon

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// BenchmarkCommitToRunning: a one-service change, from the push to the
// start of the new version's container (Docker's start event), three ways,
// GITOPSD_BENCH_RUNS times each (default 5): pushed then announced by a
// signed webhook (timed from the webhook), pushed to a local repository
// that gitopsd watches (timed from the end of the push), and applied by
// `docker compose up -d` on the same file (timed from the command's start).
// The ratios to compose are gitopsd's cost over the Docker calls both make.
// Beside them, the engine's floor: a bare ContainerCreate and
// ContainerStart of the same image (timed from the create call), which no
// path to a new container can go below.
// Run it once (-benchtime=1x).
func BenchmarkCommitToRunning(b *testing.B) {
	runs := benchInt(b, "GITOPSD_BENCH_RUNS", 5)
	compose := testenv.ComposeV2(b)
	for b.Loop() {
		hook := timeHook(b, runs)
		watch := timeWatch(b, runs)
		composed := timeCompose(b, compose, runs)
		floor := timeEngine(b, runs)
		testenv.BenchSamples(b, "ms-webhook-to-start", msEach(hook)...)
		testenv.BenchSamples(b, "ms-push-to-start-watch", msEach(watch)...)
		testenv.BenchSamples(b, "ms-compose-up-to-start", msEach(composed)...)
		testenv.BenchSamples(b, "ms-engine-create-start", msEach(floor)...)
		b.ReportMetric(ms(medianOf(hook)), "ms-webhook-to-start")
		b.ReportMetric(ms(medianOf(watch)), "ms-push-to-start-watch")
		b.ReportMetric(ms(medianOf(composed)), "ms-compose-up-to-start")
		b.ReportMetric(ms(medianOf(floor)), "ms-engine-create-start")
		b.ReportMetric(ms(medianOf(hook))/ms(medianOf(composed)), "webhook/compose")
		b.ReportMetric(ms(medianOf(watch))/ms(medianOf(composed)), "watch/compose")
		b.Logf("webhook %v; local watch %v; compose up -d %v; engine create+start %v", hook, watch, composed, floor)
	}
}

// msEach is each duration in milliseconds, for testenv.BenchSamples.
func msEach(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return out
}

// oneService is the change measured: one service, a new VERSION.
func oneService(image, version string) string {
	return fmt.Sprintf(`services:
  web:
    image: %[1]s
    pull_policy: never
    environment: {VERSION: %[2]q}
    deploy: {update_config: {monitor: 100ms}}
    labels: {%[3]s: "1"}
`+testenv.LabelledDefault(), image, version, testenv.TestLabel)
}

func timeHook(b *testing.B, runs int) []time.Duration {
	h := newHarness(b, nil)
	name := testenv.Project(b, "hook")
	file := "stacks/" + name + "/compose.yaml"
	h.repo.Commit(b, "v0", map[string]string{file: oneService(h.image, "v0")})
	addr := h.listenWebhook("s3cret")
	c := runDaemon(b, h)
	ctx := context.Background()
	if err := c.Sync(ctx, "", false, true); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	for i := 1; i <= runs; i++ {
		v := fmt.Sprintf("v%d", i)
		h.repo.Commit(b, v, map[string]string{file: oneService(h.image, v)})
		took = append(took, h.timeWebhook(name, v, func() {
			if code := postPush(b, addr, "s3cret"); code != http.StatusAccepted {
				b.Fatalf("webhook: %d", code)
			}
		}))
		if err := c.Sync(ctx, "", false, true); err != nil { // the roll done
			b.Fatal(err)
		}
	}
	return took
}

func timeWatch(b *testing.B, runs int) []time.Duration {
	h := newHarness(b, nil)
	h.watch = true
	name := testenv.Project(b, "watch")
	file := "stacks/" + name + "/compose.yaml"
	h.repo.Commit(b, "v0", map[string]string{file: oneService(h.image, "v0")})
	c := runDaemon(b, h)
	ctx := context.Background()
	if err := c.Sync(ctx, "", false, true); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	for i := 1; i <= runs; i++ {
		v := fmt.Sprintf("v%d", i)
		// Commit then push: the clock starts when the push has landed.
		var pushed time.Time
		started := h.startOf(name, v, func() {
			h.repo.Commit(b, v, map[string]string{file: oneService(h.image, v)})
			pushed = time.Now()
		})
		took = append(took, started.Sub(pushed))
		if err := c.Sync(ctx, "", false, true); err != nil {
			b.Fatal(err)
		}
	}
	return took
}

func timeCompose(b *testing.B, compose []string, runs int) []time.Duration {
	h := newHarness(b, nil)
	project := testenv.Project(b, "compose")
	dir := b.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	up := func(v string) {
		if err := os.WriteFile(file, []byte(oneService(h.image, v)), 0o644); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(compose[0], append(compose[1:], "-p", project, "-f", file, "up", "-d")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("compose up: %v\n%s", err, out)
		}
	}
	up("v0")
	var took []time.Duration
	for i := 1; i <= runs; i++ {
		v := fmt.Sprintf("v%d", i)
		took = append(took, h.timeWebhook(project, v, func() { up(v) }))
	}
	return took
}

// timeEngine is the engine's own floor: a container of the same image and
// environment created and started by two bare API calls, in a network of
// its project as compose and gitopsd make one, timed from the create call
// to Docker's start event.
func timeEngine(b *testing.B, runs int) []time.Duration {
	h := newHarness(b, nil)
	project := testenv.Project(b, "engine")
	ctx := context.Background()
	labels := map[string]string{testenv.TestLabel: "1", "com.docker.compose.project": project}
	if _, err := h.docker.NetworkCreate(ctx, project+"_default", client.NetworkCreateOptions{Driver: "bridge", Labels: labels}); err != nil {
		b.Fatalf("create network: %v", err)
	}
	var took []time.Duration
	for i := 1; i <= runs; i++ {
		v := fmt.Sprintf("v%d", i)
		took = append(took, h.timeWebhook(project, v, func() {
			created, err := h.docker.ContainerCreate(ctx, client.ContainerCreateOptions{
				Name:       fmt.Sprintf("%s-web-%d", project, i),
				Config:     &container.Config{Image: h.image, Env: []string{"VERSION=" + v}, Labels: labels},
				HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(project + "_default")},
			})
			if err != nil {
				b.Fatalf("create: %v", err)
			}
			if _, err := h.docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
				b.Fatalf("start: %v", err)
			}
		}))
	}
	return took
}
