package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// remoteRig is what a remote copies test needs of its server: the
// daemon's URL, the credentials that work and the ones that fail first
// (and what the failure must say), and a way to flip a byte of a stored
// file.
type remoteRig struct {
	url       string
	good, bad string // credentials file contents
	badSays   []string
	secrets   []string // must never reach the log, the store or the metrics
	flip      func(t *testing.T, name string)
	prefix    string // of the copies' names, for flip
	serverLog func() string
}

// TestRemoteCopiesS3 runs the remote flow against SeaweedFS, starting
// with credentials the server refuses.
func TestRemoteCopiesS3(t *testing.T) {
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	good, err := os.ReadFile(s3.CredentialsFile(t))
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, wrongSecret := "gitopsdWRONGKEY42", "wrong-secret-0123456789abcdef"
	remoteFlow(t, remoteRig{
		url: s3.URL("backups", "fleet"), good: string(good), prefix: "fleet/",
		bad:     "AWS_ACCESS_KEY_ID=" + wrongKey + "\nAWS_SECRET_ACCESS_KEY=" + wrongSecret + "\nAWS_REGION=us-east-1\nS3_INSECURE=true\n",
		secrets: []string{s3.SecretKey, wrongKey, wrongSecret},
		flip: func(t *testing.T, name string) {
			s3.FlipByte(t, "backups", name)
		},
		serverLog: s3.Log,
	})
}

// TestRemoteCopiesSFTP runs the remote flow against OpenSSH's sshd,
// starting with a known_hosts that pins another host key: the upload is
// refused, and status says why.
func TestRemoteCopiesSFTP(t *testing.T) {
	s := testenv.StartSFTP(t)
	good, err := os.ReadFile(s.CredentialsFile(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := os.ReadFile(s.CredentialsFile(t, s.WrongKnownHosts(t)))
	if err != nil {
		t.Fatal(err)
	}
	remoteFlow(t, remoteRig{
		url: s.URL() + "/gitopsd", good: string(good), bad: string(bad), prefix: "gitopsd/",
		badSays: []string{"does not match", "refusing to connect"},
		flip: func(t *testing.T, name string) {
			file := filepath.Join(s.Root, filepath.FromSlash(name))
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0x01
			if err := os.WriteFile(file, data, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		serverLog: s.Log,
	})
}

// remoteFlow: a daemon whose remote refuses it at first records the
// failure (status, metrics) and keeps the copy pending; once the
// credentials are right the retry copies the snapshot, which backup list
// --remote lists and a level 3 restore test of the downloaded copy
// passes. One flipped byte in the remote archive fails that test.
// Retention keeps the volume's keep policy on the remote's own list. No
// credential reaches the log, the database or the metrics.
func remoteFlow(t *testing.T, rig remoteRig) {
	h := &driftHarness{harness: newHarness(t, nil)}
	h.stack = testenv.Project(t, "offsite")
	testenv.CleanupHelpers(t, h.stack)
	h.port = testenv.FreePort(t)
	h.metrics = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	var logMu sync.Mutex
	var log bytes.Buffer
	h.logTo = writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return log.Write(p) })
	creds := filepath.Join(t.TempDir(), "remote.env")
	if err := os.WriteFile(creds, []byte(rig.bad), 0o600); err != nil {
		t.Fatal(err)
	}
	h.stop()
	h.cfg.Metrics = h.metrics
	h.cfg.Backup.Remote = config.BackupRemote{URL: rig.url, CredentialsFile: creds}
	h.start()
	h.d.offsite.MinBackoff, h.d.offsite.MaxBackoff = 100*time.Millisecond, 300*time.Millisecond
	ctx := context.Background()
	h.deployBackupStack()
	brief := func() api.BackupBrief {
		for _, s := range h.status().Stacks {
			if s.Name == h.stack && len(s.Backups) == 1 {
				return s.Backups[0]
			}
		}
		return api.BackupBrief{}
	}

	if err := h.api.BackupRun(ctx, h.stack, "", true); err != nil {
		t.Fatalf("backup run: %v", err)
	}
	waitFor30s(t, "the refused upload in status", func() bool { return brief().RemoteLastError != "" })
	b := brief()
	if b.RemotePending != 1 || b.RemoteLastSuccess != "" {
		t.Fatalf("after a refused upload: %+v, want one pending copy and no success", b)
	}
	for _, want := range rig.badSays {
		if !strings.Contains(b.RemoteLastError, want) {
			t.Errorf("status's remote error does not say %q: %s", want, b.RemoteLastError)
		}
	}
	if v := h.metric(fmt.Sprintf(`gitopsd_backup_remote_pending{stack=%q,volume="data"}`, h.stack)); v != "1" {
		t.Errorf("remote_pending metric = %q, want 1", v)
	}

	// The operator fixes the credentials; the retry needs no restart.
	if err := os.WriteFile(creds, []byte(rig.good), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor30s(t, "the copy to count", func() bool { b := brief(); return b.RemotePending == 0 && b.RemoteLastSuccess != "" })
	if b := brief(); b.RemoteLastError != "" {
		t.Errorf("status still shows an error after the copy counted: %s", b.RemoteLastError)
	}
	local, err := h.api.Snapshots(ctx, h.stack)
	if err != nil || len(local) != 1 {
		t.Fatalf("local snapshots: %+v %v", local, err)
	}
	copies, err := h.api.RemoteSnapshots(ctx, h.stack, false)
	if err != nil {
		t.Fatalf("backup list --remote: %v", err)
	}
	if len(copies) != 1 || copies[0].ID != local[0].Name || copies[0].Host != "testhost" || copies[0].Volume != "data" ||
		copies[0].State != "committed" || copies[0].SizeBytes != local[0].SizeBytes {
		t.Fatalf("backup list --remote: %+v, want the one copy of snapshot %s", copies, local[0].Name)
	}

	if err := h.api.BackupTestRemote(ctx, h.stack, "data", 3); err != nil {
		t.Fatalf("backup test --remote --level 3: %v\n%s", err, rig.serverLog())
	}
	copies, _ = h.api.RemoteSnapshots(ctx, h.stack, false)
	if len(copies) != 1 || !copies[0].LastTestOK || copies[0].LastTestLevel != 3 {
		t.Fatalf("the passed test is not listed: %+v", copies)
	}
	if v := h.metric(fmt.Sprintf(`gitopsd_backup_remote_last_success_timestamp_seconds{stack=%q,volume="data"}`, h.stack)); v == "" || v == "0" {
		t.Errorf("remote last success metric = %q", v)
	}

	rig.flip(t, rig.prefix+"testhost/"+h.stack+"/data/"+local[0].Name+"/data.tar.zst")
	err = h.api.BackupTestRemote(ctx, h.stack, "data", 3)
	if err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("a flipped byte in the remote archive: the test says %v, want a sha256 mismatch", err)
	}
	copies, _ = h.api.RemoteSnapshots(ctx, h.stack, false)
	if len(copies) != 1 || copies[0].LastTestOK || copies[0].LastTestError == "" {
		t.Fatalf("the failed test is not listed: %+v", copies)
	}

	// keep: {last: 3}: after three more snapshots the remote holds the
	// three newest copies, the damaged one gone.
	for range 3 {
		if err := h.api.BackupRun(ctx, h.stack, "", true); err != nil {
			t.Fatalf("backup run: %v", err)
		}
	}
	waitFor30s(t, "the copies to count", func() bool { return brief().RemotePending == 0 })
	local, _ = h.api.Snapshots(ctx, h.stack)
	waitFor30s(t, "remote retention", func() bool {
		copies, err = h.api.RemoteSnapshots(ctx, h.stack, false)
		return err == nil && len(copies) == 3
	})
	for i, c := range copies {
		if c.ID != local[i].Name {
			t.Fatalf("remote copy %d is %s, want the snapshot %s (local: %+v)", i, c.ID, local[i].Name, local)
		}
	}

	db, _ := os.ReadFile(filepath.Join(h.cfg.StateDir, "gitopsd.db"))
	wal, _ := os.ReadFile(filepath.Join(h.cfg.StateDir, "gitopsd.db-wal"))
	metrics := h.scrapeAll()
	logMu.Lock()
	logged := log.String()
	logMu.Unlock()
	for _, secret := range rig.secrets {
		for where, text := range map[string]string{"log": logged, "database": string(db) + string(wal), "metrics": metrics} {
			if strings.Contains(text, secret) {
				t.Errorf("a credential reached the %s", where)
			}
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// scrapeAll is the whole /metrics text.
func (h *driftHarness) scrapeAll() string {
	h.t.Helper()
	return scrape(h.t, h.metrics)
}
