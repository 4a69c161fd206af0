package daemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// benchInt reads a size of a benchmark from the environment.
func benchInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// fleetStack is a stack of three services of the test image without
// healthchecks, gated by a 100 ms monitor: what is measured is gitopsd's
// and the engine's work, not a health check's interval. Its default
// network is the fleet's shared one: Docker's default address pools hold
// about 30 bridge networks, so a host with a hundred stacks shares
// networks (or widens default-address-pools), and so do gitopsd and
// compose here.
func fleetStack(image, network string, i int) string {
	var s string
	s = "services:\n"
	for _, svc := range []string{"web", "worker", "cache"} {
		s += fmt.Sprintf(`  %[1]s:
    image: %[2]s
    pull_policy: never
    environment: {ROLE: %[1]s, STACK: "%[3]d"}
    deploy: {update_config: {monitor: 100ms}}
    labels: {%[4]s: "1"}
`, svc, image, i, testenv.TestLabel)
	}
	return s + fmt.Sprintf("networks:\n  default:\n    name: %s\n    external: true\n", network)
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func medianOf(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkFleet: GITOPSD_BENCH_STACKS stacks (default 100) of 3 services,
// served over smart HTTP. It measures gitopsd's first convergence of them
// against `docker compose up -d` of each (the same files, other project
// names), then no-op reconciles (a poll finding nothing new): wall time,
// CPU, Docker API calls (which must all be reads) and bytes fetched from
// Git. Run it once (-benchtime=1x); the no-op reconcile repeats
// GITOPSD_BENCH_NOOPS times (default 5) and reports its median.
func BenchmarkFleet(b *testing.B) {
	stacks := benchInt(b, "GITOPSD_BENCH_STACKS", 100)
	noops := benchInt(b, "GITOPSD_BENCH_NOOPS", 5)
	compose := testenv.ComposeV2(b)
	calls := testenv.CountDockerCalls(b) // before the harness makes its engine client
	h := newHarness(b, func(r *testenv.GitRepo) string { return r.ServeHTTP(b, "") })
	prefix := testenv.UniqueName(b, "fleet")
	names, composeNames := make([]string, stacks), make([]string, stacks)
	network := testenv.SharedNetwork(b, prefix+"-net")
	files := map[string]string{}
	for i := range stacks {
		names[i], composeNames[i] = fmt.Sprintf("%s-%03d", prefix, i), fmt.Sprintf("%s-c%03d", prefix, i)
		files["stacks/"+names[i]+"/compose.yaml"] = fleetStack(h.image, network, i)
	}
	testenv.CleanupProjects(b, append(slices.Clone(names), composeNames...)...)
	h.repo.Commit(b, "fleet", files)

	// The harness's reconcile allows 2 minutes; a fleet's first one takes
	// longer (about a second per container on 2 cores).
	reconcile := func() {
		b.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		if err := h.d.reconcile(ctx, "poll", ""); err != nil {
			b.Fatalf("reconcile: %v", err)
		}
	}
	for b.Loop() {
		began := time.Now()
		reconcile()
		first := time.Since(began)
		if n := len(h.containers(names[stacks-1])); n != 3 {
			b.Fatalf("the last stack runs %d containers after the first convergence", n)
		}

		var walls, cpus []time.Duration
		var reads, writes, bytes int
		for range noops {
			callsBefore, servedBefore, cpuBefore, at := calls.Snapshot(), h.repo.ServedBytes(), cpuTime(), time.Now()
			reconcile()
			walls, cpus = append(walls, time.Since(at)), append(cpus, cpuTime()-cpuBefore)
			made := testenv.Since(callsBefore, calls.Snapshot())
			w := testenv.Writes(made)
			for _, n := range made {
				reads += n
			}
			for _, n := range w {
				writes += n
			}
			if len(w) > 0 {
				b.Errorf("a no-op reconcile wrote to the engine: %v", w)
			}
			bytes += int(h.repo.ServedBytes() - servedBefore)
		}
		reads -= writes

		// The same files, by docker compose, one `up -d` per stack.
		began = time.Now()
		for i, name := range names {
			cmd := exec.Command(compose[0], append(compose[1:], "-p", composeNames[i], "-f", filepath.Join(h.repo.Work, "stacks", name, "compose.yaml"), "up", "-d", "--quiet-pull")...)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("compose up of %s: %v\n%s", name, err, out)
			}
		}
		composeFirst := time.Since(began)

		testenv.BenchSamples(b, "ms-noop-reconcile", msEach(walls)...)
		testenv.BenchSamples(b, "cpu-ms-noop-reconcile", msEach(cpus)...)
		b.ReportMetric(first.Seconds(), "s-first-convergence")
		b.ReportMetric(composeFirst.Seconds(), "s-compose-first-convergence")
		b.ReportMetric(first.Seconds()/composeFirst.Seconds(), "first-convergence/compose")
		b.ReportMetric(float64(medianOf(walls).Microseconds())/1000, "ms-noop-reconcile")
		b.ReportMetric(float64(medianOf(cpus).Microseconds())/1000, "cpu-ms-noop-reconcile")
		b.ReportMetric(float64(reads)/float64(noops), "docker-reads-noop")
		b.ReportMetric(float64(writes)/float64(noops), "docker-writes-noop")
		b.ReportMetric(float64(bytes)/float64(noops), "git-bytes-noop")
		b.Logf("%d stacks, %d containers: first convergence %s (compose %s); no-op reconcile walls %v, CPU %v",
			stacks, 3*stacks, first.Round(time.Millisecond), composeFirst.Round(time.Millisecond), walls, cpus)
	}
}
