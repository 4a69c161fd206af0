package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// These tests run the real binary, as an operator would.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gitopsd-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "gitopsd")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build gitopsd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gitopsd runs the binary and returns stdout, stderr and the exit code.
func gitopsd(t *testing.T, env []string, argv ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, argv...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run gitopsd %v: %v", argv, err)
	}
	return stdout.String(), stderr.String(), code
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestValidate(t *testing.T) {
	good := t.TempDir()
	writeFiles(t, good, map[string]string{
		"stacks/web/compose.yaml": "services:\n  app:\n    image: example/app:1\n",
		"stacks/db/compose.yaml":  "services:\n  db:\n    image: example/db:1\nx-gitopsd:\n  targets: {hosts: [\"edge-*\"]}\n",
	})
	out, errOut, code := gitopsd(t, nil, "validate", good, "--host", "central")
	if code != 0 {
		t.Fatalf("validate of a good repo: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "web") || !strings.Contains(out, "db (not for host central)") {
		t.Fatalf("validate output does not list the stacks:\n%s", out)
	}

	bad := t.TempDir()
	writeFiles(t, bad, map[string]string{
		"stacks/web/compose.yaml":    "services:\n  app:\n    image: example/app:1\n",
		"stacks/broken/compose.yaml": "services:\n  app:\n    image: example/app:1\n   ports: [oops\n",
	})
	out, errOut, code = gitopsd(t, nil, "validate", bad)
	if code != 1 {
		t.Fatalf("validate of a broken repo: exit %d, want 1\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "broken") || !strings.Contains(out, "stacks/broken/compose.yaml:") {
		t.Fatalf("validate does not name stack, file and line:\n%s", out)
	}

	// --strict judges by the strict host policy; an encrypted env file is
	// left out unread without --age-key-file, and decrypted with it.
	sops, err := os.ReadFile(filepath.Join("..", "..", "internal", "secrets", "testdata", "app.env"))
	if err != nil {
		t.Fatal(err)
	}
	trust := t.TempDir()
	writeFiles(t, trust, map[string]string{
		"stacks/priv/compose.yaml":   "services:\n  app:\n    image: example/app:1\n    privileged: true\n",
		"stacks/sealed/compose.yaml": "services:\n  app:\n    image: example/app:1\n    env_file: secrets.env\n",
		"stacks/sealed/secrets.env":  string(sops),
	})
	if out, errOut, code := gitopsd(t, nil, "validate", trust); code != 0 {
		t.Fatalf("validate without --strict or a key: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = gitopsd(t, nil, "validate", trust, "--strict")
	if code != 1 || !strings.Contains(out, "invalid  priv: stacks/priv/compose.yaml:4:") || !strings.Contains(out, "(policy.privileged)") || !strings.Contains(out, "ok       sealed") {
		t.Fatalf("validate --strict: exit %d\n%s", code, out)
	}
	key := filepath.Join("..", "..", "internal", "secrets", "testdata", "test.agekey")
	if out, errOut, code := gitopsd(t, nil, "validate", trust, "--age-key-file", key); code != 0 || !strings.Contains(out, "ok       sealed") {
		t.Fatalf("validate with the key: exit %d\n%s%s", code, out, errOut)
	}
	other := filepath.Join("..", "..", "internal", "secrets", "testdata", "second.agekey")
	if out, _, code := gitopsd(t, nil, "validate", trust, "--age-key-file", other); code != 1 || !strings.Contains(out, "no age identity matches") {
		t.Fatalf("validate with a key the file is not for: exit %d\n%s", code, out)
	}

	if _, _, code := gitopsd(t, nil, "validate", "--no-such-flag"); code != 2 {
		t.Fatalf("a usage error exits %d, want 2", code)
	}
}

func TestClientWithoutDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, errOut, code := gitopsd(t, nil, "status", "--socket", sock)
	if code != 1 || !strings.Contains(errOut, "is the daemon running?") {
		t.Fatalf("status without a daemon: exit %d, stderr %q", code, errOut)
	}
}

// TestDaemonEndToEnd runs `gitopsd run` on a bare repository and drives it
// with the subcommands; a kill -9 and a restart change nothing.
func TestDaemonEndToEnd(t *testing.T) {
	testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-cli:"+testenv.UniqueName(t, "v"))
	repo := testenv.NewGitRepo(t)
	name := testenv.Project(t, "cli")
	stackFile := func(version string) string {
		return fmt.Sprintf("services:\n  web:\n    image: %s\n    pull_policy: never\n    environment: {VERSION: %q}\n    deploy: {update_config: {monitor: 1s}}\n    labels: {%s: \"1\"}\nnetworks:\n  default:\n    labels: {%s: \"1\"}\n", image, version, testenv.TestLabel, testenv.TestLabel)
	}
	first := repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": stackFile("v1")})

	state, sock, cfgPath := daemonState(t, repo.Bare)

	start := func() *exec.Cmd { return startDaemon(t, cfgPath, state) }
	// The first status after start waits for the first reconcile's record.
	statusOf := func() api.Status {
		var st api.Status
		waitFor(t, 60*time.Second, "status with the stack synced", func() bool {
			out, _, code := gitopsd(t, nil, "status", "--json", "--socket", sock)
			if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
				return false
			}
			return len(st.Stacks) == 1 && st.Stacks[0].Sync == "Synced" && st.Stacks[0].Revision == st.Source.Head
		})
		return st
	}

	daemon := start()
	st := statusOf()
	if st.Host != "testhost" || st.Source.Head != first || st.Stacks[0].Name != name || len(st.Stacks[0].Services) != 1 {
		t.Fatalf("status: %+v", st)
	}
	firstIDs := st.Stacks[0].Services[0].Containers

	second := repo.Commit(t, "v2", map[string]string{"stacks/" + name + "/compose.yaml": stackFile("v2")})
	if out, errOut, code := gitopsd(t, nil, "sync", "--wait", "--socket", sock); code != 0 {
		t.Fatalf("sync --wait: exit %d\n%s%s", code, out, errOut)
	}
	st = statusOf()
	if st.Source.Head != second || st.Stacks[0].LastDeployment == nil || st.Stacks[0].LastDeployment.Outcome != "succeeded" {
		t.Fatalf("after sync: %+v", st.Stacks[0])
	}
	var hist []api.Deployment
	out, _, code := gitopsd(t, nil, "history", name, "--json", "--socket", sock)
	if code != 0 || json.Unmarshal([]byte(out), &hist) != nil || len(hist) != 2 {
		t.Fatalf("history --json: exit %d\n%s", code, out)
	}
	if hist[0].From != first || hist[0].To != second || len(hist[0].Steps) == 0 {
		t.Fatalf("newest deployment: %+v", hist[0])
	}
	secondIDs := st.Stacks[0].Services[0].Containers
	if secondIDs[0] == firstIDs[0] {
		t.Fatal("the change of env did not recreate the container")
	}

	// kill -9, then start again: nothing changes, nothing is recorded.
	if err := daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = daemon.Wait()
	start()
	st = statusOf()
	if got := st.Stacks[0].Services[0].Containers; len(got) != 1 || got[0] != secondIDs[0] {
		t.Fatalf("restart changed containers: %v -> %v", secondIDs, got)
	}
	out, _, _ = gitopsd(t, nil, "history", "--json", "--socket", sock)
	if err := json.Unmarshal([]byte(out), &hist); err != nil || len(hist) != 2 {
		t.Fatalf("restart recorded deployments: %s", out)
	}
	out, _, code = gitopsd(t, nil, "diff", name, "--socket", sock)
	if code != 0 || !strings.Contains(out, "in sync") {
		t.Fatalf("diff after restart: exit %d\n%s", code, out)
	}
}

// TestDemo runs the README's demo as a user would and checks that its stop
// command leaves nothing behind.
func TestDemo(t *testing.T) {
	testenv.Docker(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	port := "18088"
	t.Cleanup(func() {
		cmd := exec.Command("make", "demo-down")
		cmd.Dir = root
		_ = cmd.Run()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	demo := exec.CommandContext(ctx, "make", "demo")
	demo.Dir = root
	demo.Env = append(os.Environ(), "DEMO_PORT="+port)
	var logs bytes.Buffer
	demo.Stdout, demo.Stderr = &logs, &logs
	// Ctrl-C as a terminal sends it: to the whole process group.
	demo.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	demo.Cancel = func() error { return syscall.Kill(-demo.Process.Pid, syscall.SIGINT) }
	demo.WaitDelay = 30 * time.Second
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "the demo service to answer on port "+port, func() bool {
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	cancel()
	_ = demo.Wait()

	down := exec.Command("make", "demo-down")
	down.Dir = root
	if out, err := down.CombinedOutput(); err != nil {
		t.Fatalf("make demo-down: %v\n%s", err, out)
	}
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=gitopsd-demo").Output()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("containers left after demo-down: %q %v\n%s", out, err, logs.String())
	}
	if _, err := os.Stat(filepath.Join(root, ".demo")); !os.IsNotExist(err) {
		t.Fatalf(".demo left after demo-down: %v", err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond) // polling interval of a wait-for-condition
	}
}
