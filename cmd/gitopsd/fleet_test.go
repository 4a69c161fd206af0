package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/fleet"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestFleetStatusTwoHosts: two real daemons (hosts edge-a and edge-b, own
// state_dirs, one stack each from one repository) scraped by a real
// Prometheus: `fleet status --json` lists both hosts with their stack's
// revision, before and after a commit; once edge-b's daemon stops it is
// listed as not reporting, with no stale stack. The table prints the
// same rows.
func TestFleetStatusTwoHosts(t *testing.T) {
	testenv.Docker(t)
	began := time.Now()
	image := testenv.AppImage(t, "gitopsd-test-cli:"+testenv.UniqueName(t, "v"))
	repo := testenv.NewGitRepo(t)
	a, b := testenv.Project(t, "fleeta"), testenv.Project(t, "fleetb")
	files := func(version string) map[string]string {
		return map[string]string{
			"stacks/" + a + "/compose.yaml": cliStack(image, version, "targets: {hosts: [edge-a]}"),
			"stacks/" + b + "/compose.yaml": cliStack(image, version, "targets: {hosts: [edge-b]}"),
		}
	}
	first := repo.Commit(t, "v1", files("v1"))

	type host struct{ name, sock, metrics string }
	var hosts []host
	daemons := map[string]func(){}
	for _, name := range []string{"edge-a", "edge-b"} {
		state := t.TempDir()
		h := host{name: name, sock: filepath.Join(state, "gitopsd.sock"), metrics: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
		cfgPath := filepath.Join(state, "gitopsd.yaml")
		writeFiles(t, state, map[string]string{"gitopsd.yaml": fmt.Sprintf(
			"source:\n  url: %s\n  branch: main\n  interval: 1h\nhost:\n  name: %s\nstate_dir: %s\nsocket: %s\nmetrics: %q\n",
			repo.Bare, name, state, h.sock, h.metrics)})
		cmd := startDaemon(t, cfgPath, state)
		daemons[name] = func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }
		waitSynced(t, h.sock, first)
		hosts = append(hosts, h)
	}
	t.Logf("%s: both daemons synced", time.Since(began).Round(time.Second))
	prom, _ := testenv.StartPrometheus(t, []string{hosts[0].metrics, hosts[1].metrics})

	status := func() fleet.Status {
		out, errOut, code := gitopsd(t, nil, "fleet", "status", "--json", "--prometheus", prom)
		if code != 0 {
			t.Fatalf("fleet status: exit %d\n%s", code, errOut)
		}
		var st fleet.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("fleet status --json: %v\n%s", err, out)
		}
		return st
	}
	// rows maps host to "stack revision sync health", or "not reporting".
	rows := func(st fleet.Status) map[string]string {
		m := map[string]string{}
		for _, r := range st.Rows {
			if !r.Reporting {
				m[r.Host] = "not reporting"
				continue
			}
			m[r.Host] += strings.TrimSpace(fmt.Sprintf("%s %s %s %s", r.Stack, r.Revision, r.Sync, r.Health))
		}
		return m
	}
	want := func(rev string) map[string]string {
		return map[string]string{"edge-a": a + " " + rev + " Synced Healthy", "edge-b": b + " " + rev + " Synced Healthy"}
	}
	var last map[string]string
	waitUntil := func(what string, w map[string]string) {
		t.Helper()
		waitFor(t, time.Minute, what, func() bool {
			last = rows(status())
			return fmt.Sprint(last) == fmt.Sprint(w)
		})
	}
	defer func() {
		if t.Failed() {
			t.Logf("last fleet status: %v", last)
		}
	}()
	waitUntil("both hosts on the first commit", want(first))
	t.Logf("%s: fleet status shows the first commit", time.Since(began).Round(time.Second))

	second := repo.Commit(t, "v2", files("v2"))
	for _, h := range hosts {
		if out, errOut, code := gitopsd(t, nil, "sync", "--wait", "--socket", h.sock); code != 0 {
			t.Fatalf("sync %s: exit %d\n%s%s", h.name, code, out, errOut)
		}
	}
	t.Logf("%s: both synced the second commit", time.Since(began).Round(time.Second))
	waitUntil("both hosts on the second commit", want(second))
	t.Logf("%s: fleet status shows it", time.Since(began).Round(time.Second))

	out, errOut, code := gitopsd(t, nil, "fleet", "status", "--prometheus", prom)
	if code != 0 || !strings.Contains(out, "HOST") || !strings.Contains(out, "edge-a  "+a) || !strings.Contains(out, second[:12]) {
		t.Errorf("fleet status table: exit %d\n%s%s", code, out, errOut)
	}

	daemons["edge-b"]()
	w := want(second)
	w["edge-b"] = "not reporting"
	waitUntil("edge-b not reporting", w)
}

// TestFleetPrometheusFromConfig: without --prometheus the fleet commands
// ask fleet.prometheus of the config; with neither, they exit 2 saying
// what to pass. An unreachable Prometheus is exit 1, naming it.
func TestFleetPrometheusFromConfig(t *testing.T) {
	dir := t.TempDir()
	head := "source: {url: /srv/fleet}\nhost: {name: edge-01}\n"
	writeFiles(t, dir, map[string]string{"none.yaml": head, "set.yaml": head + "fleet: {prometheus: \"http://127.0.0.1:1\"}\n"})
	for _, argv := range [][]string{{"fleet", "status"}, {"fleet", "rollout", "web"}} {
		_, errOut, code := gitopsd(t, nil, append(argv, "--config", filepath.Join(dir, "none.yaml"))...)
		if code != 2 || !strings.Contains(errOut, "pass --prometheus URL or set fleet.prometheus") {
			t.Errorf("%v without a Prometheus: exit %d\n%s", argv, code, errOut)
		}
		_, errOut, code = gitopsd(t, nil, append(argv, "--config", filepath.Join(dir, "set.yaml"))...)
		if code != 1 || !strings.Contains(errOut, "http://127.0.0.1:1") {
			t.Errorf("%v with fleet.prometheus unreachable: exit %d\n%s", argv, code, errOut)
		}
	}
}
