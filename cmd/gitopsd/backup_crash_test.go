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
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/backup/remote"
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
	fillBig(t, docker, image, name+"_data")

	if out, errOut, code := gitopsd(t, nil, "backup", "run", name, "--socket", sock); code != 0 {
		t.Fatalf("backup run: exit %d\n%s%s", code, out, errOut)
	}
	waitExit(t, daemon, "halfway through the snapshot")

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

// fillBig writes 8 MiB of random bytes into volume, as v/big.bin.
func fillBig(t *testing.T, docker *client.Client, image, volume string) {
	t.Helper()
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
		HostConfig: &container.HostConfig{Binds: []string{volume + ":/v"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer docker.ContainerRemove(context.Background(), helper.ID, client.ContainerRemoveOptions{Force: true})
	if _, err := docker.CopyToContainer(context.Background(), helper.ID, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		t.Fatalf("fill the volume: %v", err)
	}
}

// TestKillDuringAnUpload: gitopsd killed (SIGKILL, by itself) with half a
// snapshot's archive sent to the remote (sshd). Nothing half-written is
// listed as good there; the next start sends the copy again, which then
// counts, and a restore test of the downloaded copy passes.
func TestKillDuringAnUpload(t *testing.T) {
	docker := testenv.Docker(t)
	image := testenv.AppImage(t, "gitopsd-test-crash:"+testenv.UniqueName(t, "v"))
	name := testenv.Project(t, "crashup")
	testenv.CleanupHelpers(t, name)
	srv := testenv.StartSFTP(t)
	url, creds := srv.URL()+"/fleet", srv.CredentialsFile(t, "")
	repo := testenv.NewGitRepo(t)
	repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": testenv.BackupStack(image, 2)})
	state, sock, cfgPath := daemonState(t, repo.Bare)
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "backup:\n  remote:\n    url: %s\n    credentials_file: %s\n", url, creds)
	f.Close()
	daemon := startDaemon(t, cfgPath, state, "GITOPSD_CRASH_AT="+backup.CrashUploadHalfway)
	waitSynced(t, sock, "")
	fillBig(t, docker, image, name+"_data")

	// The upload starts beside the loop once the snapshot is recorded:
	// the kill may come before or after the answer to this run.
	gitopsd(t, nil, "backup", "run", name, "--wait", "--socket", sock)
	waitExit(t, daemon, "halfway through the upload")
	ctx := context.Background()
	r, err := remote.Open(ctx, url, creds, remote.DefaultTimeouts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	vol := remote.Volume{Host: "testhost", Stack: name, Volume: "data"}
	cut, err := remote.List(ctx, r, vol, remote.CheckHashes)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cut {
		if c.Good() || c.State == remote.StateCommitted {
			t.Fatalf("after the kill, a copy is listed as committed: %+v", c)
		}
	}

	startDaemon(t, cfgPath, state)
	waitSynced(t, sock, "")
	local := backupList(t, sock, name)
	if len(local) != 1 || local[0].Status != "ok" || local[0].Name == "" {
		t.Fatalf("local snapshots after the restart: %+v", local)
	}
	var copies []api.RemoteSnapshot
	waitFor(t, 90*time.Second, "the copy sent again", func() bool {
		out, _, code := gitopsd(t, nil, "backup", "list", name, "--remote", "--json", "--socket", sock)
		return code == 0 && json.Unmarshal([]byte(out), &copies) == nil && len(copies) == 1 && copies[0].State == "committed"
	})
	if copies[0].ID != local[0].Name || copies[0].Host != "testhost" || copies[0].SizeBytes != local[0].SizeBytes {
		t.Fatalf("backup list --remote: %+v, want the copy of %+v", copies, local[0])
	}
	if s := remote.Verify(ctx, r, remote.Key{Volume: vol, ID: local[0].Name}); !s.Good() {
		t.Fatalf("the copy sent again does not read back whole: %s %s", s.State, s.Problem)
	}
	if out, errOut, code := gitopsd(t, nil, "backup", "test", name, "--remote", "--level", "2", "--socket", sock); code != 0 {
		t.Fatalf("backup test --remote: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ := gitopsd(t, nil, "backup", "list", name, "--remote", "--socket", sock)
	if !strings.Contains(out, local[0].Name) || !strings.Contains(out, "ok (level 2)") {
		t.Fatalf("backup list --remote does not show the passed test:\n%s", out)
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
