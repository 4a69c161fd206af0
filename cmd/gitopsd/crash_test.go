package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/sync"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// badRevisionStack returns a one-service stack on a free fixed host port
// (so it rolls stop-first) whose FAIL_HEALTH the caller chooses per version.
func badRevisionStack(t *testing.T, image string) func(version, fail string) string {
	t.Helper()
	port := testenv.FreePort(t)
	return func(version, fail string) string {
		return fmt.Sprintf("services:\n  web:\n    image: %s\n    pull_policy: never\n    ports: [\"127.0.0.1:%d:8080\"]\n    environment: {VERSION: %q, FAIL_HEALTH: %q}\n"+
			"    healthcheck: {test: [CMD, /testapp, probe], interval: 300ms, timeout: 2s, retries: 2}\n    labels: {%s: \"1\"}\n"+
			"networks:\n  default:\n    labels: {%s: \"1\"}\n", image, port, version, fail, testenv.TestLabel, testenv.TestLabel)
	}
}

// TestKillBeforeTheGateOfABadRevision cuts a stop-first roll to an
// unhealthy revision after the new container started, before its gate: the
// restarted daemon must gate it then, and roll the stack back to v1.
func TestKillBeforeTheGateOfABadRevision(t *testing.T) {
	docker := testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-crash:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "crashbad")
	stackFile := badRevisionStack(t, image)
	repo := testenv.NewGitRepo(t)
	good := repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": stackFile("v1", "0")})
	state, sock, cfgPath := daemonState(t, repo.Bare)
	daemon := startDaemon(t, cfgPath, state, "GITOPSD_CRASH_AT="+sync.CrashStopFirstNewStarted)
	waitSynced(t, sock, "")
	repo.Commit(t, "v2, unhealthy", map[string]string{"stacks/" + name + "/compose.yaml": stackFile("v2", "1")})
	if out, errOut, code := gitopsd(t, nil, "sync", "--socket", sock); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := daemon.Process.Wait(); err != nil {
		t.Fatal(err)
	}

	startDaemon(t, cfgPath, state)
	waitFor(t, 90*time.Second, "the stack rolled back to v1", func() bool {
		var st api.Status
		out, _, code := gitopsd(t, nil, "status", "--json", "--socket", sock)
		// The error names the rollback only once the rollback has run; the
		// revision alone is v1 already while the gate is failing.
		return code == 0 && json.Unmarshal([]byte(out), &st) == nil && len(st.Stacks) == 1 &&
			st.Stacks[0].Revision == good && st.Stacks[0].Sync == "Failed" &&
			strings.Contains(st.Stacks[0].Error, "rolled back to")
	})
	list, err := docker.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", "com.docker.compose.project="+name)})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("after the rollback: %v %+v", err, list.Items)
	}
	c, err := docker.ContainerInspect(context.Background(), list.Items[0].ID, client.ContainerInspectOptions{})
	if err != nil || !slices.Contains(c.Container.Config.Env, "VERSION=v1") || !c.Container.State.Running {
		t.Fatalf("after the rollback the container runs %v (%v)", c.Container.Config.Env, err)
	}
}

// TestKillDuringRolls kills the daemon (SIGKILL, by itself, at a named point)
// in the middle of stop-first and start-first rolls, starts it again, and
// checks that every case converges: one container per replica, with its
// canonical name, running the new version.
func TestKillDuringRolls(t *testing.T) {
	docker := testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-crash:"+testenv.UniqueName(t, "v"))
	for _, point := range []string{
		sync.CrashStopFirstCreated, sync.CrashStopFirstOldStopped, sync.CrashStopFirstNewStarted,
		sync.CrashStartFirstNewStarted, sync.CrashStartFirstOldRemoved,
	} {
		t.Run(point, func(t *testing.T) {
			name := testenv.Project(t, "crash")
			port := "" // start-first: no fixed host port
			if point[:len("stop-first")] == "stop-first" {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				port = fmt.Sprintf("\n    ports: [\"127.0.0.1:%d:8080\"]", l.Addr().(*net.TCPAddr).Port)
				l.Close()
			}
			stackFile := func(version string) string {
				return fmt.Sprintf("services:\n  web:\n    image: %s\n    pull_policy: never%s\n    environment: {VERSION: %q}\n"+
					"    healthcheck: {test: [CMD, /testapp, probe], interval: 300ms, timeout: 2s, retries: 2}\n    labels: {%s: \"1\"}\n"+
					"networks:\n  default:\n    labels: {%s: \"1\"}\n", image, port, version, testenv.TestLabel, testenv.TestLabel)
			}
			repo := testenv.NewGitRepo(t)
			repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": stackFile("v1")})
			state, sock, cfgPath := daemonState(t, repo.Bare)

			daemon := startDaemon(t, cfgPath, state, "GITOPSD_CRASH_AT="+point)
			waitSynced(t, sock, "")
			head := repo.Commit(t, "v2", map[string]string{"stacks/" + name + "/compose.yaml": stackFile("v2")})
			if out, errOut, code := gitopsd(t, nil, "sync", "--socket", sock); code != 0 {
				t.Fatalf("sync: exit %d\n%s%s", code, out, errOut)
			}
			exited := make(chan error, 1)
			go func() { exited <- daemon.Wait() }()
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				t.Fatalf("the daemon did not reach crash point %s", point)
			}

			startDaemon(t, cfgPath, state)
			waitSynced(t, sock, head)
			list, err := docker.ContainerList(context.Background(), client.ContainerListOptions{All: true,
				Filters: client.Filters{}.Add("label", "com.docker.compose.project="+name)})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != 1 {
				t.Fatalf("after restart %d containers, want 1: %+v", len(list.Items), list.Items)
			}
			c, err := docker.ContainerInspect(context.Background(), list.Items[0].ID, client.ContainerInspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if c.Container.Name != "/"+name+"-web-1" || !c.Container.State.Running || !slices.Contains(c.Container.Config.Env, "VERSION=v2") {
				t.Fatalf("after restart: %s running=%v env %v", c.Container.Name, c.Container.State.Running, c.Container.Config.Env)
			}
		})
	}
}

// startDaemon runs `gitopsd run` with extra env until the test ends.
func startDaemon(t *testing.T, cfgPath, state string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), env...)
	logs, err := os.Create(filepath.Join(state, fmt.Sprintf("log-%d", time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("log of %v:\n%s", env, b)
		}
	})
	return cmd
}

// waitSynced waits until the daemon reports its one stack Synced at head
// ("" for whatever head it has).
func waitSynced(t *testing.T, sock, head string) {
	t.Helper()
	waitFor(t, 90*time.Second, "the stack synced at "+head, func() bool {
		var st api.Status
		out, _, code := gitopsd(t, nil, "status", "--json", "--socket", sock)
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Stacks) != 1 {
			return false
		}
		return st.Stacks[0].Sync == "Synced" && st.Stacks[0].Revision == st.Source.Head && (head == "" || head == st.Source.Head)
	})
}

// daemonState is a state folder with a config for a daemon over repo (no
// timer polls: tests trigger syncs), and its socket and config paths.
func daemonState(t *testing.T, repo string) (state, sock, cfgPath string) {
	t.Helper()
	state = t.TempDir()
	sock = filepath.Join(state, "gitopsd.sock")
	cfgPath = filepath.Join(state, "gitopsd.yaml")
	writeFiles(t, state, map[string]string{"gitopsd.yaml": fmt.Sprintf(
		"source:\n  url: %s\n  branch: main\n  interval: 1h\nhost:\n  name: testhost\nstate_dir: %s\nsocket: %s\nmetrics: \"\"\n",
		repo, state, sock)})
	return state, sock, cfgPath
}
