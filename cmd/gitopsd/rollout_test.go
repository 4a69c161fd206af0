package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/fleet"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// fleetHost is one host of a fleet on one machine: a gitopsd of its own,
// on a Docker engine of its own.
type fleetHost struct {
	name, sock, metrics string
	engine              *testenv.Engine
}

// status is the host's `status --json` of its one stack (ok false while it
// has none, or does not answer).
func (h *fleetHost) status(t *testing.T) (api.StackStatus, bool) {
	t.Helper()
	var st api.Status
	out, _, code := gitopsd(t, nil, "status", "--json", "--socket", h.sock)
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Stacks) != 1 {
		return api.StackStatus{}, false
	}
	return st.Stacks[0], true
}

// containers are the stack's containers on the host's engine: IDs and
// when each was created.
func (h *fleetHost) containers(t *testing.T, project string) map[string]time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := h.engine.Client.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", "com.docker.compose.project="+project)})
	if err != nil {
		t.Fatalf("%s: list containers: %v", h.name, err)
	}
	out := map[string]time.Time{}
	for _, c := range list.Items {
		out[c.ID] = time.Unix(c.Created, 0)
	}
	return out
}

func (h *fleetHost) history(t *testing.T, stack string) []api.Deployment {
	t.Helper()
	var ds []api.Deployment
	out, errOut, code := gitopsd(t, nil, "history", stack, "--json", "--socket", h.sock)
	if code != 0 || json.Unmarshal([]byte(out), &ds) != nil {
		t.Fatalf("%s: history: exit %d %s%s", h.name, code, out, errOut)
	}
	return ds
}

// scrape is the host's /metrics.
func (h *fleetHost) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + h.metrics + "/metrics")
	if err != nil {
		t.Fatalf("%s: scrape: %v", h.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestFleetRolloutThreeHosts is issue 21's fleet on one machine: three
// gitopsd, each on an engine of its own, one Git repository, one real
// Prometheus scraping the three, and a rollout of two waves: canary (the
// host labelled ring: canary), then rest, with a short soak and a gate of
// 100 % healthy.
//   - a good commit reaches the canary first, the rest only once
//     Prometheus shows the canary healthy on it for the soak; their
//     containers do not change before;
//   - a commit that fails its health gate is rolled back on the canary;
//     the rest never start it (same containers) and say they are held, and
//     why; a fixing commit flows through both waves;
//   - with Prometheus stopped the rest hold and say so; `sync --skip-wave`
//     applies on one of them; with on_error: proceed the other goes ahead;
//   - without a gate, the rest start a soak after the commit's time.
func TestFleetRolloutThreeHosts(t *testing.T) {
	const soak = 5 * time.Second
	hosts := make([]*fleetHost, 3)
	targets := make([]string, 3)
	for i := range hosts {
		hosts[i] = &fleetHost{name: fmt.Sprintf("edge-%02d", i), metrics: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
		targets[i] = hosts[i].metrics
	}
	promURL, stopProm := testenv.StartPrometheus(t, targets)
	canary, rest := hosts[0], hosts[1:]

	stack := testenv.UniqueName(t, "fleet")
	image := "gitopsd-test-fleet:v1"
	compose := func(version, fail string) string {
		return fmt.Sprintf("services:\n  app:\n    image: %s\n    pull_policy: never\n    environment: {VERSION: %q, FAIL_HEALTH: %q}\n"+
			"    healthcheck: {test: [CMD, /testapp, probe], interval: 300ms, timeout: 2s, retries: 2}\n    labels: {%s: \"1\"}\n"+
			"networks:\n  default:\n    labels: {%s: \"1\"}\n", image, version, fail, testenv.TestLabel, testenv.TestLabel)
	}
	fleetFile := func(onError string) string {
		return fmt.Sprintf("rollout:\n  waves:\n    - {name: canary, hosts: {labels: {ring: canary}}}\n    - {name: rest}\n  soak: %s\n"+
			"  gate:\n    prometheus: {url: %s}\n    healthy: 100%%\n    on_error: %s\n", soak, promURL, onError)
	}
	file := "stacks/" + stack + "/compose.yaml"
	repo := testenv.NewGitRepo(t)
	c1 := repo.Commit(t, "v1", map[string]string{"fleet.yaml": fleetFile("hold"), file: compose("v1", "0")})

	for i, h := range hosts {
		h.engine = testenv.StartEngine(t)
		h.engine.AppImage(t, image)
		state := t.TempDir()
		h.sock = filepath.Join(state, "gitopsd.sock")
		labels := "{ring: rest}"
		if i == 0 {
			labels = "{ring: canary}"
		}
		writeFiles(t, state, map[string]string{"gitopsd.yaml": fmt.Sprintf(
			"source:\n  url: %s\n  branch: main\n  interval: 5s\nhost:\n  name: %s\n  labels: %s\nstate_dir: %s\nsocket: %s\nmetrics: %q\n",
			repo.Bare, h.name, labels, state, h.sock, h.metrics)})
		startDaemon(t, filepath.Join(state, "gitopsd.yaml"), state, "DOCKER_HOST="+h.engine.Host)
	}
	// syncedAt waits until every host of hs runs rev, Synced and Healthy.
	syncedAt := func(rev string, hs ...*fleetHost) {
		t.Helper()
		for _, h := range hs {
			waitFor(t, 5*time.Minute, h.name+" synced and healthy at "+rev[:8], func() bool {
				s, ok := h.status(t)
				return ok && s.Revision == rev && s.Sync == "Synced" && s.Health == "Healthy"
			})
		}
	}
	// heldWhile waits until done, checking at every look that the rest
	// still run the containers they ran before and, until they move,
	// say they are held; it returns the holds they gave.
	heldWhile := func(before []map[string]time.Time, was string, done func() bool) []string {
		t.Helper()
		var holds []string
		waitFor(t, 5*time.Minute, "the rollout to move on", func() bool {
			for i, h := range rest {
				s, ok := h.status(t)
				if !ok || s.Revision != was || s.Hold == "" {
					continue // moved, or about to: done says whether that was right
				}
				holds = append(holds, s.Hold)
				got := h.containers(t, stack)
				// Held before and after the look: the containers seen are
				// those of a held stack.
				if s2, ok := h.status(t); ok && s2.Revision == was && s2.Hold != "" && !mapsEqual(got, before[i]) {
					t.Fatalf("%s changed its containers while held (%s): %v, was %v", h.name, s2.Hold, got, before[i])
				}
			}
			return done()
		})
		return holds
	}
	restContainers := func() []map[string]time.Time {
		return []map[string]time.Time{rest[0].containers(t, stack), rest[1].containers(t, stack)}
	}

	// The first revision goes through the waves too.
	syncedAt(c1, hosts...)
	// A wave Prometheus has not seen yet is one with no host running the
	// stack, which the gate skips: the next commit waits until the canary
	// has been scraped.
	healthySince(t, promURL, stack, c1, canary.name)

	// A good commit: canary first; the rest after the soak, once
	// Prometheus shows the canary healthy on it.
	before := restContainers()
	c2 := repo.Commit(t, "v2", map[string]string{file: compose("v2", "0")})
	holds := heldWhile(before, c1, func() bool {
		s, ok := rest[0].status(t)
		s2, ok2 := rest[1].status(t)
		return ok && ok2 && s.Revision == c2 && s2.Revision == c2
	})
	if !slices.ContainsFunc(holds, func(h string) bool { return strings.HasPrefix(h, "held by rollout: waiting: wave canary") }) {
		t.Errorf("the rest never said they waited for the canary: %q", holds)
	}
	syncedAt(c2, hosts...)
	since := healthySince(t, promURL, stack, c2, canary.name)
	for _, h := range rest {
		for id, created := range h.containers(t, stack) {
			// Created is in whole seconds: allow one.
			if created.Before(since.Add(soak - time.Second)) {
				t.Errorf("%s created %s at %s, before the canary had soaked healthy on %s (healthy since %s, soak %s)",
					h.name, id[:12], created, c2[:8], since, soak)
			}
		}
	}

	// A commit that fails its health gate: rolled back on the canary,
	// never started by the rest, which say why.
	before = restContainers()
	c3 := repo.Commit(t, "v3, unhealthy", map[string]string{file: compose("v3", "1")})
	holds = heldWhile(before, c2, func() bool {
		for _, h := range rest {
			s, ok := h.status(t)
			if !ok || s.Hold != fmt.Sprintf("held by rollout: %s rolled back on %s (canary)", c3[:12], canary.name) {
				return false
			}
			if s.Sync != "OutOfSync" || s.Target != c3 || s.Revision != c2 {
				t.Fatalf("%s held: sync %s target %s revision %s", h.name, s.Sync, s.Target, s.Revision)
			}
		}
		return true
	})
	// Halted is final for the revision: the rest poll on without asking
	// Prometheus again.
	queries := promQueries(t, promURL)
	for _, h := range rest {
		seen := map[string]bool{}
		waitFor(t, 5*time.Minute, h.name+" to poll twice more", func() bool {
			var st api.Status
			out, _, code := gitopsd(t, nil, "status", "--json", "--socket", h.sock)
			if code == 0 && json.Unmarshal([]byte(out), &st) == nil {
				seen[st.Source.FetchedAt] = true
			}
			return len(seen) >= 3
		})
	}
	if got := promQueries(t, promURL); got != queries {
		t.Errorf("the halted hosts asked Prometheus %v more queries, want none", got-queries)
	}
	if s, _ := canary.status(t); s.Revision != c2 || !strings.Contains(s.Error, "rolled back to") {
		t.Fatalf("the canary: revision %s, error %q; want c2 after a rollback", s.Revision, s.Error)
	}
	// The fleet as Prometheus sees it, during the halted rollout: every
	// host on c2, the rest held back from c3, and c3 wave by wave.
	fleetSees(t, promURL, stack, map[string]string{canary.name: c2, rest[0].name: c2, rest[1].name: c2}, func(rows []fleet.HostStack) bool {
		for _, r := range rows {
			if r.Host != canary.name && (r.Held == nil || r.Held.Revision != c3 || r.Held.Verdict != "halted" || r.Wave != "rest") {
				return false
			}
		}
		return true
	})
	var progress fleet.RolloutView
	if out, errOut, code := gitopsd(t, nil, "fleet", "rollout", stack, "--revision", c3, "--json", "--prometheus", promURL); code != 0 || json.Unmarshal([]byte(out), &progress) != nil {
		t.Fatalf("fleet rollout: exit %d\n%s%s", code, out, errOut)
	}
	if len(progress.Waves) != 2 || !slices.Equal(progress.Waves[0].RolledBack, []string{canary.name}) || len(progress.Waves[1].Held) != 2 {
		t.Errorf("fleet rollout of %s: %+v", c3[:8], progress)
	}
	for _, h := range rest {
		m := h.scrape(t)
		want := fmt.Sprintf(`gitopsd_rollout_held_info{host=%q,revision=%q,stack=%q,verdict="halted",wave="rest"} 1`, h.name, c3, stack)
		if !strings.Contains(m, want) {
			t.Errorf("%s metrics lack %s:\n%s", h.name, want, grepLines(m, "gitopsd_rollout_"))
		}
	}

	// A fixing commit flows through both waves.
	c4 := repo.Commit(t, "v4, fixed", map[string]string{file: compose("v4", "0")})
	syncedAt(c4, hosts...)
	fleetSees(t, promURL, stack, map[string]string{canary.name: c4, rest[0].name: c4, rest[1].name: c4}, func(rows []fleet.HostStack) bool {
		for _, r := range rows {
			if r.Held != nil || r.Sync != "Synced" || r.Health != "Healthy" {
				return false
			}
		}
		return true
	})
	for i, h := range rest {
		if got := h.containers(t, stack); mapsEqual(got, before[i]) {
			t.Errorf("%s runs the containers of %s after %s", h.name, c2[:8], c4[:8])
		}
		// The hold was recorded once per verdict (waiting, then halted),
		// not at every poll: no two records in a row say the same.
		var kinds []string
		for _, d := range h.history(t, stack) {
			if d.To != c3 {
				continue
			}
			if d.Outcome != "held" {
				t.Errorf("%s history: %s to the rolled-back %s", h.name, d.Outcome, c3[:8])
			}
			kind, _, _ := strings.Cut(strings.TrimPrefix(d.Error, "held by rollout: "), " ")
			if strings.Contains(d.Error, "rolled back on") {
				kind = "halted"
			}
			if len(kinds) > 0 && kinds[len(kinds)-1] == kind {
				t.Errorf("%s history records the same hold of %s twice in a row: %q", h.name, c3[:8], d.Error)
			}
			kinds = append(kinds, kind)
		}
		if !slices.Contains(kinds, "halted") {
			t.Errorf("%s history does not record the halt of %s: %v", h.name, c3[:8], kinds)
		}
	}

	// Prometheus stopped: the rest hold and say so; --skip-wave applies
	// on one; with on_error: proceed the other goes ahead.
	stopProm()
	before = restContainers()
	c5 := repo.Commit(t, "v5", map[string]string{file: compose("v5", "0")})
	syncedAt(c5, canary)
	heldWhile(before, c4, func() bool {
		for _, h := range rest {
			if s, ok := h.status(t); !ok || !strings.HasPrefix(s.Hold, "held by rollout: gate unreachable: ") || !strings.HasSuffix(s.Hold, "(on_error: hold)") {
				return false
			}
		}
		return true
	})
	if m := rest[0].scrape(t); !strings.Contains(m, fmt.Sprintf(`gitopsd_rollout_held_info{host=%q,revision=%q,stack=%q,verdict="gate_error",wave="rest"} 1`, rest[0].name, c5, stack)) {
		t.Errorf("%s metrics do not say the gate is unreachable:\n%s", rest[0].name, grepLines(m, "gitopsd_rollout_"))
	}
	// A plain sync leaves it held, and says how to skip the wave.
	if out, errOut, code := gitopsd(t, nil, "sync", stack, "--wait", "--socket", rest[1].sock); code != 1 ||
		!strings.Contains(errOut, "held by rollout: gate unreachable") || !strings.Contains(errOut, "--skip-wave") {
		t.Errorf("sync --wait of a stack held by the rollout: exit %d, want 1 naming the hold and --skip-wave\n%s%s", code, out, errOut)
	}
	if out, errOut, code := gitopsd(t, nil, "sync", stack, "--skip-wave", "--wait", "--socket", rest[1].sock); code != 0 {
		t.Fatalf("sync --skip-wave: exit %d\n%s%s", code, out, errOut)
	}
	syncedAt(c5, rest[1])
	if ds := rest[1].history(t, stack); len(ds) == 0 || ds[0].To != c5 || ds[0].Trigger != "skip_wave" || ds[0].Outcome != "succeeded" {
		t.Errorf("%s history after --skip-wave: %+v", rest[1].name, ds[0])
	}
	if s, _ := rest[0].status(t); s.Revision != c4 {
		t.Fatalf("%s left its hold without --skip-wave: %+v", rest[0].name, s)
	}
	c6 := repo.Commit(t, "v6, proceed without the gate", map[string]string{"fleet.yaml": fleetFile("proceed"), file: compose("v6", "0")})
	syncedAt(c6, hosts...)

	// Without a gate the waves are a time stagger: the rest start soak
	// after the commit's time, whatever the canary did.
	stagger := fmt.Sprintf("rollout:\n  waves:\n    - {name: canary, hosts: {labels: {ring: canary}}}\n    - {name: rest}\n  soak: %s\n", soak)
	c7 := repo.Commit(t, "v7, staggered", map[string]string{"fleet.yaml": stagger, file: compose("v7", "0")})
	var committed int64
	if _, err := fmt.Sscan(repo.Git(t, "log", "-1", "--format=%ct", c7), &committed); err != nil {
		t.Fatal(err)
	}
	syncedAt(c7, hosts...)
	for _, h := range rest {
		for id, created := range h.containers(t, stack) {
			if created.Before(time.Unix(committed, 0).Add(soak - time.Second)) {
				t.Errorf("%s created %s at %s, before the stagger's %s after the commit (%s)", h.name, id[:12], created, soak, time.Unix(committed, 0))
			}
		}
	}
}

// fleetSees waits until `gitopsd fleet status --json` lists, for stack,
// exactly the hosts of revs, reporting, each on its revision, and ok
// holds for their rows.
func fleetSees(t *testing.T, promURL, stack string, revs map[string]string, ok func([]fleet.HostStack) bool) {
	t.Helper()
	var last string
	waitFor(t, 2*time.Minute, "fleet status to show "+fmt.Sprint(revs), func() bool {
		out, errOut, code := gitopsd(t, nil, "fleet", "status", "--json", "--prometheus", promURL)
		last = out + errOut
		var view fleet.Status
		if code != 0 || json.Unmarshal([]byte(out), &view) != nil {
			return false
		}
		var rows []fleet.HostStack
		for _, r := range view.Rows {
			if r.Stack == stack {
				rows = append(rows, r)
			}
		}
		if len(rows) != len(revs) {
			return false
		}
		for _, r := range rows {
			if !r.Reporting || revs[r.Host] != r.Revision {
				return false
			}
		}
		return ok(rows)
	})
	if t.Failed() {
		t.Logf("last fleet status: %s", last)
	}
}

// healthySince asks Prometheus since when host has run rev of stack
// healthy, as the host exports it (the earliest time it said).
func healthySince(t *testing.T, promURL, stack, rev, host string) time.Time {
	t.Helper()
	c := &fleet.PromClient{URL: promURL, Timeout: 10 * time.Second}
	var at time.Time
	waitFor(t, time.Minute, "Prometheus to show "+host+" healthy on "+rev[:8], func() bool {
		// The earliest value seen: a health check that flapped under load
		// restarts the time, but the gate decided on one no earlier.
		s, err := c.Query(context.Background(), fmt.Sprintf(`min_over_time(%s{stack=%q,revision=%q,host=%q}[1h])`, fleet.MetricHealthySince, stack, rev, host))
		if err != nil || len(s) != 1 {
			return false
		}
		sec := int64(s[0].Value)
		at = time.Unix(sec, int64((s[0].Value-float64(sec))*1e9))
		return true
	})
	return at
}

// promQueries is how many instant queries Prometheus has answered.
func promQueries(t *testing.T, promURL string) float64 {
	t.Helper()
	resp, err := http.Get(promURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var n float64
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "prometheus_http_requests_total{") && strings.Contains(l, `handler="/api/v1/query"`) {
			var v float64
			if _, err := fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v); err == nil {
				n += v
			}
		}
	}
	return n
}

// mapsEqual says whether a and b hold the same containers (by ID).
func mapsEqual(a, b map[string]time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// grepLines keeps the lines of s that start with prefix.
func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
