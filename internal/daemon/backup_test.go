package daemon

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/backup/format"
	"github.com/gitopsd/gitopsd/internal/notify"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// backupStack is a healthchecked app on a host port with volume data at
// /data, snapshotted with the app stopped, restore-tested up to level 3
// with the test app's own check of a file.
func backupStack(image string, port int) string {
	return fmt.Sprintf(`x-gitopsd:
  backup:
    volumes:
      data:
        keep: {last: 3}
        stop: [app]
        verify: ["/testapp", "check", "/data/docs/a.txt", "hello"]
        timeout: 30s
services:
  app:
    image: %[1]s
    pull_policy: never
    ports: ["127.0.0.1:%[2]d:8080"]
    environment: {VERSION: v1}
    volumes: ["data:/data"]
    healthcheck: `+probeCheck+`
    labels: {%[3]s: "1"}
`+testenv.LabelledDefault("data"), image, port, testenv.TestLabel)
}

// oddTree is a volume's content with what a backup tool gets wrong: a
// symlink, a hardlink, odd modes, non-root owners and a 2 MiB file.
func oddTree(t testing.TB) []byte {
	t.Helper()
	big := make([]byte, 2<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	at := time.Unix(1700000000, 0)
	for _, e := range []struct {
		hdr  tar.Header
		body []byte
	}{
		{hdr: tar.Header{Name: "v/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "v/docs/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1000}},
		{hdr: tar.Header{Name: "v/docs/a.txt", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1000, Gid: 1000}, body: []byte("hello")},
		{hdr: tar.Header{Name: "v/docs/hard", Typeflag: tar.TypeLink, Linkname: "v/docs/a.txt"}},
		{hdr: tar.Header{Name: "v/link", Typeflag: tar.TypeSymlink, Linkname: "docs/a.txt", Mode: 0o777}},
		{hdr: tar.Header{Name: "v/big.bin", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 65534, Gid: 65534}, body: big},
		{hdr: tar.Header{Name: "v/setuid", Typeflag: tar.TypeReg, Mode: 0o4755}, body: []byte("#!/bin/true\n")},
		{hdr: tar.Header{Name: "v/sticky/", Typeflag: tar.TypeDir, Mode: 0o1777}},
		{hdr: tar.Header{Name: "v/empty", Typeflag: tar.TypeReg, Mode: 0o444}},
	} {
		e.hdr.ModTime = at
		e.hdr.Size = int64(len(e.body))
		if err := tw.WriteHeader(&e.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBackupRoundTrip: a volume with odd content is snapshotted with its
// service stopped (and back healthy after, with no drift or sync fighting
// it), passes restore tests at levels 1 to 3, is wiped, and comes back
// identical, entry by entry. A flipped byte in the stored snapshot fails the
// next test, which the metrics and status show.
func TestBackupRoundTrip(t *testing.T) {
	h := &driftHarness{harness: newHarness(t, nil)}
	h.stack = testenv.Project(t, "bak")
	testenv.CleanupHelpers(t, h.stack)
	h.port = testenv.FreePort(t)
	h.metrics = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	h.cfg.Metrics = h.metrics
	h.cfg.Drift.CheckInterval = time.Second
	notified := make(chan notify.Event, 100)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e notify.Event
		if err := json.NewDecoder(r.Body).Decode(&e); err == nil {
			notified <- e
		}
	}))
	defer receiver.Close()
	h.cfg.Notify.Webhook = receiver.URL
	ctx := context.Background()
	volume := h.deployBackupStack()
	app := h.containers(h.stack)["app#1"]

	// The app's stop and start, as Docker reports them.
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := h.docker.Events(ectx, client.EventsListOptions{Filters: client.Filters{}.Add("type", "container").Add("container", app).Add("event", "die").Add("event", "start")})
	began := time.Now()
	if err := h.api.BackupRun(ctx, h.stack, "", true); err != nil {
		t.Fatalf("backup run: %v", err)
	}
	ended := time.Now()
	t.Logf("snapshot with app stopped took %s", ended.Sub(began).Round(time.Millisecond))
	var actions []string
	for len(actions) < 2 {
		select {
		case m := <-stream.Messages:
			at := time.Unix(0, m.TimeNano)
			if at.Before(began) || at.After(ended) {
				t.Fatalf("app %s at %s, outside the snapshot (%s to %s)", m.Action, at, began, ended)
			}
			actions = append(actions, string(m.Action))
		case err := <-stream.Err:
			t.Fatalf("events: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatalf("app was not stopped and started by the snapshot: %v", actions)
		}
	}
	if actions[0] != "die" || actions[1] != "start" {
		t.Fatalf("app during the snapshot: %v", actions)
	}
	snaps, err := h.api.Snapshots(ctx, h.stack)
	if err != nil || len(snaps) != 1 || snaps[0].Status != "ok" || snaps[0].Volume != "data" || snaps[0].Files != 4 {
		t.Fatalf("snapshots: %+v, %v", snaps, err)
	}
	// The stopped service is back, the same container, healthy, and nothing
	// took the stop for drift.
	if got := h.containers(h.stack)["app#1"]; got != app {
		t.Fatalf("app was replaced during the snapshot: %s -> %s", app, got)
	}
	if st := h.inspect(app).State; !st.Running || st.Health == nil || st.Health.Status != "healthy" {
		t.Fatalf("app after the snapshot: %+v", st)
	}
	if n, err := h.d.store.CountDrifts(ctx, h.stack); err != nil || n != 0 {
		ds, _ := h.api.Drift(ctx, 0)
		t.Fatalf("the snapshot's stop was taken for drift: %d, %v: %+v", n, err, ds)
	}
	for _, dep := range h.history(h.stack) {
		if dep.Trigger == "heal" {
			t.Fatalf("a heal fought the snapshot: %+v", dep)
		}
	}

	for level := 1; level <= 3; level++ {
		began := time.Now()
		if err := h.api.BackupTest(ctx, h.stack, "data", level); err != nil {
			t.Fatalf("restore test level %d: %v", level, err)
		}
		t.Logf("restore test level %d passed in %s", level, time.Since(began).Round(time.Millisecond))
	}
	if n := h.helperObjects(); n != 0 {
		t.Fatalf("restore tests left %d scratch objects", n)
	}

	// Wipe the volume, restore, compare every entry with the snapshot's manifest.
	if err := h.d.engine.EmptyVolume(ctx, volume); err != nil {
		t.Fatal(err)
	}
	if err := h.api.BackupRestore(ctx, h.stack, "data", 0, ""); err != nil {
		t.Fatalf("restore: %v", err)
	}
	sn, ok, err := h.d.store.Snapshot(ctx, snaps[0].ID)
	if err != nil || !ok {
		t.Fatalf("snapshot %d: %v", snaps[0].ID, err)
	}
	h.volumeMatches(volume, sn.Dir)
	if got, err := waitServes(h.port, "v1", 10*time.Second); err != nil {
		t.Fatalf("app after the restore: %q, %v", got, err)
	}

	// Retention, keep {last: 3}: snapshot 1 passed its tests and is kept as
	// the newest tested good one; of 2 to 5 the last three stay.
	for range 4 {
		if err := h.api.BackupRun(ctx, h.stack, "data", true); err != nil {
			t.Fatalf("backup run: %v", err)
		}
	}
	snaps, err = h.api.Snapshots(ctx, h.stack)
	if err != nil || len(snaps) != 5 {
		t.Fatalf("snapshots: %+v, %v", snaps, err)
	}
	status := map[int64]string{}
	for _, s := range snaps {
		status[s.ID] = s.Status
	}
	want := map[int64]string{1: "ok", 2: "deleted", 3: "ok", 4: "ok", 5: "ok"}
	if fmt.Sprint(status) != fmt.Sprint(want) {
		t.Fatalf("after retention: %v, want %v", status, want)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(sn.Dir), "2")); !os.IsNotExist(err) {
		t.Fatalf("snapshot 2's files are still there: %v", err)
	}

	// One flipped byte in the stored archive of the newest, which the next test takes.
	if sn, ok, err = h.d.store.Snapshot(ctx, 5); err != nil || !ok {
		t.Fatalf("snapshot 5: %v", err)
	}
	archive := filepath.Join(sn.Dir, "data.tar.zst")
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(archive, b, 0o600); err != nil {
		t.Fatal(err)
	}
	err = h.api.BackupTest(ctx, h.stack, "data", 1)
	if err == nil || !strings.Contains(err.Error(), "data.tar.zst") {
		t.Fatalf("a flipped byte: the test must fail naming the file, got %v", err)
	}
	t.Logf("flipped byte: %v", err)
	if v := h.metric(fmt.Sprintf(`gitopsd_restore_test_failures_total{stack=%q,volume="data"}`, h.stack)); v != "1" {
		t.Fatalf("restore_test_failures_total = %q, want 1", v)
	}
	s := h.stackStatus(h.stack)
	if len(s.Backups) != 1 || s.Backups[0].LastTestOK || s.Backups[0].LastSuccess == "" {
		t.Fatalf("status backups after a failed test: %+v", s.Backups)
	}
	if v := h.metric(fmt.Sprintf(`gitopsd_backup_size_bytes{stack=%q,volume="data"}`, h.stack)); v == "" || v == "0" {
		t.Fatalf("backup_size_bytes = %q", v)
	}

	// A drift, healed; then every metric name gitopsd documents is on /metrics
	// (gitopsd_drift has a series only while a drift is open: the report
	// test of drift_test.go sees it).
	if _, err := h.docker.ContainerStop(ctx, h.containers(h.stack)["app#1"], client.ContainerStopOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitDrift("stopped, healed", 30*time.Second, closedAs("stopped", "healed"))
	body := h.scrape()
	for _, name := range []string{
		"gitopsd_stack_info", "gitopsd_sync_total", "gitopsd_sync_duration_seconds", "gitopsd_rollbacks_total",
		"gitopsd_source_last_fetch_timestamp_seconds", "gitopsd_source_fetch_errors_total", "gitopsd_drift_events_total",
		"gitopsd_backup_last_success_timestamp_seconds", "gitopsd_backup_size_bytes", "gitopsd_backup_duration_seconds",
		"gitopsd_restore_test_last_success_timestamp_seconds", "gitopsd_restore_test_failures_total", "gitopsd_build_info",
	} {
		if !strings.Contains(body, "\n# TYPE "+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	// The failed restore test and the drift were notified.
	seen := map[string]bool{}
	for !seen[notify.RestoreTestFailed] || !seen[notify.Drift] {
		select {
		case e := <-notified:
			if e.Stack != h.stack || e.Host != "testhost" || e.Detail == "" {
				t.Fatalf("notification %+v", e)
			}
			seen[e.Event] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("notifications received: %v; want restore_test_failed and drift", seen)
		}
	}
}

// helperObjects counts the helper containers and scratch volumes of the stack left behind.
// deployBackupStack commits backupStack, starts the daemon, syncs it and
// fills the stack's volume with oddTree; it returns the volume's name.
func (h *driftHarness) deployBackupStack() string {
	h.t.Helper()
	t := h.t
	h.repo.Commit(t, "v1", map[string]string{"stacks/" + h.stack + "/compose.yaml": backupStack(h.image, h.port)})
	h.api = runDaemon(t, h.harness)
	ctx := context.Background()
	if err := h.api.Sync(ctx, "", false, true); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	volume := h.stack + "_data"
	if err := h.d.engine.WriteVolume(ctx, volume, bytes.NewReader(oddTree(t)), nil); err != nil {
		t.Fatalf("fill the volume: %v", err)
	}
	return volume
}

// volumeMatches fails the test unless volume holds exactly what the
// snapshot in dir says it held: every entry read back against its manifest.
func (h *driftHarness) volumeMatches(volume, dir string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := format.ReadManifest(dir)
	if err != nil {
		h.t.Fatal(err)
	}
	rc, err := h.d.engine.ReadVolume(ctx, volume, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rc.Close()
	if err := format.Compare(ctx, m, rc); err != nil {
		h.t.Fatalf("volume %s differs from the snapshot in %s: %v", volume, dir, err)
	}
}

func (h *driftHarness) helperObjects() int {
	h.t.Helper()
	n, err := testenv.CountHelpers(h.docker, h.stack)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// dataStack is an app on a host port whose volume is snapshotted before
// every deploy that changes it.
func dataStack(image string, port int, version string) string {
	return fmt.Sprintf(`x-gitopsd:
  backup:
    before_deploy: true
    volumes:
      data: {keep: {last: 5}}
services:
  app:
    image: %[1]s
    pull_policy: never
    ports: ["127.0.0.1:%[2]d:8080"]
    environment: {VERSION: %[3]s}
    volumes: ["data:/data"]
    healthcheck: `+probeCheck+`
    labels: {%[4]s: "1"}
`+testenv.LabelledDefault("data"), image, port, version, testenv.TestLabel)
}

// TestRollbackWithData: a deploy that changes a service using a volume is
// preceded by a snapshot of it, and `rollback --with-data` brings back
// both the revision and the data it ran with.
func TestRollbackWithData(t *testing.T) {
	h := newHarness(t, nil)
	name := testenv.Project(t, "withdata")
	testenv.CleanupHelpers(t, name)
	port := testenv.FreePort(t)
	file := "stacks/" + name + "/compose.yaml"
	v1 := h.repo.Commit(t, "v1", map[string]string{file: dataStack(h.image, port, "v1")})
	c := runDaemon(t, h)
	ctx := context.Background()
	if err := c.Sync(ctx, "", false, true); err != nil {
		t.Fatal(err)
	}
	putFile(t, port, "/data/state", "written by v1")

	h.repo.Commit(t, "v2", map[string]string{file: dataStack(h.image, port, "v2")})
	if err := c.Sync(ctx, "", false, true); err != nil {
		t.Fatal(err)
	}
	snaps, err := c.Snapshots(ctx, name)
	if err != nil || len(snaps) != 1 || snaps[0].Trigger != "before_deploy" || snaps[0].Status != "ok" {
		t.Fatalf("snapshots after the v2 deploy: %+v, %v", snaps, err)
	}
	if got, err := waitServes(port, "v2", 10*time.Second); err != nil {
		t.Fatalf("v2: %q, %v", got, err)
	}
	putFile(t, port, "/data/state", "written by v2")

	if err := c.Rollback(ctx, name, "", true, true); err != nil {
		t.Fatalf("rollback --with-data: %v", err)
	}
	if got, err := waitServes(port, "v1", 10*time.Second); err != nil {
		t.Fatalf("after the rollback: %q, %v", got, err)
	}
	if got := getFile(t, port, "/data/state"); got != "written by v1" {
		t.Fatalf("after rollback --with-data the volume holds %q", got)
	}
	if s := h.stackStatus(name); s.Revision != v1 || !s.Pinned {
		t.Fatalf("status after the rollback: %+v", s)
	}
}

func putFile(t *testing.T, port int, path, content string) {
	t.Helper()
	if code := putFileStatus(t, port, path, content); code != http.StatusNoContent {
		t.Fatalf("put %s: status %d", path, code)
	}
}

// putFileStatus writes path through the testapp on port and returns the
// status it answered.
func putFileStatus(t *testing.T, port int, path, content string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://127.0.0.1:%d/file?path=%s", port, path), strings.NewReader(content))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("put %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func getFile(t *testing.T, port int, path string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/file?path=%s", port, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestBackupSchedulesPauseAndHook: snapshots and restore tests run on their
// schedules (here every second), one volume with its service paused, one
// with a hook exec'd in the service; the service is left running, unpaused,
// the same container, with no drift; retention holds.
func TestBackupSchedulesPauseAndHook(t *testing.T) {
	h := newHarness(t, nil)
	name := testenv.Project(t, "sched")
	testenv.CleanupHelpers(t, name)
	file := "stacks/" + name + "/compose.yaml"
	h.repo.Commit(t, "v1", map[string]string{file: scheduledStack(h.image, `"@every 1s"`)})
	h.d.backupEvery = 200 * time.Millisecond
	c := runDaemon(t, h)
	ctx := context.Background()
	if err := c.Sync(ctx, "", false, true); err != nil {
		t.Fatal(err)
	}
	app := h.containers(name)["app#1"]

	deadline := time.Now().Add(60 * time.Second)
	for {
		snaps, err := c.Snapshots(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		tested := false
		for _, s := range snaps {
			if s.Trigger == "schedule" {
				count[s.Volume]++
			}
			tested = tested || s.TestOK
		}
		if count["data"] >= 3 && count["logs"] >= 2 && tested {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scheduled jobs in 60s: %v, a test passed: %v; %+v", count, tested, snaps)
		}
		time.Sleep(200 * time.Millisecond) // the daemon's schedule ticks on its own
	}
	// A revision whose schedules never come due again; the sync queues
	// behind the job in flight, so once it returns no job runs any more,
	// and the last one applied its retention.
	h.repo.Commit(t, "v2: yearly", map[string]string{file: scheduledStack(h.image, `"@yearly"`)})
	if err := c.Sync(ctx, "", false, true); err != nil {
		t.Fatal(err)
	}
	snaps, err := c.Snapshots(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	ok := map[string]int{}
	for _, s := range snaps {
		if s.Status == "ok" {
			ok[s.Volume]++
		}
	}
	// keep last 2 (+ the newest tested good one) and last 1 (never tested: nothing more).
	if ok["data"] < 2 || ok["data"] > 3 || ok["logs"] != 1 {
		t.Fatalf("retention: %v ok snapshots: %+v", ok, snaps)
	}
	st := h.inspect(app).State
	if got := h.containers(name)["app#1"]; got != app || !st.Running || st.Paused {
		t.Fatalf("app after the scheduled snapshots: %s, %+v", got, st)
	}
	if n, err := h.d.store.CountDrifts(ctx, name); err != nil || n != 0 {
		t.Fatalf("pausing for snapshots was taken for drift: %d %v", n, err)
	}
}

// scheduledStack snapshots and tests two volumes on the schedule given,
// data with its service paused, logs with a hook exec'd in it.
func scheduledStack(image, schedule string) string {
	return fmt.Sprintf(`x-gitopsd:
  backup:
    volumes:
      data:
        schedule: %[3]s
        test: %[3]s
        test_level: 2
        keep: {last: 2}
        pause: [app]
      logs:
        schedule: %[3]s
        keep: {last: 1}
        hook: {service: app, before: ["/testapp", "probe"], after: ["/testapp", "probe"]}
services:
  app:
    image: %[1]s
    pull_policy: never
    volumes: ["data:/data", "logs:/logs"]
    healthcheck: `+probeCheck+`
    labels: {%[2]s: "1"}
networks:
  default:
    labels: {%[2]s: "1"}
volumes:
  data:
    labels: {%[2]s: "1"}
  logs:
    labels: {%[2]s: "1"}
`, image, testenv.TestLabel, schedule)
}
