package daemon

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// sharedStack is the home-lab "VPN sidecar" shape: app runs in vpn's
// network and IPC namespaces (so it answers on the port vpn publishes) and
// mounts vpn's volumes read-only; linker reaches vpn through a legacy link
// alias that only the link makes resolvable, and links it again as an
// external container.
func sharedStack(project, image string, port int, vpnVersion string) string {
	return sharedStackWith(project, image, port, vpnVersion, false)
}

// sharedStackWith is sharedStack; failApp makes app fail its health gate.
func sharedStackWith(project, image string, port int, vpnVersion string, failApp bool) string {
	fail := ""
	if failApp {
		fail = `, FAIL_HEALTH: "1"`
	}
	return fmt.Sprintf(`services:
  vpn:
    image: %[1]s
    pull_policy: never
    ipc: shareable
    ports: ["127.0.0.1:%[2]d:8081"]
    environment: {VERSION: %[3]q, WRITE_FILE: "/data/owner=vpn-%[3]s"}
    volumes: ["data:/data"]
    healthcheck: `+probeCheck+`
    labels: {%[4]s: "1"}
  app:
    image: %[1]s
    pull_policy: never
    network_mode: service:vpn
    ipc: service:vpn
    volumes_from: ["vpn:ro"]
    environment: {VERSION: app, PORT: "8081"%[6]s}
    healthcheck: `+probeCheck+`
    labels: {%[4]s: "1"}
  linker:
    image: %[1]s
    pull_policy: never
    links: ["vpn:tunnel"]
    external_links: ["%[5]s-vpn-1:outside"]
    healthcheck: {test: ["CMD", "/testapp", "probe", "http://tunnel:8080/healthz"], interval: 300ms, timeout: 2s, retries: 2}
    labels: {%[4]s: "1"}
`+testenv.LabelledDefault("data"), image, port, vpnVersion, testenv.TestLabel, project, fail)
}

// Services that share another's container (network_mode and ipc
// service:, volumes_from, links) run as docker compose runs them; when the
// container they share is recreated they are recreated into the new one;
// and docker compose up on the same files changes nothing, before and
// after.
func TestServicesSharingAContainer(t *testing.T) {
	compose := testenv.ComposeV2(t)
	h := newHarness(t, nil)
	name := testenv.Project(t, "shared")
	port := testenv.FreePort(t)
	file := "stacks/" + name + "/compose.yaml"
	composeUp := func() {
		t.Helper()
		cmd := exec.Command(compose[0], append(compose[1:], "-p", name, "up", "-d")...)
		cmd.Dir = filepath.Join(h.cfg.StateDir, "live", "stacks", name)
		cmd.Env = composeEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker compose up: %v\n%s", err, out)
		}
	}
	check := func(vpnVersion string) map[string]string {
		t.Helper()
		ids := h.containers(name)
		if len(ids) != 3 || ids["vpn#1"] == "" || ids["app#1"] == "" || ids["linker#1"] == "" {
			t.Fatalf("containers %v", ids)
		}
		if st := h.stackStatus(name); st.Sync != "Synced" || st.Health != "Healthy" {
			t.Fatalf("stack %s/%s: %s", st.Sync, st.Health, st.Error)
		}
		// What vpn publishes is app's port: they share one network namespace.
		if got, err := serves(port); err != nil || got != "app" {
			t.Fatalf("vpn's port answers %q, %v; want app", got, err)
		}
		if got := getFile(t, port, "/data/owner"); got != "vpn-"+vpnVersion {
			t.Fatalf("app reads vpn's volume: %q; want vpn-%s", got, vpnVersion)
		}
		app := h.inspect(ids["app#1"])
		want := "container:" + ids["vpn#1"]
		if string(app.HostConfig.NetworkMode) != want || string(app.HostConfig.IpcMode) != want {
			t.Errorf("app's network and ipc modes %q %q, want %q", app.HostConfig.NetworkMode, app.HostConfig.IpcMode, want)
		}
		if !slices.Equal(app.HostConfig.VolumesFrom, []string{ids["vpn#1"] + ":ro"}) {
			t.Errorf("app's volumes_from %q", app.HostConfig.VolumesFrom)
		}
		// The links as docker compose writes them, external ones last.
		vpn := name + "-vpn-1"
		wantLinks := []string{vpn + ":tunnel", vpn + ":vpn-1", vpn + ":" + vpn, vpn + ":outside"}
		if ep := h.inspect(ids["linker#1"]).NetworkSettings.Networks[name+"_default"]; ep == nil || !slices.Equal(ep.Links, wantLinks) {
			t.Errorf("linker's links: %+v, want %q", ep, wantLinks)
		}
		return ids
	}

	h.repo.Commit(t, "a vpn with an app in its network", map[string]string{file: sharedStack(name, h.image, port, "1")})
	h.mustReconcile()
	first := check("1")
	// The link alias resolves (linker passed its gate probing tunnel:8080),
	// and vpn's volume is read-only in app, as volumes_from asked.
	if code := putFileStatus(t, port, "/data/x", "x"); code != http.StatusInternalServerError {
		t.Errorf("writing vpn's volume through app answered %d, want a failure (read-only)", code)
	}
	composeUp()
	if after := h.containers(name); !mapsEqual(first, after) {
		t.Fatalf("docker compose up changed gitopsd's containers: %v -> %v", first, after)
	}

	// vpn changes: it gets a new container, app is recreated into it, and
	// linker (its link names vpn by name) is restarted, not recreated.
	h.repo.Commit(t, "vpn v2", map[string]string{file: sharedStack(name, h.image, port, "2")})
	h.mustReconcile()
	second := check("2")
	if second["vpn#1"] == first["vpn#1"] || second["app#1"] == first["app#1"] {
		t.Fatalf("vpn and app must both be new: %v -> %v", first, second)
	}
	if second["linker#1"] != first["linker#1"] {
		t.Errorf("linker was recreated; a restart keeps its link: %v -> %v", first, second)
	}
	composeUp()
	if after := h.containers(name); !mapsEqual(second, after) {
		t.Fatalf("after the roll, docker compose up changed gitopsd's containers: %v -> %v", second, after)
	}

	// vpn removed by hand: the next reconcile brings it back and app with it.
	run(t, "docker", "rm", "-f", second["vpn#1"])
	h.mustSyncNow()
	third := check("2")
	if third["app#1"] == second["app#1"] {
		t.Fatalf("app still runs in the removed vpn's namespace: %v -> %v", second, third)
	}
}

// A revision that changes vpn and whose app then fails its gate is rolled
// back: the old app cannot be restarted (the namespace it ran in went with
// the old vpn), so a rollback deployment recreates vpn and app again, and
// app answers on vpn's port as before.
func TestSharedContainerRevisionRollsBack(t *testing.T) {
	h := newHarness(t, nil)
	name := testenv.Project(t, "sharedrb")
	port := testenv.FreePort(t)
	file := "stacks/" + name + "/compose.yaml"
	good := h.repo.Commit(t, "v1", map[string]string{file: sharedStack(name, h.image, port, "1")})
	h.mustReconcile()
	if got, err := waitServes(port, "app", 5*time.Second); err != nil {
		t.Fatalf("v1: vpn's port answers %q, %v", got, err)
	}

	bad := h.repo.Commit(t, "vpn v2, app unhealthy", map[string]string{file: sharedStackWith(name, h.image, port, "2", true)})
	if err := h.reconcile(); err == nil || !strings.Contains(err.Error(), "health gate") {
		t.Fatalf("reconcile of an unhealthy revision: %v", err)
	}
	if got, err := waitServes(port, "app", 5*time.Second); err != nil {
		t.Fatalf("after the rollback vpn's port answers %q, %v", got, err)
	}
	if got := getFile(t, port, "/data/owner"); got != "vpn-1" {
		t.Fatalf("after the rollback app reads %q from vpn's volume, want vpn-1 (vpn back at v1)", got)
	}
	ids := h.containers(name)
	if len(ids) != 3 {
		t.Fatalf("containers after the rollback: %v", ids)
	}
	if mode := h.inspect(ids["app#1"]).HostConfig.NetworkMode; string(mode) != "container:"+ids["vpn#1"] {
		t.Fatalf("app runs in %s, not in vpn %s", mode, ids["vpn#1"])
	}
	s := h.stackStatus(name)
	if s.Sync != "Failed" || s.Health != "Healthy" {
		t.Fatalf("status after the rollback: %s/%s %s", s.Sync, s.Health, s.Error)
	}
	// The failed deployment could not restart the old app; a rollback
	// deployment then returned the stack to v1.
	hist := h.deployments(name)
	if len(hist) != 3 || hist[0].Trigger != "rollback" || hist[0].Outcome != "succeeded" || hist[0].To != good ||
		hist[1].To != bad || hist[1].Outcome != "failed" {
		t.Fatalf("history: %+v", hist)
	}
}
