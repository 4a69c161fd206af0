package daemon

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/backup/remote"
	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestHostReplacement: host shop-1 snapshots a volume holding odd files
// and its copy goes to a real S3 server (SeaweedFS); then the host is lost
// (containers and volume removed, its state_dir gone). A new gitopsd with
// an empty state_dir, the same repository and remote, and the same host
// name:
//   - restores the volume before it starts the stack, identical in bytes
//     and modes, and history shows the restore as a step with its snapshot
//     and age;
//   - with the S3 server stopped, does not start the stack and says why;
//     once the server is back, restores and starts it;
//
// and a host with another name, new-1, for which no copy exists, starts
// the stack empty and says so, then takes old-1's data with `backup
// restore --from-host old-1`.
func TestHostReplacement(t *testing.T) {
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	hostReplacement(t, replacementRemote{url: s3.URL("backups", "fleet"), creds: s3.CredentialsFile(t), addr: s3.Endpoint, stop: s3.Stop, start: s3.Start})
}

// TestHostReplacementSFTP is TestHostReplacement with an SSH server as the
// remote (Debian's sshd, unprivileged, on a high port).
func TestHostReplacementSFTP(t *testing.T) {
	s := testenv.StartSFTP(t)
	hostReplacement(t, replacementRemote{url: s.URL(), creds: s.CredentialsFile(t, s.KnownHosts), addr: s.Host, stop: s.Stop, start: s.Start})
}

// replacementRemote is the remote server of a host-replacement test.
type replacementRemote struct {
	url, creds, addr string // addr: host:port, which errors name
	stop, start      func()
}

func hostReplacement(t *testing.T, srv replacementRemote) {
	url, creds := srv.url, srv.creds
	repo := testenv.NewGitRepo(t)
	image := testenv.AppImage(t, "gitopsd-test-daemon:"+strings.ToLower(testenv.UniqueName(t, "v")))
	name := testenv.Project(t, "replace")
	testenv.CleanupHelpers(t, name)
	port := testenv.FreePort(t)
	volume := name + "_data"
	withRestore := strings.Replace(backupStack(image, port), "        timeout: 30s\n", "        timeout: 30s\n        restore: if_empty\n", 1)
	if withRestore == backupStack(image, port) {
		t.Fatal("the fixture did not take restore: if_empty")
	}
	repo.Commit(t, "v1", map[string]string{"stacks/" + name + "/compose.yaml": withRestore})
	ctx := context.Background()

	// Host A: deployed, filled, snapshotted by the daemon, the copy put on
	// the remote under shop-1 (and under old-1, for --from-host).
	a := hostHarness(t, repo, image, "shop-1", url, creds)
	a.mustReconcile()
	if err := a.d.engine.WriteVolume(ctx, volume, bytes.NewReader(oddTree(t)), nil); err != nil {
		t.Fatalf("fill the volume: %v", err)
	}
	if err := a.d.runBackup(ctx, name, "data", backup.TriggerManual); err != nil {
		t.Fatalf("snapshot on host A: %v", err)
	}
	snaps, err := a.d.store.Snapshots(ctx, name, "data", store.SnapshotOK)
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots on host A: %+v, %v", snaps, err)
	}
	want := a.volumeContent(volume)
	// Host A's own uploader sends the copy (one pass, as its loop would).
	id := snaps[0].Name
	a.d.offsite.Pass(ctx)
	rem, err := remote.Open(ctx, url, creds, remote.DefaultTimeouts)
	if err != nil {
		t.Fatal(err)
	}
	copies, err := remote.List(ctx, rem, remote.Volume{Host: "shop-1", Stack: name, Volume: "data"}, remote.CheckHashes)
	if err != nil || len(copies) != 1 || copies[0].Key.ID != id || !copies[0].Good() {
		t.Fatalf("host A's copy on the remote: %+v, %v", copies, err)
	}
	// The same data filed under another host, old-1, for --from-host.
	key := remote.Key{Volume: remote.Volume{Host: "old-1", Stack: name, Volume: "data"}, ID: id}
	if _, err := remote.Upload(ctx, rem, key, snaps[0].Dir); err != nil {
		t.Fatalf("upload host A's snapshot as %s: %v", key, err)
	}
	rem.Close()
	a.stop()
	loseHost(t, a.harness, name, volume)

	// A new host named shop-1 restores before it starts the stack.
	b := hostHarness(t, repo, image, "shop-1", url, creds)
	b.mustReconcile()
	if got := b.volumeContent(volume); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored volume differs:\nwant %v\ngot  %v", want, got)
	}
	b.volumeMatches(volume, snaps[0].Dir)
	if got, err := waitServes(port, "v1", 30*time.Second); err != nil {
		t.Fatalf("app after the restore: %q, %v", got, err)
	}
	ds, err := b.d.store.Deployments(ctx, name, 1)
	if err != nil || len(ds) != 1 {
		t.Fatalf("history: %+v, %v", ds, err)
	}
	steps := ds[0].Steps
	fill := slices.IndexFunc(steps, func(s store.Step) bool { return s.Action == string(sync.ActRestoreVolume) })
	create := slices.IndexFunc(steps, func(s store.Step) bool { return s.Action == string(sync.ActCreate) && s.Service == "app" })
	if fill < 0 || create < 0 || fill > create {
		t.Fatalf("want a restore-volume step before the app is created: %+v", steps)
	}
	if d := steps[fill].Detail; steps[fill].Error != "" || !strings.Contains(d, "snapshot 1 (remote ") || !strings.Contains(d, "shop-1/"+name+"/data/"+id) || !strings.Contains(d, " old") {
		t.Fatalf("restore step %+v: want the snapshot, the copy and its age", steps[fill])
	}
	t.Logf("history step: %s %s: %s", steps[fill].Action, steps[fill].Container, steps[fill].Detail)
	if r := b.brief(name, "data").Restored; !strings.Contains(r, "restored snapshot 1") {
		t.Fatalf("status of the volume: %q", r)
	}
	b.stop()
	loseHost(t, b.harness, name, volume)

	// The remote down: the stack is not started, and says why; back up: restored.
	c := hostHarness(t, repo, image, "shop-1", url, creds)
	srv.stop()
	if err := c.reconcile(); err == nil {
		t.Fatal("reconcile with the remote down: want an error")
	}
	st := c.stackStatus(name)
	if st.Sync != string(sync.Failed) || !strings.Contains(st.Error, "restore-volume data") || !strings.Contains(st.Error, srv.addr) {
		t.Fatalf("status with the remote down: %s %q; want failed, naming the restore and the remote", st.Sync, st.Error)
	}
	t.Logf("status with the remote down: %s: %s", st.Sync, st.Error)
	if cs := c.containers(name); len(cs) != 0 {
		t.Fatalf("the stack was started without its data: %v", cs)
	}
	if _, err := c.docker.VolumeInspect(ctx, volume, client.VolumeInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("an empty volume was left behind: %v", err)
	}
	srv.start()
	c.mustReconcile()
	if got := c.volumeContent(volume); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("volume restored after the remote came back differs:\nwant %v\ngot  %v", want, got)
	}
	if got, err := waitServes(port, "v1", 30*time.Second); err != nil {
		t.Fatalf("app after the remote came back: %q, %v", got, err)
	}
	if st := c.stackStatus(name); st.Sync != string(sync.Synced) {
		t.Fatalf("after the remote came back: %s %q", st.Sync, st.Error)
	}
	c.stop()
	loseHost(t, c.harness, name, volume)

	// new-1 has no copy anywhere: started empty, and said so; then old-1's
	// data is brought over.
	d := hostHarness(t, repo, image, "new-1", url, creds)
	d.api = runDaemon(t, d.harness)
	if err := d.api.Sync(ctx, "", false, true); err != nil {
		t.Fatalf("first sync on new-1: %v", err)
	}
	if got, err := waitServes(port, "v1", 30*time.Second); err != nil {
		t.Fatalf("app on new-1: %q, %v", got, err)
	}
	if got := d.volumeContent(volume); len(got) > 1 {
		t.Fatalf("new-1's volume is not empty: %v", got)
	}
	if r := d.brief(name, "data").Restored; !strings.Contains(r, "no copy anywhere") || !strings.Contains(r, "started empty") {
		t.Fatalf("status of new-1's volume: %q; want it to say it started empty", r)
	}
	if err := d.api.BackupRestore(ctx, name, "data", 0, "old-1"); err != nil {
		t.Fatalf("restore --from-host old-1: %v", err)
	}
	if got := d.volumeContent(volume); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("volume restored from old-1 differs:\nwant %v\ngot  %v", want, got)
	}
	if got, err := waitServes(port, "v1", 30*time.Second); err != nil {
		t.Fatalf("app after restore --from-host: %q, %v", got, err)
	}
}

// hostHarness is a daemon named host over repo, with the remote at url,
// on an empty state_dir of its own.
func hostHarness(t *testing.T, repo *testenv.GitRepo, image, host, url, creds string) *driftHarness {
	t.Helper()
	cfg := config.Default()
	cfg.Source.URL = repo.Bare
	cfg.Host.Name = host
	cfg.StateDir = t.TempDir()
	cfg.Socket = filepath.Join(cfg.StateDir, "gitopsd.sock")
	cfg.Metrics = ""
	cfg.Backup.Remote = config.BackupRemote{URL: url, CredentialsFile: creds}
	h := &harness{t: t, docker: testenv.Docker(t), repo: repo, image: image, cfg: cfg}
	h.start()
	return &driftHarness{harness: h}
}

// brief is the status of one backed-up volume of a stack.
func (h *driftHarness) brief(stackName, volume string) api.BackupBrief {
	h.t.Helper()
	bs := h.stackStatus(stackName).Backups
	for _, b := range bs {
		if b.Volume == volume {
			return b
		}
	}
	h.t.Fatalf("volume %s of %s not in status: %+v", volume, stackName, bs)
	return api.BackupBrief{}
}

// loseHost removes what a lost host ran: the project's containers and its
// volume (the daemon is stopped and its state_dir is not used again).
func loseHost(t *testing.T, h *harness, project, volume string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := make(client.Filters).Add("label", "com.docker.compose.project="+project)
	cs, err := h.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs.Items {
		if _, err := h.docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.docker.VolumeRemove(ctx, volume, client.VolumeRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
}
