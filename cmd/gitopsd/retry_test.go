package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestSyncRetryStatusAndHistory: after a revision fails its gate, a plain
// `sync` leaves it held, `status` says so and how far the branch is ahead,
// `sync --retry` tries it again, and `history` lists the steps.
func TestSyncRetryStatusAndHistory(t *testing.T) {
	testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-cli:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "cliretry")
	stackFile := badRevisionStack(t, image)
	file := "stacks/" + name + "/compose.yaml"
	repo := testenv.NewGitRepo(t)
	good := repo.Commit(t, "v1", map[string]string{file: stackFile("v1", "0")})
	// Served over HTTP: a local repository would be watched, and the watch
	// would roll the unhealthy commit before this test's own sync asks.
	state, sock, cfgPath := daemonState(t, repo.ServeHTTP(t, ""))
	startDaemon(t, cfgPath, state)
	waitSynced(t, sock, good)

	bad := repo.Commit(t, "v2, unhealthy", map[string]string{file: stackFile("v2", "1")})
	if out, errOut, code := gitopsd(t, nil, "sync", "--wait", "--socket", sock); code != 1 || !strings.Contains(errOut, "health gate") {
		t.Fatalf("sync --wait of an unhealthy revision: exit %d\n%s%s", code, out, errOut)
	}
	history := func() []api.Deployment {
		t.Helper()
		var ds []api.Deployment
		out, errOut, code := gitopsd(t, nil, "history", name, "--json", "--socket", sock)
		if code != 0 || json.Unmarshal([]byte(out), &ds) != nil {
			t.Fatalf("history --json: exit %d\n%s%s", code, out, errOut)
		}
		return ds
	}
	failed := history()

	// A plain sync leaves the stack held, and says so: not "synced", exit 1.
	if out, errOut, code := gitopsd(t, nil, "sync", "--wait", "--socket", sock); code != 1 || strings.Contains(out, "synced") ||
		!strings.Contains(errOut, "stack "+name+" is held") || !strings.Contains(errOut, "health gate") || !strings.Contains(errOut, "--retry") {
		t.Fatalf("plain sync --wait of a held stack: exit %d, want 1 saying it is held and why\n%s%s", code, out, errOut)
	}
	if out, errOut, code := gitopsd(t, nil, "sync", name, "--socket", sock); code != 0 || !strings.Contains(out, "sync queued") || !strings.Contains(errOut, "is held") {
		t.Fatalf("plain sync (queued) of a held stack: exit %d, want 0 with a note\n%s%s", code, out, errOut)
	}
	if got := history(); len(got) != len(failed) {
		t.Fatalf("a plain sync retried the failed revision: %+v", got[0])
	}
	out, _, code := gitopsd(t, nil, "status", "--socket", sock)
	if code != 0 || !strings.Contains(out, good[:12]+" (held)") || !strings.Contains(out, "1 commit ahead (head "+bad[:12]+")") {
		t.Fatalf("status of a held stack: exit %d\n%s", code, out)
	}
	var st api.Status
	out, _, code = gitopsd(t, nil, "status", name, "--json", "--socket", sock)
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Stacks) != 1 {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	if s := st.Stacks[0]; !s.Held || s.Pinned || s.Revision != good || s.Head != bad || s.BranchAhead != 1 {
		t.Fatalf("status --json of a held stack: %+v", s)
	}

	if out, errOut, code := gitopsd(t, nil, "sync", name, "--retry", "--wait", "--socket", sock); code != 1 || !strings.Contains(errOut, "health gate") {
		t.Fatalf("sync --retry --wait of an unhealthy revision: exit %d\n%s%s", code, out, errOut)
	}
	retried := history()
	if len(retried) != len(failed)+1 || retried[0].Trigger != "retry" || retried[0].To != bad || len(retried[0].Steps) == 0 {
		t.Fatalf("history after sync --retry: %+v", retried[0])
	}
	out, _, _ = gitopsd(t, nil, "history", name, "--json", "--socket", sock)
	if !strings.Contains(out, `"duration_ms"`) || !strings.Contains(out, `"replica": 1`) {
		t.Fatalf("history --json steps lack duration_ms or replica:\n%s", out)
	}

	// The table: each deployment on a line, its steps indented under it.
	out, _, code = gitopsd(t, nil, "history", name, "--socket", sock)
	lines := strings.Split(out, "\n")
	if code != 0 || len(lines) < 3 {
		t.Fatalf("history: exit %d\n%s", code, out)
	}
	head := fmt.Sprintf("%d  %s  %s  %s -> %s  retry  started ", retried[0].ID, name, retried[0].Outcome, good[:12], bad[:12])
	if !strings.HasPrefix(lines[0], head) {
		t.Fatalf("history: first line %q, want it to start with %q\n%s", lines[0], head, out)
	}
	step := regexp.MustCompile(`^    recreate +web#1 +` + regexp.QuoteMeta(name) + `-web-1 +[0-9.]+(ms|s|m[0-9.]+s)\b`)
	found := false
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, fmt.Sprint(retried[1].ID)+"  ") {
			break // the next deployment
		}
		found = found || step.MatchString(l)
	}
	if !found {
		t.Fatalf("history does not list the retried deployment's recreate step with its duration:\n%s", out)
	}
}
