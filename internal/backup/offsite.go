package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	gosync "sync"
	"time"

	"filippo.io/age"

	"github.com/gitopsd/gitopsd/internal/backup/format"
	"github.com/gitopsd/gitopsd/internal/backup/policy"
	"github.com/gitopsd/gitopsd/internal/backup/remote"
	"github.com/gitopsd/gitopsd/internal/store"
)

// Offsite copies snapshots to the remote (backup.remote) and keeps the
// remote's retention. It runs beside the reconcile loop, not on it: an
// upload may take an hour on a slow uplink and must never hold a snapshot,
// a sync or a heal. It reads only snapshot folders whose copy is pending,
// which local retention leaves alone, so it needs no lock with the Runner.
//
// A copy is recorded (store.CopyPending) when its snapshot is taken, before
// anything is sent; it is marked uploaded only once remote.Upload read it
// back whole. A crash, a kill or a remote that went away leaves it
// pending, and it is tried again with backoff; remote.Upload finishes a
// copy cut short, so nothing half-written is ever counted.
type Offsite struct {
	Store *store.Store
	Log   *slog.Logger
	// Host is this host's name: the first folder of its copies.
	Host string
	// Where is the remote's URL without credentials, for the log.
	Where string
	// Open connects to the remote; each pass opens its own connection.
	Open func(ctx context.Context) (remote.Remote, error)
	// Recipients, if any, are the age keys copies of unencrypted
	// snapshots are encrypted to (backup.remote.recipients). A snapshot
	// the stack already encrypts is sent as it is.
	Recipients []age.Recipient
	// Dir holds the encrypted copies waiting to be sent (Dir/sealed) and
	// the remote copies downloaded for a test (Dir/tmp).
	Dir string
	// Observe, if set, is told of every upload that finished or failed.
	Observe func(OffsiteEvent)
	// MinBackoff and MaxBackoff space the retries of a failed upload:
	// doubling from the first, capped at the second, each with jitter.
	MinBackoff, MaxBackoff time.Duration

	wakeOnce gosync.Once
	wake     chan struct{}
}

// OffsiteEvent is a change in a volume's copies: one queued, one that
// counts (Uploaded: when), or a failed attempt (Err).
type OffsiteEvent struct {
	Stack, Volume string
	Uploaded      time.Time
	Err           error
	// Pending is how many copies of the volume wait to be sent, after it.
	Pending int
	// Attempt numbers a failed attempt at one copy (1: the first).
	Attempt int
}

// Default backoff of failed uploads.
const (
	DefaultMinBackoff = 30 * time.Second
	DefaultMaxBackoff = 30 * time.Minute
)

// CrashUploadHalfway kills the process once 1 MiB of a snapshot's archive
// was handed to the remote: the copy is half-sent and has no marker.
const CrashUploadHalfway = "upload:halfway"

func (o *Offsite) init() {
	o.wakeOnce.Do(func() { o.wake = make(chan struct{}, 1) })
}

// Kick makes Run look for due copies now.
func (o *Offsite) Kick() {
	o.init()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Enqueue records that a good snapshot is to be copied, under the keep
// policy its remote copies follow, and wakes the uploader.
func (o *Offsite) Enqueue(ctx context.Context, sn store.Snapshot, keep policy.Keep) error {
	k, err := json.Marshal(keep)
	if err != nil {
		return err
	}
	if err := o.Store.AddRemoteCopy(ctx, store.RemoteCopy{SnapshotID: sn.ID, Stack: sn.Stack, Volume: sn.Volume, NextAt: time.Now(), Keep: string(k)}); err != nil {
		return err
	}
	o.observe(ctx, sn.Stack, sn.Volume, time.Time{}, nil, 0)
	o.Kick()
	return nil
}

// Run sends due copies until ctx ends: at once when kicked, else when the
// next retry comes due.
func (o *Offsite) Run(ctx context.Context) {
	o.init()
	_ = os.RemoveAll(filepath.Join(o.Dir, "tmp")) // downloads a stop cut short
	if len(o.Recipients) == 0 {
		o.Log.Warn("backup.remote has no recipients: copies of unencrypted snapshots are stored on the remote as they are, readable by whoever can read the remote", "remote", o.Where)
	}
	o.observePending(ctx)
	for {
		o.Pass(ctx)
		wait := time.Hour
		if next, err := o.Store.NextRemoteCopy(ctx); err == nil && !next.IsZero() {
			wait = max(time.Until(next), 0) + 10*time.Millisecond
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-o.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// Pass sends every copy that is due, oldest snapshot first.
func (o *Offsite) Pass(ctx context.Context) {
	due, err := o.Store.DueRemoteCopies(ctx, time.Now())
	if err != nil {
		o.Log.Error("remote copies: read the pending ones", "err", err)
		return
	}
	if len(due) == 0 {
		return
	}
	r, err := o.Open(ctx)
	if err != nil {
		for _, c := range due {
			o.failed(ctx, c, fmt.Errorf("open %s: %w", o.Where, err))
		}
		return
	}
	defer r.Close()
	r = crashRemote(r)
	for i, c := range due {
		if ctx.Err() != nil {
			return
		}
		if err := o.upload(ctx, r, c); err != nil {
			// The remote is likely away: the others wait with this one
			// rather than each wait out a timeout now.
			for _, rest := range due[i:] {
				o.failed(ctx, rest, err)
			}
			return
		}
	}
}

// upload sends one copy and records it; an error is recorded by the caller.
func (o *Offsite) upload(ctx context.Context, r remote.Remote, c store.RemoteCopy) error {
	sn, ok, err := o.Store.Snapshot(ctx, c.SnapshotID)
	if err != nil {
		return err
	}
	log := o.Log.With("stack", c.Stack, "volume", c.Volume, "snapshot", c.SnapshotID, "remote", o.Where)
	if !ok || sn.Status != store.SnapshotOK || !format.Committed(sn.Dir) {
		log.Warn("remote copy abandoned: the local snapshot is gone")
		return o.Store.SetRemoteCopyState(ctx, c.SnapshotID, store.CopyAbandoned, time.Now())
	}
	dir := sn.Dir
	if len(o.Recipients) > 0 && !sn.Encrypted {
		if dir, err = o.seal(ctx, sn); err != nil {
			return err
		}
	}
	began := time.Now()
	key := o.key(sn)
	if _, err := remote.Upload(ctx, r, key, dir); err != nil {
		return err
	}
	done := time.Now()
	if err := o.Store.SetRemoteCopyState(context.WithoutCancel(ctx), c.SnapshotID, store.CopyUploaded, done); err != nil {
		return err
	}
	if dir != sn.Dir {
		_ = os.RemoveAll(dir)
	}
	log.Info("snapshot copied to the remote", "copy", key.String(), "archive_bytes", sn.SizeBytes, "took", time.Since(began).Round(time.Millisecond))
	o.observe(ctx, c.Stack, c.Volume, done, nil, 0)
	var keep policy.Keep
	if err := json.Unmarshal([]byte(c.Keep), &keep); err != nil {
		return nil // not the upload's fault; keep everything
	}
	if err := o.retain(ctx, r, c.Stack, c.Volume, keep); err != nil {
		log.Error("remote retention failed", "err", err)
	}
	return nil
}

func (o *Offsite) key(sn store.Snapshot) remote.Key {
	return remote.Key{Volume: remote.Volume{Host: o.Host, Stack: sn.Stack, Volume: sn.Volume}, ID: sn.Name}
}

// seal returns the folder of an encrypted copy of an unencrypted
// snapshot, writing it unless a previous attempt finished it: a retry
// must send the same bytes, or a copy committed before a crash would
// differ from the one sent again.
func (o *Offsite) seal(ctx context.Context, sn store.Snapshot) (string, error) {
	dir := filepath.Join(o.Dir, "sealed", sn.Name)
	if format.Committed(dir) {
		return dir, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if _, err := format.Seal(ctx, sn.Dir, dir, o.Recipients); err != nil {
		return "", err
	}
	return dir, nil
}

// failed records a failed attempt and when the next may run.
func (o *Offsite) failed(ctx context.Context, c store.RemoteCopy, err error) {
	now := time.Now()
	next := now.Add(o.backoff(c.Attempts + 1))
	o.Log.Error("remote copy failed; trying again later", "stack", c.Stack, "volume", c.Volume, "snapshot", c.SnapshotID,
		"remote", o.Where, "attempt", c.Attempts+1, "next", next.UTC().Format(time.RFC3339), "err", err)
	if serr := o.Store.RemoteCopyFailed(context.WithoutCancel(ctx), c.SnapshotID, err.Error(), now, next); serr != nil {
		o.Log.Error("remote copies: record a failure", "err", serr)
	}
	o.observe(ctx, c.Stack, c.Volume, time.Time{}, err, c.Attempts+1)
}

// backoff is the wait before attempt n+1: doubling from MinBackoff,
// capped at MaxBackoff, with up to a fifth taken off at random so that
// hosts cut off together do not all come back at once.
func (o *Offsite) backoff(n int) time.Duration {
	lo, hi := o.MinBackoff, o.MaxBackoff
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi < lo {
		hi = max(lo, DefaultMaxBackoff)
	}
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

func (o *Offsite) observe(ctx context.Context, stack, volume string, uploaded time.Time, err error, attempt int) {
	if o.Observe == nil {
		return
	}
	cs, serr := o.Store.RemoteCopies(ctx, stack, volume)
	if serr != nil {
		return
	}
	pending := 0
	for _, c := range cs {
		if c.State == store.CopyPending {
			pending++
		}
	}
	o.Observe(OffsiteEvent{Stack: stack, Volume: volume, Uploaded: uploaded, Err: err, Pending: pending, Attempt: attempt})
}

// observePending tells Observe of every volume with copies, at start, so
// the metrics show what waits, and the last copy that counted, from
// before a restart.
func (o *Offsite) observePending(ctx context.Context) {
	if o.Observe == nil {
		return
	}
	cs, err := o.Store.RemoteCopies(ctx, "", "")
	if err != nil {
		return
	}
	type vol struct{ stack, volume string }
	pending, last := map[vol]int{}, map[vol]time.Time{}
	for _, c := range cs {
		k := vol{c.Stack, c.Volume}
		if c.State == store.CopyPending {
			pending[k]++
		}
		if c.UploadedAt.After(last[k]) || last[k].IsZero() {
			last[k] = c.UploadedAt
		}
	}
	for k, at := range last {
		o.Observe(OffsiteEvent{Stack: k.stack, Volume: k.volume, Uploaded: at, Pending: pending[k]})
	}
}

// retain applies the volume's keep policy to this host's copies on the
// remote, counted on the remote's own list: copies some other tool or a
// previous state_dir left count as much as the ones this database knows.
// Copies that are not committed are left alone (one may be an upload
// under way); damaged ones do not count as kept.
func (o *Offsite) retain(ctx context.Context, r remote.Remote, stackName, volume string, keep policy.Keep) error {
	if keep == (policy.Keep{}) {
		return nil
	}
	v := remote.Volume{Host: o.Host, Stack: stackName, Volume: volume}
	list, err := remote.List(ctx, r, v, remote.CheckSizes)
	if err != nil {
		return err
	}
	var snaps []policy.Snapshot
	for _, s := range list {
		if s.State != remote.StateCommitted && s.State != remote.StateVerified {
			continue
		}
		tested := false
		if t, ok, err := o.Store.LastRemoteTest(ctx, o.Host, stackName, volume, s.ID, ""); err == nil && ok {
			tested = t.OK
		}
		snaps = append(snaps, policy.Snapshot{ID: s.ID, CreatedAt: s.Manifest.CreatedAt, TestedOK: tested})
	}
	_, remove := policy.Retain(snaps, keep, time.Local)
	var errs []error
	for _, p := range remove {
		key := remote.Key{Volume: v, ID: p.ID}
		if err := remote.Delete(ctx, r, key); err != nil {
			errs = append(errs, err)
			continue
		}
		if sn, ok, err := o.Store.SnapshotByName(ctx, stackName, volume, p.ID); err == nil && ok {
			errs = append(errs, o.Store.SetRemoteCopyState(ctx, sn.ID, store.CopyDeleted, time.Now()))
		}
		o.Log.Info("remote copy removed by retention", "stack", stackName, "volume", volume, "copy", key.String())
	}
	return errors.Join(errs...)
}

// RemoteCopy is one copy on the remote, for `backup list --remote`.
type RemoteCopy struct {
	remote.Snapshot
	// Test is the newest restore test of this copy run here (zero ID: none).
	Test store.RemoteTest
}

// List lists the copies on the remote of every host (or only this one),
// of every stack (or one), newest first within each volume. It reads each
// copy's marker, manifest and archive size, not the archives.
func (o *Offsite) List(ctx context.Context, stackName string, allHosts bool) ([]RemoteCopy, error) {
	r, err := o.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", o.Where, err)
	}
	defer r.Close()
	hosts := []string{o.Host}
	if allHosts {
		if hosts, err = r.List(ctx, ""); err != nil {
			return nil, fmt.Errorf("list hosts on %s: %w", o.Where, err)
		}
	}
	var out []RemoteCopy
	for _, host := range hosts {
		stacks, err := r.List(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("list %s on %s: %w", host, o.Where, err)
		}
		if stackName != "" {
			stacks = slices.DeleteFunc(stacks, func(s string) bool { return s != stackName })
		}
		for _, st := range stacks {
			vols, err := r.List(ctx, host+"/"+st)
			if err != nil {
				return nil, fmt.Errorf("list %s/%s on %s: %w", host, st, o.Where, err)
			}
			for _, vol := range vols {
				copies, err := remote.List(ctx, r, remote.Volume{Host: host, Stack: st, Volume: vol}, remote.CheckSizes)
				if err != nil {
					return nil, err
				}
				for _, c := range copies {
					rc := RemoteCopy{Snapshot: c}
					if t, ok, err := o.Store.LastRemoteTest(ctx, host, st, vol, c.ID, ""); err == nil && ok {
						rc.Test = t
					}
					out = append(out, rc)
				}
			}
		}
	}
	return out, nil
}

// Fetch downloads the newest committed copy of a host's stack volume (or
// the copy named name) into dir, which must not exist, checking the
// archive against its manifest as it streams; a copy that does not match
// is an error, never a fallback to an older one, so that a test of the
// newest copy fails when that copy is damaged. The snapshot it returns is
// what the Runner tests and restores from (Runner.TestSnapshot): Dir is
// dir, Name the copy's, ID 0; on a failed download it still names the
// copy. A volume without a committed copy is an error wrapping
// ErrNoSnapshot.
func (o *Offsite) Fetch(ctx context.Context, host, stackName, volume, name, dir string) (store.Snapshot, error) {
	r, err := o.Open(ctx)
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("open %s: %w", o.Where, err)
	}
	defer r.Close()
	v := remote.Volume{Host: host, Stack: stackName, Volume: volume}
	list, err := remote.List(ctx, r, v, remote.CheckSizes)
	if err != nil {
		return store.Snapshot{}, err
	}
	var pick *remote.Snapshot
	for i := range list {
		if (name == "" || list[i].ID == name) && list[i].State == remote.StateCommitted {
			pick = &list[i]
			break
		}
	}
	if pick == nil {
		what := "committed copy"
		if name != "" {
			what = "committed copy " + name
		}
		return store.Snapshot{}, fmt.Errorf("%s on %s: no %s: %w", v, o.Where, what, ErrNoSnapshot)
	}
	got, err := remote.Download(ctx, r, pick.Key, dir)
	if err != nil {
		// Named, so that the failure is recorded against this copy.
		return store.Snapshot{Stack: stackName, Volume: volume, Name: pick.ID}, err
	}
	m := got.Manifest
	return store.Snapshot{Stack: stackName, Volume: volume, Name: pick.ID, StartedAt: m.CreatedAt, FinishedAt: m.CreatedAt,
		Status: store.SnapshotOK, Dir: dir, SizeBytes: m.ArchiveSize, Files: int64(m.Files), DataBytes: m.Bytes, Encrypted: m.Encrypted}, nil
}

// TempDir is a new empty folder for a download, under Dir/tmp (emptied at
// every start); the caller removes it.
func (o *Offsite) TempDir() (string, error) {
	base := filepath.Join(o.Dir, "tmp")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	return os.MkdirTemp(base, "copy-")
}
