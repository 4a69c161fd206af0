package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestUnknownCommandExits2: a command (or subcommand) that does not exist
// is a usage error, exit 2, with a suggestion when one is near.
func TestUnknownCommandExits2(t *testing.T) {
	for _, argv := range [][]string{{"nosuch"}, {"statsu"}, {"backup", "lsit"}, {"state", "nosuch"}} {
		_, errOut, code := gitopsd(t, nil, argv...)
		if code != 2 || !strings.Contains(errOut, "unknown command") {
			t.Errorf("gitopsd %v: exit %d, want 2\n%s", argv, code, errOut)
		}
	}
	if _, errOut, _ := gitopsd(t, nil, "statsu"); !strings.Contains(errOut, "status") {
		t.Errorf("no suggestion for statsu:\n%s", errOut)
	}
	if _, errOut, _ := gitopsd(t, nil, "backup", "lsit"); !strings.Contains(errOut, "list") {
		t.Errorf("no suggestion for backup lsit:\n%s", errOut)
	}
}

// TestRestoreNeedsYesWithoutTerminal: with stdin not a terminal, nobody
// can confirm a restore, so it is refused before the daemon is asked.
func TestRestoreNeedsYesWithoutTerminal(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, errOut, code := gitopsd(t, nil, "backup", "restore", "web", "data", "--socket", sock)
	if code != 2 || !strings.Contains(errOut, "--yes") || strings.Contains(errOut, "is the daemon running") {
		t.Fatalf("restore without --yes and without a terminal: exit %d\n%s", code, errOut)
	}
	// With --yes it goes on to the daemon (absent here).
	if _, errOut, code := gitopsd(t, nil, "backup", "restore", "web", "data", "--yes", "--socket", sock); code != 1 || !strings.Contains(errOut, "is the daemon running") {
		t.Fatalf("restore --yes: exit %d\n%s", code, errOut)
	}
}

// cliStack is a one-service stack; extra goes under x-gitopsd.
func cliStack(image, version, xgitopsd string) string {
	s := fmt.Sprintf("services:\n  web:\n    image: %s\n    pull_policy: never\n    environment: {VERSION: %q}\n    deploy: {update_config: {monitor: 1s}}\n    labels: {%s: \"1\"}\n",
		image, version, testenv.TestLabel) + testenv.LabelledDefault()
	if xgitopsd != "" {
		s += "x-gitopsd:\n  " + xgitopsd + "\n"
	}
	return s
}

// TestUnknownStackRefusedByEveryCommand: every command that names a stack
// refuses one the daemon does not know, exit 1, naming it and the nearest
// known one; nothing is queued. A stack removed from the repository is
// still known to history.
func TestUnknownStackRefusedByEveryCommand(t *testing.T) {
	testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-cli:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "cliunknown")
	repo := testenv.NewGitRepo(t)
	first := repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": cliStack(image, "v1", "")})
	state, sock, cfgPath := daemonState(t, repo.Bare)
	startDaemon(t, cfgPath, state)
	waitSynced(t, sock, first)

	// Stack names complete (the shells' scripts call __complete).
	for _, cmd := range []string{"status", "sync", "rollback", "history", "backup restore"} {
		argv := append([]string{"__complete"}, strings.Fields(cmd)...)
		out, errOut, code := gitopsd(t, nil, append(argv, "--socket", sock, "")...)
		if code != 0 || !strings.Contains(out, name+"\n") {
			t.Errorf("completion of %s: exit %d\n%s%s", cmd, code, out, errOut)
		}
	}
	// Without a daemon, completion offers nothing and says nothing.
	if out, errOut, code := gitopsd(t, nil, "__complete", "status", "--socket", filepath.Join(t.TempDir(), "none.sock"), ""); code != 0 || strings.Contains(out, name) || strings.Contains(errOut, "daemon") {
		t.Errorf("completion without a daemon: exit %d\n%s%s", code, out, errOut)
	}

	typo := name[:len(name)-1] + "x"
	for _, argv := range [][]string{
		{"status", typo}, {"diff", typo}, {"sync", typo}, {"sync", typo, "--wait"}, {"sync", typo, "--retry", "--wait"},
		{"rollback", typo}, {"rollback", typo, "--wait"}, {"unpin", typo}, {"history", typo}, {"drift", typo},
		{"backup", "list", typo}, {"backup", "run", typo}, {"backup", "test", typo}, {"backup", "restore", typo, "data", "--yes"},
		{"history", typo, "--json"}, {"drift", typo, "--json"}, {"backup", "list", typo, "--json"},
	} {
		out, errOut, code := gitopsd(t, nil, append(argv, "--socket", sock)...)
		if code != 1 || !strings.Contains(errOut, fmt.Sprintf("unknown stack %q", typo)) || !strings.Contains(errOut, name) {
			t.Errorf("gitopsd %v: exit %d, want 1 naming %s and suggesting %s\nstdout: %s\nstderr: %s", argv, code, typo, name, out, errOut)
		}
	}
	// A name far from every known one still fails, and says where to look.
	if _, errOut, code := gitopsd(t, nil, "history", "zzzzzzzzzzzzzzzzzzzzzzzzzzz", "--socket", sock); code != 1 || !strings.Contains(errOut, "unknown stack") {
		t.Errorf("history of a far name: exit %d\n%s", code, errOut)
	}
	// Nothing was queued for the unknown stack: history is unchanged.
	var hist []api.Deployment
	out, _, code := gitopsd(t, nil, "history", "--json", "--socket", sock)
	if code != 0 || json.Unmarshal([]byte(out), &hist) != nil || len(hist) != 1 {
		t.Fatalf("history after the refused commands: exit %d\n%s", code, out)
	}

	// The stack leaves the repository: its history is still there to read.
	repo.Commit(t, "remove the stack", nil, "stacks/"+name+"/compose.yaml")
	if out, errOut, code := gitopsd(t, nil, "sync", "--wait", "--socket", sock); code != 0 {
		t.Fatalf("sync removing the stack: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code := gitopsd(t, nil, "history", name, "--json", "--socket", sock)
	if code != 0 || json.Unmarshal([]byte(out), &hist) != nil || len(hist) == 0 {
		t.Fatalf("history of a removed stack: exit %d\n%s%s", code, out, errOut)
	}
}

// TestDiffExitCode: diff exits 0 when nothing would change and 1 when
// something would (as git diff --exit-code), and says how old its view
// is. sync --json and version --json answer their documents.
func TestDiffExitCode(t *testing.T) {
	testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-cli:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "clidiff")
	repo := testenv.NewGitRepo(t)
	// drift: report, so the container stopped below stays stopped.
	first := repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": cliStack(image, "v1", "drift: report")})
	state, sock, cfgPath := daemonState(t, repo.Bare)
	startDaemon(t, cfgPath, state)
	waitSynced(t, sock, first)

	out, errOut, code := gitopsd(t, nil, "diff", name, "--socket", sock)
	if code != 0 || !strings.Contains(out, name+": in sync") || !strings.Contains(out, "as of fetch ") {
		t.Fatalf("diff of a synced stack: exit %d, want 0\n%s%s", code, out, errOut)
	}
	var res api.SyncResult
	out, errOut, code = gitopsd(t, nil, "sync", "--wait", "--json", "--socket", sock)
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.Queued || !res.Waited || res.Error != "" || res.Held == nil {
		t.Fatalf("sync --wait --json: exit %d\n%s%s", code, out, errOut)
	}
	var v api.VersionInfo
	out, errOut, code = gitopsd(t, nil, "version", "--json", "--socket", sock)
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Client == "" || v.Daemon == "" || v.DaemonError != "" {
		t.Fatalf("version --json: exit %d\n%s%s", code, out, errOut)
	}

	if out, err := exec.Command("docker", "stop", "-t", "1", name+"-web-1").CombinedOutput(); err != nil {
		t.Fatalf("docker stop: %v\n%s", err, out)
	}
	waitFor(t, 60*time.Second, "diff to see the stopped container", func() bool {
		out, _, code = gitopsd(t, nil, "diff", name, "--socket", sock)
		return !strings.Contains(out, "in sync")
	})
	if code != 1 || !strings.Contains(out, name+":") {
		t.Fatalf("diff of a stopped container: exit %d, want 1\n%s", code, out)
	}
	var ds []api.Diff
	out, _, code = gitopsd(t, nil, "diff", name, "--json", "--socket", sock)
	if code != 1 || json.Unmarshal([]byte(out), &ds) != nil || len(ds) != 1 || len(ds[0].Actions) == 0 {
		t.Fatalf("diff --json of a stopped container: exit %d, want 1\n%s", code, out)
	}
}

// TestNotificationURLTokensNotLogged: deliveries that fail, to a webhook
// and shoutrrr URLs carrying tokens in their path and query, are logged
// without the tokens.
func TestNotificationURLTokensNotLogged(t *testing.T) {
	testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-cli:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "clinotify")
	// One receiver answers 500; the other hangs up, so the HTTP client's
	// error quotes the URL.
	fails := serveLocal(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	hangs := serveLocal(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	const pathToken, queryToken = "PathTok3nAbCdEfGh1234", "QuerySECRET9876"
	webhook := fmt.Sprintf("http://%s/hooks/%s?token=%s", hangs, pathToken, queryToken)
	urls := []string{
		fmt.Sprintf("generic://%s/hooks/%s?token=%s&disabletls=yes", fails, pathToken, queryToken),
		fmt.Sprintf("generic://%s/hooks/%s?token=%s&disabletls=yes", hangs, pathToken, queryToken),
	}

	repo := testenv.NewGitRepo(t)
	// The container exits at once: the first deploy fails, and is notified.
	stackFile := fmt.Sprintf("services:\n  web:\n    image: %s\n    pull_policy: never\n    command: [\"job\", \"--for\", \"0s\", \"--exit\", \"3\"]\n    deploy: {update_config: {monitor: 1s}}\n    labels: {%s: \"1\"}\n",
		image, testenv.TestLabel) + testenv.LabelledDefault()
	repo.Commit(t, "v1, failing", map[string]string{"stacks/" + name + "/compose.yaml": stackFile})
	state, _, cfgPath := daemonState(t, repo.Bare)
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "notify:\n  webhook: %q\n  urls: [%q, %q]\n", webhook, urls[0], urls[1])
	f.Close()
	startDaemon(t, cfgPath, state)

	var log string
	waitFor(t, 90*time.Second, "three failed deliveries in the log", func() bool {
		log = daemonLogs(t, state)
		return strings.Count(log, "notification not delivered") >= 3
	})
	for _, secret := range []string{pathToken, queryToken} {
		if strings.Contains(log, secret) {
			t.Fatalf("the log holds the token %s:\n%s", secret, log)
		}
	}
	if !strings.Contains(log, hangs) {
		t.Fatalf("the log does not say where a delivery went:\n%s", log)
	}
}

// serveLocal serves h on 127.0.0.1 until the test ends; it returns host:port.
func serveLocal(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// daemonLogs reads the logs startDaemon wrote under state.
func daemonLogs(t *testing.T, state string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(state, "log-*"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

// TestEveryCommandTeaches: every command a user can run has a long
// description and examples, for --help and the man pages made from them.
func TestEveryCommandTeaches(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || (c.HasParent() && c.Parent().Name() == "completion") {
			return
		}
		if c.Name() != "completion" && (strings.TrimSpace(c.Long) == "" || strings.TrimSpace(c.Example) == "") {
			t.Errorf("%s: Long %d bytes, Example %d bytes", c.CommandPath(), len(c.Long), len(c.Example))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := newRoot()
	root.InitDefaultCompletionCmd()
	walk(root)
}

// TestValidateJSON: validate --json says per stack ok, invalid (with the
// file and line) or untargeted, and exits 1 when one is invalid.
func TestValidateJSON(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"stacks/web/compose.yaml":    "services:\n  app:\n    image: example/app:1\n",
		"stacks/edge/compose.yaml":   "services:\n  app:\n    image: example/app:1\nx-gitopsd:\n  targets: {hosts: [\"edge-*\"]}\n",
		"stacks/broken/compose.yaml": "services:\n  app:\n    image: example/app:1\n   ports: [oops\n",
	})
	out, errOut, code := gitopsd(t, nil, "validate", dir, "--host", "central", "--json")
	var res ValidateResult
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("validate --json: exit %d\n%s%s", code, out, errOut)
	}
	got := map[string]ValidateStack{}
	for _, s := range res.Stacks {
		got[s.Name] = s
	}
	if res.OK || res.Host != "central" || got["web"].Status != "ok" || got["web"].Services != 1 || got["edge"].Status != "untargeted" ||
		got["broken"].Status != "invalid" || !strings.Contains(got["broken"].Error, "stacks/broken/compose.yaml:") {
		t.Fatalf("validate --json: %+v", res)
	}
}
