package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// portStack is one web service on a fixed host port (so it is rolled
// stop-first), healthchecked; failHealth makes the new version unhealthy.
func portStack(image string, port int, version string, failHealth bool) string {
	fail := ""
	if failHealth {
		fail = "\n      FAIL_HEALTH: \"1\""
	}
	return fmt.Sprintf(`services:
  web:
    image: %s
    pull_policy: never
    ports: ["127.0.0.1:%d:8080"]
    environment:
      VERSION: %q%s
    healthcheck: `+probeCheck+`
    labels: {%s: "1"}
networks:
  default:
    labels: {%s: "1"}
`, image, port, version, fail, testenv.TestLabel, testenv.TestLabel)
}

// probeCheck is the test app's fast healthcheck, in flow style.
const probeCheck = testenv.ProbeCheck

// serves returns what the stack's port answers at /, or the error.
func serves(port int) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

func TestUnhealthyRevisionRestoresTheOldContainer(t *testing.T) {
	h := newHarness(t, nil)
	a := testenv.Project(t, "gate")
	port := testenv.FreePort(t)
	file := "stacks/" + a + "/compose.yaml"

	h.repo.Commit(t, "v1", map[string]string{file: portStack(h.image, port, "v1", false)})
	h.mustReconcile()
	before := h.containers(a)["web#1"]
	if got, err := waitServes(port, "v1", 5*time.Second); err != nil {
		t.Fatalf("v1 serves %q, %v", got, err)
	}

	bad := h.repo.Commit(t, "v2, unhealthy", map[string]string{file: portStack(h.image, port, "v2", true)})
	err := h.reconcile()
	if err == nil || !strings.Contains(err.Error(), "health gate") {
		t.Fatalf("reconcile of an unhealthy revision: %v", err)
	}
	if after := h.containers(a); len(after) != 1 || after["web#1"] != before {
		t.Fatalf("want the original container %s back alone, got %v", before, after)
	}
	if got, err := waitServes(port, "v1", 5*time.Second); err != nil {
		t.Fatalf("the restored container does not serve v1 within 5s: last answer %q, %v", got, err)
	}
	s := h.stackStatus(a)
	if s.Sync != "Failed" || !strings.Contains(s.Error, "unhealthy") {
		t.Fatalf("status %+v", s)
	}
	hist, err := h.d.History(context.Background(), a, 0)
	if err != nil || len(hist) != 2 || hist[0].To != bad || hist[0].Outcome != "rolled_back" {
		t.Fatalf("history %+v, %v", hist, err)
	}

	// The next polls leave the failed revision alone.
	h.mustReconcile()
	if hist2, _ := h.d.History(context.Background(), a, 0); len(hist2) != len(hist) {
		t.Fatalf("the failed revision was retried: %+v", hist2[0])
	}
	if after := h.containers(a); after["web#1"] != before {
		t.Fatal("a poll touched the restored container")
	}

	// A later good commit deploys.
	h.repo.Commit(t, "v3", map[string]string{file: portStack(h.image, port, "v3", false)})
	h.mustReconcile()
	if got, err := waitServes(port, "v3", 5*time.Second); err != nil {
		t.Fatalf("v3 serves %q, %v", got, err)
	}
	if s := h.stackStatus(a); s.Sync != "Synced" || s.Error != "" {
		t.Fatalf("after a good commit: %+v", s)
	}
}

// waitServes waits until the port answers want, or the time is up.
func waitServes(port int, want string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for {
		got, err := serves(port)
		if err == nil && got == want {
			return got, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("answers %q", got)
			}
			return got, err
		}
		time.Sleep(50 * time.Millisecond) // polling a port: there is no event to wait for
	}
}

// pairStack has a worker rolled before web (web depends on it); failWeb
// makes the new web unhealthy, after the worker was already rolled.
func pairStack(image, version string, failWeb bool) string {
	fail := ""
	if failWeb {
		fail = ", FAIL_HEALTH: \"1\""
	}
	return fmt.Sprintf(`services:
  worker:
    image: %[1]s
    pull_policy: never
    environment: {VERSION: %[2]q}
    deploy: {update_config: {monitor: 1s}}
    labels: {%[4]s: "1"}
  web:
    image: %[1]s
    pull_policy: never
    depends_on: [worker]
    environment: {VERSION: %[2]q%[3]s}
    healthcheck: `+probeCheck+`
    labels: {%[4]s: "1"}
`+testenv.LabelledDefault(), image, version, fail, testenv.TestLabel)
}

func TestFailedGateRollsTheWholeStackBack(t *testing.T) {
	h := newHarness(t, nil)
	a := testenv.Project(t, "back")
	file := "stacks/" + a + "/compose.yaml"
	good := h.repo.Commit(t, "v1", map[string]string{file: pairStack(h.image, "v1", false)})
	h.mustReconcile()

	bad := h.repo.Commit(t, "v2, web unhealthy", map[string]string{file: pairStack(h.image, "v2", true)})
	if err := h.reconcile(); err == nil {
		t.Fatal("an unhealthy revision reconciled without error")
	}
	ids := h.containers(a)
	for _, svc := range []string{"worker#1", "web#1"} {
		if env := h.env(ids[svc]); !slices.Contains(env, "VERSION=v1") {
			t.Fatalf("%s runs %v after the rollback; want VERSION=v1", svc, env)
		}
	}
	s := h.stackStatus(a)
	if s.Sync != "Failed" || !strings.Contains(s.Error, "rolled back to "+good[:12]) || s.Revision != good {
		t.Fatalf("status after rollback: %+v", s)
	}
	hist, _ := h.d.History(context.Background(), a, 0)
	if len(hist) < 3 || hist[0].Trigger != "rollback" || hist[0].To != good || hist[1].To != bad {
		t.Fatalf("history: %+v", hist)
	}

	// Polls leave it on v1, with v1's files in the live view.
	h.mustReconcile()
	if after := h.containers(a); !mapsEqual(ids, after) {
		t.Fatalf("a poll touched the rolled-back stack: %v -> %v", ids, after)
	}
	target, err := os.Readlink(filepath.Join(h.cfg.StateDir, "live", "stacks", a))
	if err != nil || !strings.Contains(target, good) {
		t.Fatalf("live view of the held stack points at %s (%v), want the checkout of %s", target, err, good)
	}
}

func TestOperatorRollbackPinsAndUnpinFollows(t *testing.T) {
	h := newHarness(t, nil)
	a := testenv.Project(t, "pin")
	file := "stacks/" + a + "/compose.yaml"
	ctx := context.Background()
	v1 := h.repo.Commit(t, "v1", map[string]string{file: pairStack(h.image, "v1", false)})
	h.mustReconcile()
	v2 := h.repo.Commit(t, "v2", map[string]string{file: pairStack(h.image, "v2", false)})
	h.mustReconcile()

	// Back to the revision v2 was deployed over, pinned there.
	if err := h.d.rollbackStack(ctx, a, ""); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	webEnv := func() []string { return h.env(h.containers(a)["web#1"]) }
	if !slices.Contains(webEnv(), "VERSION=v1") {
		t.Fatalf("after rollback web runs %v", webEnv())
	}
	s := h.stackStatus(a)
	if !s.Pinned || s.Held || s.Revision != v1 || s.Sync != "Synced" || s.Head != v2 || s.BranchAhead != 1 {
		t.Fatalf("status after rollback: %+v", s)
	}
	if hist, _ := h.d.History(ctx, a, 1); len(hist) != 1 || hist[0].Trigger != "rollback" || hist[0].From != v2 || hist[0].To != v1 {
		t.Fatalf("history after rollback: %+v", hist)
	}

	// A pinned stack ignores new commits, and status counts them.
	v3 := h.repo.Commit(t, "v3", map[string]string{file: pairStack(h.image, "v3", false)})
	h.mustReconcile()
	if !slices.Contains(webEnv(), "VERSION=v1") || !h.stackStatus(a).Pinned {
		t.Fatalf("a pinned stack followed the branch: %v", webEnv())
	}
	if s := h.stackStatus(a); s.Head != v3 || s.BranchAhead != 2 {
		t.Fatalf("status of a stack pinned two commits behind: %+v", s)
	}

	// --to names any known revision; unpin follows the branch again.
	if err := h.d.rollbackStack(ctx, a, v2[:8]); err != nil {
		t.Fatalf("rollback --to: %v", err)
	}
	if !slices.Contains(webEnv(), "VERSION=v2") {
		t.Fatalf("after rollback --to v2 web runs %v", webEnv())
	}
	if s := h.stackStatus(a); !s.Pinned || s.Revision != v2 || s.Head != v3 || s.BranchAhead != 1 {
		t.Fatalf("status pinned one commit behind: %+v", s)
	}
	if err := h.d.unpinStack(ctx, a); err != nil {
		t.Fatalf("unpin: %v", err)
	}
	if s := h.stackStatus(a); s.Pinned || s.Head != "" || s.BranchAhead != 0 || !slices.Contains(webEnv(), "VERSION=v3") {
		t.Fatalf("after unpin: %+v, web runs %v", s, webEnv())
	}
	if err := h.d.rollbackStack(ctx, "no-such-stack", ""); err == nil {
		t.Fatal("rollback of an unknown stack did not fail")
	}
}
