package daemon

// Benchmarks of what a roll costs the clients of a service (issue 3): how
// fast a revision that fails its gate gives the old container back, and
// how many requests fail while gitopsd, or `docker compose up -d` for
// comparison, replaces a service under load.
//
// One iteration deploys a stack, changes it and measures, which takes
// seconds, so the default -benchtime runs each benchmark once, and ns/op is
// the wall time of a whole iteration, setup included: read the metrics. Every
// iteration has its own gitopsd (repository, state) and project, and
// removes its containers before the next one starts. The metrics are means
// over the iterations; a measured failure (a request that failed, a
// container that never came back) is reported, never a benchmark failure.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

const (
	// minLoad and maxLoad bound how long the load client runs; see loadFor.
	minLoad = 7 * time.Second
	maxLoad = 60 * time.Second
	// iterationBudget is the most one iteration is expected to take on a
	// busy host (maxLoad, setup and teardown); see skipWithoutTime.
	iterationBudget = 2 * time.Minute
	// recoverWithin bounds the wait for the old container to serve again
	// after a failed gate; past it the iteration is reported unrecovered.
	recoverWithin = 30 * time.Second
	// pollEvery is the resolution of the failed-gate measurement.
	pollEvery = 20 * time.Millisecond
)

// BenchmarkFailedGateToOldServing measures how long the clients of a
// stop-first service (fixed host port) wait for the old revision after the
// new one failed its health gate: from Docker's verdict on the new
// container (health_status: unhealthy, or its death) to the first answer of
// v1 on the host port.
func BenchmarkFailedGateToOldServing(b *testing.B) {
	skipWithoutTime(b)
	env := newBenchEnv(b)
	var toServing, toOldStart, oldStart, deploy time.Duration
	recovered := 0
	for range b.N {
		s, ok := env.failedGate(b)
		if !ok {
			continue
		}
		recovered++
		toServing += s.served.Sub(s.failed)
		toOldStart += s.oldStarted.Sub(s.failed)
		oldStart += s.oldStarted.Sub(s.oldRenamed)
		deploy += s.served.Sub(s.began)
	}
	if recovered == 0 {
		b.Logf("no iteration got v1 back on its port: nothing to report")
		return
	}
	n := float64(recovered)
	b.ReportMetric(ms(toServing)/n, "ms-gate-fail-to-serving")
	b.ReportMetric(ms(toOldStart)/n, "ms-gate-fail-to-old-start")
	b.ReportMetric(ms(oldStart)/n, "ms-docker-start-old")
	b.ReportMetric(deploy.Seconds()/n, "s-failed-deploy")
	b.Logf("failed gate: v1 serves again %.0fms after the gate failed (old container started after %.0fms, of which Docker's start took %.0fms); commit to v1 serving %.2fs; %d/%d iterations recovered",
		ms(toServing)/n, ms(toOldStart)/n, ms(oldStart)/n, deploy.Seconds()/n, recovered, b.N)
}

// processStart approximates when go test's -timeout started counting.
var processStart = time.Now()

// skipWithoutTime skips a benchmark that might not finish before go test's
// -timeout (10m by default, and `make bench` sets none) panics the whole
// process: on a busy host these benchmarks take minutes, and running out of
// time is not a measurement.
func skipWithoutTime(b *testing.B) {
	b.Helper()
	f := flag.Lookup("test.timeout")
	if f == nil {
		return
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return
	}
	timeout, ok := g.Get().(time.Duration)
	if !ok || timeout <= 0 {
		return
	}
	if left := timeout - time.Since(processStart); left < time.Duration(b.N)*iterationBudget {
		b.Skipf("%s left before the %s test timeout; one iteration may need %s (raise -timeout)",
			left.Round(time.Second), timeout, iterationBudget)
	}
}

// gateSample is one failed deploy. Docker's event times and the poller's
// are read from the same host clock.
type gateSample struct {
	began      time.Time // before the commit of v2
	failed     time.Time // Docker's verdict on the new container
	oldRenamed time.Time // the old container got its name back, just before its start
	oldStarted time.Time // the old container started again
	served     time.Time // the first answer of v1 after failed
}

// failedGate deploys v1 on a fixed port, then a v2 that fails its health
// check, and times the way back to v1. ok is false when nothing could be
// measured (v2 passed, or v1 never answered again).
func (e *benchEnv) failedGate(b *testing.B) (s gateSample, ok bool) {
	ctx := context.Background()
	bd := e.newDaemon(b)
	defer bd.close(b)
	project := testenv.Project(b, "bench-gate")
	defer e.removeProject(b, project)
	port := testenv.FreePort(b)
	file := "stacks/" + project + "/compose.yaml"

	bd.repo.Commit(b, "v1", map[string]string{file: benchStack(e.image, "v1", 1, port, false)})
	if err := bd.reconcile(); err != nil {
		b.Fatalf("deploy v1 of %s: %v", project, err)
	}
	if got, err := waitServes(port, "v1", 10*time.Second); err != nil {
		b.Fatalf("v1 of %s does not serve on port %d: %q, %v", project, port, got, err)
	}
	cs, err := bd.d.engine.Containers(ctx, project)
	if err != nil || len(cs) != 1 {
		b.Fatalf("containers of %s after v1: %d, %v", project, len(cs), err)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := watchGate(wctx, e.docker, project, cs[0].ID)
	served := pollServes(wctx, port, "v1", watch.failedAt)

	s.began = time.Now()
	bd.repo.Commit(b, "v2, unhealthy", map[string]string{file: benchStack(e.image, "v2", 1, port, true)})
	err = bd.reconcile()
	switch {
	case err == nil:
		b.Logf("%s: v2 passed its gate though its health fails; nothing measured", project)
		return s, false
	case !health.IsFailure(err):
		b.Fatalf("roll %s to the unhealthy v2: %v", project, err)
	}
	select {
	case s.served = <-served:
	case <-time.After(recoverWithin):
		b.Logf("%s: v1 did not answer on port %d within %s of the reconcile's end (gate verdict seen: %t; events: %v)",
			project, port, recoverWithin, !watch.get().failed.IsZero(), watch.get().err)
		return s, false
	}
	seen := watch.get()
	s.failed, s.oldRenamed, s.oldStarted = seen.failed, seen.oldRenamed, seen.oldStarted
	if s.oldStarted.IsZero() {
		// The answer proves the old container runs; its start event may
		// lag behind the answer on the stream.
		s.oldStarted = s.served
	}
	if s.oldRenamed.IsZero() || s.oldRenamed.After(s.oldStarted) {
		s.oldRenamed = s.oldStarted
	}
	return s, true
}

// BenchmarkRollFailedRequests counts the requests that fail while gitopsd
// rolls a service from v1 to v2 under load from a client on the stack's
// network, which requests http://web:8080/ every 10ms on a new connection.
// start-first: 2 replicas, always one healthy under the name. stop-first:
// one replica on a fixed host port, so the service is down between the old
// container's stop and the new one's listen. Each is measured with the
// client dialling every address with a 500ms connect timeout (as nginx's
// proxy_next_upstream does) and with Go's plain dialer.
func BenchmarkRollFailedRequests(b *testing.B) {
	env := newBenchEnv(b)
	for _, order := range []struct {
		name      string
		fixedPort bool
	}{{"start-first", false}, {"stop-first", true}} {
		b.Run(order.name, func(b *testing.B) {
			for _, ct := range loadClients {
				b.Run(ct.name, func(b *testing.B) {
					skipWithoutTime(b)
					var sum rollSample
					for range b.N {
						sum.add(env.gitopsdRoll(b, order.fixedPort, ct.connectTimeout))
					}
					sum.report(b, "gitopsd "+order.name+", "+ct.name, "s-roll")
				})
			}
		})
	}
}

// BenchmarkComposeRollFailedRequests is the same change and load as
// BenchmarkRollFailedRequests applied with `docker compose up -d`, the
// baseline gitopsd's rolls are compared with.
func BenchmarkComposeRollFailedRequests(b *testing.B) {
	env := newBenchEnv(b)
	compose := testenv.ComposeV2(b)
	for _, svc := range []struct {
		name      string
		fixedPort bool
	}{{"2-replicas", false}, {"fixed-port", true}} {
		b.Run(svc.name, func(b *testing.B) {
			for _, ct := range loadClients {
				b.Run(ct.name, func(b *testing.B) {
					skipWithoutTime(b)
					var sum rollSample
					for range b.N {
						sum.add(env.composeRoll(b, compose, svc.fixedPort, ct.connectTimeout))
					}
					sum.report(b, "compose up -d, "+svc.name+", "+ct.name, "s-compose-up")
				})
			}
		})
	}
}

// loadClients are the two ways the load client connects.
var loadClients = []struct {
	name           string
	connectTimeout time.Duration
}{
	{"connect-timeout-500ms", 500 * time.Millisecond},
	{"plain-dialer", 0},
}

// loadFor is how long the load client runs: from before the change to well
// after it, so every request the change could disturb is counted. How long
// a change takes is not known in advance and grows with the host's load
// (3s to 28s measured on a host shared with other test runs), so it is
// derived from how long v1 took to come up the same way: a roll does about
// twice that work.
func loadFor(v1 time.Duration) time.Duration {
	return min(max(minLoad, 2*time.Second+3*v1), maxLoad)
}

// rollSample is one roll under load, or the sum of several.
type rollSample struct {
	n       int
	load    loadResult
	took    time.Duration
	overran int // changes that outlasted the load
}

func (s *rollSample) add(o rollSample) {
	s.n += o.n
	s.load.Requests += o.load.Requests
	s.load.Failures += o.load.Failures
	s.load.Fallbacks += o.load.Fallbacks
	s.took += o.took
	s.overran += o.overran
}

func (s rollSample) report(b *testing.B, what, tookUnit string) {
	if s.n == 0 {
		return
	}
	n := float64(s.n)
	b.ReportMetric(float64(s.load.Failures)/n, "failed-requests")
	b.ReportMetric(float64(s.load.Requests)/n, "requests")
	b.ReportMetric(float64(s.load.Fallbacks)/n, "fallbacks")
	b.ReportMetric(s.took.Seconds()/n, tookUnit)
	b.Logf("%s: %.1f of %.0f requests failed, %.1f connects moved to another address, %s %.2fs",
		what, float64(s.load.Failures)/n, float64(s.load.Requests)/n, float64(s.load.Fallbacks)/n, tookUnit, s.took.Seconds()/n)
	if s.overran > 0 {
		b.Logf("%s: %d of %d changes outlasted their load (see above); requests after it were not counted", what, s.overran, s.n)
	}
}

// gitopsdRoll deploys v1 with gitopsd, starts the load, and rolls to v2.
func (e *benchEnv) gitopsdRoll(b *testing.B, fixedPort bool, connectTimeout time.Duration) rollSample {
	ctx := context.Background()
	bd := e.newDaemon(b)
	defer bd.close(b)
	project := testenv.Project(b, "bench-roll")
	defer e.removeProject(b, project)
	stackFile := e.stackFile(b, fixedPort)
	file := "stacks/" + project + "/compose.yaml"

	bd.repo.Commit(b, "v1", map[string]string{file: stackFile("v1")})
	began := time.Now()
	// The reconcile returns once every replica passed its gate: v1 serves.
	if err := bd.reconcile(); err != nil {
		b.Fatalf("deploy v1 of %s: %v", project, err)
	}
	load := e.startLoad(b, project, loadFor(time.Since(began)), connectTimeout)
	defer load.remove(b)
	bd.repo.Commit(b, "v2", map[string]string{file: stackFile("v2")})
	began = time.Now()
	err := bd.reconcile()
	took := time.Since(began)
	if err != nil {
		// A healthy v2 failing its gate is a different scenario: its
		// requests would not measure a roll.
		b.Fatalf("roll %s to v2: %v", project, err)
	}
	return e.finishRoll(b, ctx, project, load, took)
}

// composeRoll is gitopsdRoll with `docker compose up -d` in gitopsd's place.
func (e *benchEnv) composeRoll(b *testing.B, compose []string, fixedPort bool, connectTimeout time.Duration) rollSample {
	ctx := context.Background()
	project := testenv.Project(b, "bench-compose")
	defer e.removeProject(b, project)
	stackFile := e.stackFile(b, fixedPort)
	file := filepath.Join(b.TempDir(), "compose.yaml")
	up := func(version string, flags ...string) error {
		if err := os.WriteFile(file, []byte(stackFile(version)), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", file, err)
		}
		argv := slices.Concat(compose, []string{"-p", project, "-f", file, "up", "-d"}, flags)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
		}
		return nil
	}

	// --wait, so the load starts against healthy replicas as it does after
	// gitopsd's gated deploy; the change itself is the plain `up -d`.
	began := time.Now()
	if err := up("v1", "--wait", "--wait-timeout", "60"); err != nil {
		b.Fatalf("deploy v1 of %s: %v", project, err)
	}
	load := e.startLoad(b, project, loadFor(time.Since(began)), connectTimeout)
	defer load.remove(b)
	began = time.Now()
	if err := up("v2"); err != nil {
		b.Fatalf("change %s to v2: %v", project, err)
	}
	return e.finishRoll(b, ctx, project, load, time.Since(began))
}

// stackFile gives the service of a roll benchmark: 2 replicas without a host
// port, or one on a fixed host port (new per iteration).
func (e *benchEnv) stackFile(b *testing.B, fixedPort bool) func(version string) string {
	if !fixedPort {
		return func(version string) string { return benchStack(e.image, version, 2, 0, false) }
	}
	port := testenv.FreePort(b)
	return func(version string) string { return benchStack(e.image, version, 1, port, false) }
}

// benchCheck is probeCheck with a 10s timeout: on a host busy enough that
// starting the probe process takes seconds, probeCheck's 2s fails healthy
// containers, which would fail the benchmark's setup rather than measure
// anything. The unhealthy verdict on FAIL_HEALTH comes as fast as with
// probeCheck, since its probes answer 503 at once.
const benchCheck = `{test: ["CMD", "/testapp", "probe"], interval: 300ms, timeout: 10s, retries: 2}`

// benchStack is the web service of these benchmarks: replicas of it,
// published on 127.0.0.1:port when port is not 0 (so gitopsd rolls it
// stop-first), unhealthy when failHealth.
func benchStack(image, version string, replicas, port int, failHealth bool) string {
	var extra strings.Builder
	if port != 0 {
		fmt.Fprintf(&extra, "\n    ports: [\"127.0.0.1:%d:8080\"]", port)
	}
	if replicas != 1 {
		fmt.Fprintf(&extra, "\n    deploy: {replicas: %d}", replicas)
	}
	env := fmt.Sprintf("VERSION: %q", version)
	if failHealth {
		env += `, FAIL_HEALTH: "1"`
	}
	return fmt.Sprintf(`services:
  web:
    image: %[1]s
    pull_policy: never%[2]s
    environment: {%[3]s}
    healthcheck: `+benchCheck+`
    labels: {%[4]s: "1"}
`+testenv.LabelledDefault(), image, extra.String(), env, testenv.TestLabel)
}

// finishRoll waits for the load's result and checks the change reached v2.
func (e *benchEnv) finishRoll(b *testing.B, ctx context.Context, project string, load *loadClient, took time.Duration) rollSample {
	lr, err := load.result(ctx)
	if err != nil {
		b.Fatalf("load on %s: %v", project, err)
	}
	if lr.Failures > 0 {
		// When and how they failed tells which step of the roll they met.
		b.Logf("%s: %d failed requests, first ones: %s", project, lr.Failures, strings.Join(lr.Errors, " | "))
	}
	s := rollSample{n: 1, load: lr, took: took}
	if took > load.d-time.Second {
		b.Logf("%s: the change took %s, the load ran for %s", project, took.Round(time.Millisecond), load.d)
		s.overran = 1
	}
	return s
}
