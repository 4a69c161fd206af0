package daemon

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// BenchmarkNoChangePoll: GITOPSD_BENCH_STACKS stacks (default 10) of 3
// services, served over smart HTTP, converged once; then
// GITOPSD_BENCH_NOOPS polls (default 15) that find the same head. It
// reports the CPU and wall time of one such poll (median; min and max are
// logged) and the Docker API calls it made. BenchmarkFleet measures the
// same beside a first convergence of many more stacks; this one is quick.
func BenchmarkNoChangePoll(b *testing.B) {
	stacks := benchInt(b, "GITOPSD_BENCH_STACKS", 10)
	noops := benchInt(b, "GITOPSD_BENCH_NOOPS", 15)
	testenv.Docker(b) // the tests' shared client talks to the engine, not to the proxy
	calls := testenv.CountDockerCalls(b)
	h := newHarness(b, func(r *testenv.GitRepo) string { return r.ServeHTTP(b, "") })
	prefix := testenv.UniqueName(b, "nochange")
	network := testenv.SharedNetwork(b, prefix+"-net")
	names := make([]string, stacks)
	files := map[string]string{}
	for i := range stacks {
		names[i] = fmt.Sprintf("%s-%03d", prefix, i)
		files["stacks/"+names[i]+"/compose.yaml"] = fleetStack(h.image, network, i)
	}
	testenv.CleanupProjects(b, names...)
	h.repo.Commit(b, "stacks", files)
	reconcile := func() {
		b.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		if err := h.d.reconcile(ctx, "poll", ""); err != nil {
			b.Fatalf("reconcile: %v", err)
		}
	}
	for b.Loop() {
		reconcile() // the first convergence, or nothing new
		var walls, cpus []time.Duration
		apiCalls := 0
		for range noops {
			before, cpu, at := calls.Snapshot(), cpuTime(), time.Now()
			reconcile()
			walls, cpus = append(walls, time.Since(at)), append(cpus, cpuTime()-cpu)
			for _, n := range testenv.Since(before, calls.Snapshot()) {
				apiCalls += n
			}
		}
		slices.Sort(walls)
		slices.Sort(cpus)
		b.ReportMetric(float64(medianOf(cpus).Microseconds())/1000, "cpu-ms-noop-poll")
		b.ReportMetric(float64(medianOf(walls).Microseconds())/1000, "ms-noop-poll")
		b.ReportMetric(float64(apiCalls)/float64(noops), "docker-calls-noop-poll")
		b.Logf("%d stacks, %d containers, %d no-change polls: CPU min %v median %v max %v; wall min %v median %v max %v; %.1f Docker calls each",
			stacks, 3*stacks, noops, cpus[0], medianOf(cpus), cpus[len(cpus)-1], walls[0], medianOf(walls), walls[len(walls)-1], float64(apiCalls)/float64(noops))
	}
}
