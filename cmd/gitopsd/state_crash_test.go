package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// reportStack is one service with volume data, drift: report, and
// snapshots taken with the service stopped.
func reportStack(image string) string {
	return fmt.Sprintf(`x-gitopsd:
  drift: report
  backup: {volumes: {data: {keep: {last: 2}, stop: [app]}}}
services:
  app:
    image: %[1]s
    pull_policy: never
    volumes: ["data:/data"]
    labels: {%[2]s: "1"}
`+testenv.LabelledDefault("data"), image, testenv.TestLabel)
}

// TestKillHalfwayThroughASnapshotUnderReport: under drift: report, a
// snapshot that stops its service is cut by kill -9 with the service
// stopped. Nothing would heal that stop (report never heals), so the next
// start must start the service again itself, from the record it wrote
// before the stop.
func TestKillHalfwayThroughASnapshotUnderReport(t *testing.T) {
	docker := testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-crash:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "crashrep")
	testenv.CleanupHelpers(t, name)
	repo := testenv.NewGitRepo(t)
	repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": reportStack(image)})
	state, sock, cfgPath := daemonState(t, repo.Bare)
	daemon := startDaemon(t, cfgPath, state, "GITOPSD_CRASH_AT="+backup.CrashHalfway)
	waitSynced(t, sock, "")
	fillVolume(t, docker, image, name+"_data", map[string][]byte{"v/big.bin": randomBytes(t, 8<<20)})
	app := appContainer(t, docker, name)

	if out, errOut, code := gitopsd(t, nil, "backup", "run", name, "--socket", sock); code != 0 {
		t.Fatalf("backup run: exit %d\n%s%s", code, out, errOut)
	}
	waitExit(t, daemon, "halfway through the snapshot")
	if running(t, docker, app) {
		t.Fatal("the app runs after the kill: the snapshot never stopped it, so this test proves nothing")
	}

	startDaemon(t, cfgPath, state)
	waitFor(t, 60*time.Second, "the app stopped by the cut snapshot to run again", func() bool { return running(t, docker, app) })
	waitSynced(t, sock, "")
}

// TestKillHalfwayThroughARestore: gitopsd killed (by itself) with half a
// snapshot written into the volume it restores. The next start puts the
// volume's content from before the restore back, byte for byte, and starts
// the service the restore stopped (under drift: report, where nothing else
// would).
func TestKillHalfwayThroughARestore(t *testing.T) {
	docker := testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-crash:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "crashres")
	testenv.CleanupHelpers(t, name)
	repo := testenv.NewGitRepo(t)
	repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": reportStack(image)})
	state, sock, cfgPath := daemonState(t, repo.Bare)
	daemon := startDaemon(t, cfgPath, state, "GITOPSD_CRASH_AT="+backup.CrashRestoreHalfway)
	waitSynced(t, sock, "")
	volume := name + "_data"
	fillVolume(t, docker, image, volume, map[string][]byte{"v/big.bin": randomBytes(t, 8<<20)})
	if out, errOut, code := gitopsd(t, nil, "backup", "run", name, "--wait", "--socket", sock); code != 0 {
		t.Fatalf("backup run: exit %d\n%s%s", code, out, errOut)
	}
	// The volume moves on; the restore is cut after 1 MiB of the snapshot.
	fillVolume(t, docker, image, volume, map[string][]byte{"v/big.bin": randomBytes(t, 8<<20), "v/after.txt": []byte("written after the snapshot")})
	before := volumeDigest(t, docker, image, volume)
	app := appContainer(t, docker, name)

	if _, _, code := gitopsd(t, nil, "backup", "restore", name, "data", "--yes", "--socket", sock); code == 0 {
		t.Fatal("backup restore succeeded; the daemon was to die halfway")
	}
	waitExit(t, daemon, "halfway through the restore")
	if running(t, docker, app) {
		t.Fatal("the app runs after the kill: the restore never stopped it, so this test proves nothing")
	}

	startDaemon(t, cfgPath, state)
	waitSynced(t, sock, "")
	if after := volumeDigest(t, docker, image, volume); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("after the cut restore and a start the volume is not what it was:\nbefore %v\nafter  %v", before, after)
	}
	waitFor(t, 60*time.Second, "the app stopped by the cut restore to run again", func() bool { return running(t, docker, app) })
	if _, err := os.Stat(filepath.Join(state, "snapshots", ".restore", name)); !os.IsNotExist(err) {
		t.Fatalf("the copy of the old content outlived its use: %v", err)
	}
	// And the restore works when nothing cuts it.
	if out, errOut, code := gitopsd(t, nil, "backup", "restore", name, "data", "--yes", "--socket", sock); code != 0 {
		t.Fatalf("backup restore: exit %d\n%s%s", code, out, errOut)
	}
}

// TestLostWALKeepsThePin: an operator rolls a stack back (and so pins it),
// gitopsd is killed, and gitopsd.db-wal is lost. The pin was checkpointed
// into gitopsd.db, so the next start keeps the stack on the revision the
// operator chose instead of deploying the head again.
func TestLostWALKeepsThePin(t *testing.T) {
	docker := testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-crash:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "lostwal")
	stackFile := func(version string) string {
		return fmt.Sprintf("services:\n  web:\n    image: %s\n    pull_policy: never\n    environment: {VERSION: %q}\n"+
			"    deploy: {update_config: {monitor: 1s}}\n    labels: {%s: \"1\"}\n", image, version, testenv.TestLabel) + testenv.LabelledDefault()
	}
	repo := testenv.NewGitRepo(t)
	v1 := repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": stackFile("v1")})
	state, sock, cfgPath := daemonState(t, repo.Bare)
	daemon := startDaemon(t, cfgPath, state)
	waitSynced(t, sock, "")
	v2 := repo.Commit(t, "v2", map[string]string{"stacks/" + name + "/compose.yaml": stackFile("v2")})
	if out, errOut, code := gitopsd(t, nil, "sync", "--wait", "--socket", sock); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errOut)
	}
	waitSynced(t, sock, v2)
	if out, errOut, code := gitopsd(t, nil, "rollback", name, "--wait", "--socket", sock); code != 0 {
		t.Fatalf("rollback: exit %d\n%s%s", code, out, errOut)
	}
	if s := stackOf(t, sock); !s.Pinned || s.Revision != v1 {
		t.Fatalf("after the rollback: pinned %v, revision %s; want pinned at %s", s.Pinned, s.Revision, v1)
	}

	if err := daemon.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = daemon.Process.Wait()
	db := filepath.Join(state, "gitopsd.db")
	for _, f := range []string{db + "-wal", db + "-shm"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}

	startDaemon(t, cfgPath, state)
	waitFor(t, 60*time.Second, "the daemon to answer", func() bool {
		_, _, code := gitopsd(t, nil, "status", "--socket", sock)
		return code == 0
	})
	if out, errOut, code := gitopsd(t, nil, "sync", "--wait", "--socket", sock); code != 0 {
		t.Fatalf("sync after the lost WAL: exit %d\n%s%s", code, out, errOut)
	}
	if s := stackOf(t, sock); !s.Pinned || s.Revision != v1 {
		t.Fatalf("after a lost WAL: pinned %v, revision %s; want still pinned at %s (v1), not the head %s", s.Pinned, s.Revision, v1, v2)
	}
	c, err := docker.ContainerInspect(context.Background(), appContainer(t, docker, name), client.ContainerInspectOptions{})
	if err != nil || !slices.Contains(c.Container.Config.Env, "VERSION=v1") {
		t.Fatalf("after a lost WAL the stack runs %v (%v); want v1", c.Container.Config.Env, err)
	}
}

// stackOf is the status of the daemon's one stack.
func stackOf(t *testing.T, sock string) api.StackStatus {
	t.Helper()
	var st api.Status
	out, errOut, code := gitopsd(t, nil, "status", "--json", "--socket", sock)
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Stacks) != 1 {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	return st.Stacks[0]
}

// waitExit waits for a daemon that is to kill itself.
func waitExit(t *testing.T, daemon interface{ Wait() error }, where string) {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon did not die %s", where)
	}
}

// appContainer is the ID of the one container of a project.
func appContainer(t *testing.T, docker *client.Client, project string) string {
	t.Helper()
	list, err := docker.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", "com.docker.compose.project="+project)})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("containers of %s: %v %+v", project, err, list.Items)
	}
	return list.Items[0].ID
}

func running(t *testing.T, docker *client.Client, id string) bool {
	t.Helper()
	c, err := docker.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return c.Container.State.Running
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// fillVolume writes files (names under "v/") into a volume through a
// container that is never started.
func fillVolume(t *testing.T, docker *client.Client, image, volume string, files map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(body)
	}
	_ = tw.Close()
	id := volumeHelper(t, docker, image, volume)
	if _, err := docker.CopyToContainer(context.Background(), id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		t.Fatalf("fill volume %s: %v", volume, err)
	}
}

// volumeDigest maps each entry of a volume to its type, mode and the
// sha256 of its content.
func volumeDigest(t *testing.T, docker *client.Client, image, volume string) map[string]string {
	t.Helper()
	id := volumeHelper(t, docker, image, volume)
	res, err := docker.CopyFromContainer(context.Background(), id, client.CopyFromContainerOptions{SourcePath: "/v"})
	if err != nil {
		t.Fatalf("read volume %s: %v", volume, err)
	}
	defer res.Content.Close()
	out := map[string]string{}
	tr := tar.NewReader(res.Content)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read volume %s: %v", volume, err)
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = fmt.Sprintf("%c %o %s", hdr.Typeflag, hdr.Mode, hex.EncodeToString(sum.Sum(nil))[:12])
	}
}

// volumeHelper creates a container (never started) with the volume at /v,
// removed when the test ends.
func volumeHelper(t *testing.T, docker *client.Client, image, volume string) string {
	t.Helper()
	c, err := docker.ContainerCreate(context.Background(), client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, Labels: map[string]string{testenv.TestLabel: "1"}},
		HostConfig: &container.HostConfig{Binds: []string{volume + ":/v"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = docker.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true})
	})
	return c.ID
}

// TestStateBackupAndRestore follows the README's procedure: `state backup
// FILE` with the daemon running, then the record lost (database, WAL and
// shm removed), the file copied back, and a start that carries on from it
// instead of holding for `state adopt`.
func TestStateBackupAndRestore(t *testing.T) {
	image := testenv.AppImage(t, "gitopsd-test-crash:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "statebak")
	repo := testenv.NewGitRepo(t)
	repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": reportStack(image)})
	state, sock, cfgPath := daemonState(t, repo.Bare)
	daemon := startDaemon(t, cfgPath, state)
	waitSynced(t, sock, "")
	file := filepath.Join(t.TempDir(), "record.db")
	if out, errOut, code := gitopsd(t, nil, "state", "backup", file, "--socket", sock); code != 0 {
		t.Fatalf("state backup: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := gitopsd(t, nil, "state", "backup", file, "--socket", sock); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("state backup over an existing file: exit %d, %s", code, errOut)
	}

	if err := daemon.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = daemon.Process.Wait()
	db := filepath.Join(state, "gitopsd.db")
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, cfgPath, state)
	waitSynced(t, sock, "")
	var st api.Status
	out, _, code := gitopsd(t, nil, "status", "--json", "--socket", sock)
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Hold != "" {
		t.Fatalf("status after restoring the record: %s", out)
	}
}
