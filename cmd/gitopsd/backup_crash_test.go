package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestKillHalfwayThroughASnapshot: gitopsd killed (SIGKILL, by itself) with
// half a volume written into a snapshot. The next start lists that snapshot
// as failed, never as good, leaves none of its files, and the next
// snapshot succeeds.
func TestKillHalfwayThroughASnapshot(t *testing.T) {
	docker := testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-crash:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "crashbak")
	testenv.CleanupHelpers(t, name)
	repo := testenv.NewGitRepo(t)
	repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": testenv.BackupStack(image, 2)})
	state, sock, cfgPath := daemonState(t, repo.Bare)
	daemon := startDaemon(t, cfgPath, state, "GITOPSD_CRASH_AT="+backup.CrashHalfway)
	waitSynced(t, sock, "")

	// 8 MiB of incompressible data: the kill comes after the first MiB.
	big := make([]byte, 8<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "v/big.bin", Mode: 0o644, Size: int64(len(big)), ModTime: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(big)
	_ = tw.Close()
	helper, err := docker.ContainerCreate(context.Background(), client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, Labels: map[string]string{testenv.TestLabel: "1"}},
		HostConfig: &container.HostConfig{Binds: []string{name + "_data:/v"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer docker.ContainerRemove(context.Background(), helper.ID, client.ContainerRemoveOptions{Force: true})
	if _, err := docker.CopyToContainer(context.Background(), helper.ID, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		t.Fatalf("fill the volume: %v", err)
	}

	if out, errOut, code := gitopsd(t, nil, "backup", "run", name, "--socket", sock); code != 0 {
		t.Fatalf("backup run: exit %d\n%s%s", code, out, errOut)
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatal("the daemon did not die halfway through the snapshot")
	}

	startDaemon(t, cfgPath, state)
	waitSynced(t, sock, "")
	snaps := backupList(t, sock, name)
	if len(snaps) != 1 || snaps[0].Status != "failed" {
		t.Fatalf("after the kill: %+v", snaps)
	}
	if _, err := os.Stat(filepath.Join(state, "snapshots", name, "data", fmt.Sprint(snaps[0].ID))); !os.IsNotExist(err) {
		t.Fatalf("the half-written snapshot's files are still there: %v", err)
	}
	if out, errOut, code := gitopsd(t, nil, "backup", "run", name, "--wait", "--socket", sock); code != 0 {
		t.Fatalf("backup run after the restart: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := gitopsd(t, nil, "backup", "test", name, "--level", "1", "--socket", sock); code != 0 {
		t.Fatalf("backup test: exit %d\n%s%s", code, out, errOut)
	}
	snaps = backupList(t, sock, name)
	if len(snaps) != 2 || snaps[0].Status != "ok" || !snaps[0].TestOK || snaps[1].Status != "failed" {
		t.Fatalf("after a second run: %+v", snaps)
	}
}

func backupList(t *testing.T, sock, stack string) []api.Snapshot {
	t.Helper()
	out, errOut, code := gitopsd(t, nil, "backup", "list", stack, "--json", "--socket", sock)
	var snaps []api.Snapshot
	if code != 0 || json.Unmarshal([]byte(out), &snaps) != nil {
		t.Fatalf("backup list: exit %d\n%s%s", code, out, errOut)
	}
	return snaps
}
