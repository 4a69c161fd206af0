package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"filippo.io/age"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/backup/remote"
	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/notify"
	"github.com/gitopsd/gitopsd/internal/secrets"
	"github.com/gitopsd/gitopsd/internal/store"
)

// newOffsite sets up the copies to backup.remote. The credentials file is
// read here, so a missing or malformed one stops the start, and its
// secret values join the redactor: whatever a server or a library quotes
// back in an error never reaches the log, the store or a notification.
func newOffsite(cfg *config.Config, host string, st *store.Store, log *slog.Logger, redactor *secrets.Redactor) (*backup.Offsite, error) {
	rc := cfg.Backup.Remote
	loc, err := remote.ParseURL(rc.URL)
	if err != nil {
		return nil, fmt.Errorf("config: backup.remote.url: %w", err)
	}
	creds, err := remote.ReadCredentials(rc.CredentialsFile, loc.Scheme)
	if err != nil {
		return nil, fmt.Errorf("config: backup.remote.credentials_file: %w", err)
	}
	redactor.Add("", creds.AccessKeyID, creds.SecretAccessKey)
	o := &backup.Offsite{
		Store: st, Log: log, Host: host, Where: loc.String(), Dir: filepath.Join(cfg.StateDir, "remote"),
		Open: func(ctx context.Context) (remote.Remote, error) {
			return remote.Open(ctx, rc.URL, rc.CredentialsFile, remote.DefaultTimeouts)
		},
	}
	for i, r := range rc.Recipients {
		rec, err := age.ParseX25519Recipient(r)
		if err != nil {
			return nil, fmt.Errorf("config: backup.remote.recipients[%d]: %w", i, err)
		}
		o.Recipients = append(o.Recipients, rec)
	}
	return o, nil
}

// observeOffsite puts an upload's outcome into the metrics, and tells
// people of a copy's first failure (the retries would repeat it every few
// minutes; the alert covers a copy that stays behind).
func (d *Daemon) observeOffsite(e backup.OffsiteEvent) {
	d.metrics.RemoteCopy(e.Stack, e.Volume, e.Pending, e.Uploaded, e.Err != nil)
	if e.Err != nil && e.Attempt == 1 {
		d.notifier.Send(notify.BackupFailed, e.Stack, fmt.Sprintf("copy of a snapshot of volume %s to the remote failed (retried later): %s", e.Volume, e.Err))
	}
}

// remoteBrief fills a volume's remote part of status: copies waiting, the
// last one that counted, and the last failure if none counted since.
func remoteBrief(b *api.BackupBrief, copies []store.RemoteCopy) {
	var lastOK, lastFail time.Time
	var lastErr string
	for _, c := range copies {
		if c.Volume != b.Volume {
			continue
		}
		if c.State == store.CopyPending {
			b.RemotePending++
		}
		if c.UploadedAt.After(lastOK) {
			lastOK = c.UploadedAt
		}
		if c.FailedAt.After(lastFail) {
			lastFail, lastErr = c.FailedAt, c.Error
		}
	}
	b.RemoteLastSuccess = rfc3339(lastOK)
	if lastFail.After(lastOK) {
		b.RemoteLastError, b.RemoteLastErrorAt = lastErr, rfc3339(lastFail)
	}
}

// RemoteSnapshots lists the copies on the remote, of this host or all.
// It runs beside the loop: it only reads the remote.
func (d *Daemon) RemoteSnapshots(ctx context.Context, stackName string, allHosts bool) ([]api.RemoteSnapshot, error) {
	if d.offsite == nil {
		return nil, fmt.Errorf("backup list --remote: %w", backup.ErrNoRemote)
	}
	list, err := d.offsite.List(ctx, stackName, allHosts)
	if err != nil {
		return nil, d.redacted(err)
	}
	out := make([]api.RemoteSnapshot, 0, len(list))
	for _, c := range list {
		s := api.RemoteSnapshot{Host: c.Host, Stack: c.Stack, Volume: c.Volume.Volume, ID: c.ID, State: string(c.State), Problem: c.Problem}
		if m := c.Manifest; m != nil {
			s.CreatedAt, s.SizeBytes, s.Files, s.DataBytes, s.Encrypted = rfc3339(m.CreatedAt), m.ArchiveSize, int64(m.Files), m.Bytes, m.Encrypted
		}
		if c.Test.ID != 0 {
			s.TestedAt, s.LastTestOK, s.LastTestLevel, s.LastTestError = rfc3339(c.Test.FinishedAt), c.Test.OK, c.Test.Level, c.Test.Error
		}
		out = append(out, s)
	}
	return out, nil
}
