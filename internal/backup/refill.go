package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gitopsd/gitopsd/internal/backup/remote"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// TriggerRemote marks a snapshot row whose files were downloaded from a
// remote copy (a replaced host refilling a volume, or `backup restore
// --from-host`), not taken on this host.
const TriggerRemote = "remote"

// Remote is where a volume's copies are looked for when this host has no
// snapshot of it.
type Remote struct {
	// Open connects to the remote; nil: no remote is configured.
	Open func(ctx context.Context) (remote.Remote, error)
	// Host is the host name the copies are filed under: this host's own
	// name, or a dead host's for `backup restore --from-host`.
	Host string
}

// Found is the copy a volume was filled from.
type Found struct {
	// Snapshot is the local snapshot restored; a remote copy is
	// downloaded and recorded as one (TriggerRemote) first.
	Snapshot store.Snapshot
	// From is "local", or the remote copy's URL and key.
	From string
	// TakenAt is when the copy's snapshot was taken (its manifest's time).
	TakenAt time.Time
}

// Describe says what a volume was filled from, for a deployment's step and
// the log: the snapshot, where it came from, and its age at now.
func (f Found) Describe(now time.Time) string {
	return fmt.Sprintf("snapshot %d (%s), taken %s, %s old", f.Snapshot.ID, f.From,
		f.TakenAt.UTC().Format(time.RFC3339), now.Sub(f.TakenAt).Round(time.Second))
}

// Refill fills a volume a deployment has just created, empty, from the
// newest good copy of this host's stack and volume: its newest good local
// snapshot, else the newest good copy on the remote (downloaded, recorded
// as a local snapshot, verified and restored by Restore). ok is false when
// there is no copy anywhere, and the volume stays empty.
//
// A copy that exists but cannot be had (the remote does not answer, every
// copy is damaged) is an error, never "no copy": the caller must not start
// the stack on an empty volume that its next snapshot would then keep.
func (r *Runner) Refill(ctx context.Context, st *stack.Stack, volume string, rem Remote) (found Found, ok bool, err error) {
	sn, err := r.pick(ctx, st.Name, volume, 0)
	switch {
	case err == nil:
		found = Found{Snapshot: sn, From: "local", TakenAt: sn.StartedAt}
		_, err = r.Restore(ctx, st, volume, sn.ID)
		return found, true, err
	case !errors.Is(err, ErrNoSnapshot):
		return found, false, err
	case rem.Open == nil:
		return found, false, nil
	}
	return r.RestoreFrom(ctx, st, volume, rem)
}

// RestoreFrom puts the newest good remote copy of rem.Host's stack and
// volume into this host's volume, through Restore (verified first, the
// services stopped around it). ok is false when the remote has no copy.
func (r *Runner) RestoreFrom(ctx context.Context, st *stack.Stack, volume string, rem Remote) (found Found, ok bool, err error) {
	found, ok, err = r.download(ctx, st.Name, volume, rem)
	if err != nil || !ok {
		return found, ok, err
	}
	_, err = r.Restore(ctx, st, volume, found.Snapshot.ID)
	return found, true, err
}

// download finds the newest good remote copy of rem.Host/stackName/volume
// and records it as a local snapshot of this host (TriggerRemote), so that
// list, test and restore see it as any other.
func (r *Runner) download(ctx context.Context, stackName, volume string, rem Remote) (Found, bool, error) {
	v := remote.Volume{Host: rem.Host, Stack: stackName, Volume: volume}
	fail := func(err error) (Found, bool, error) {
		return Found{}, false, fmt.Errorf("copy of %s from the remote: %w", v, err)
	}
	if rem.Open == nil {
		return fail(errors.New("no remote is configured (backup.remote)"))
	}
	conn, err := rem.Open(ctx)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	copies, err := remote.List(ctx, conn, v, remote.CheckSizes)
	if err != nil {
		return fail(err)
	}
	var good *remote.Snapshot
	var bad []string
	for _, c := range copies { // newest first
		if c.Unfinished() {
			continue // an upload cut short: no copy at all
		}
		if c.State == remote.StateCommitted {
			// Read back in full: only a copy whose archive has the
			// manifest's sha256 counts.
			c = remote.Verify(ctx, conn, c.Key)
		}
		if c.Good() {
			good = &c
			break
		}
		bad = append(bad, fmt.Sprintf("%s is %s: %s", c.ID, c.State, c.Problem))
	}
	if good == nil {
		if len(bad) > 0 {
			return fail(fmt.Errorf("no good copy: %s", strings.Join(bad, "; ")))
		}
		return Found{}, false, nil
	}
	m := good.Manifest
	// Named as the copy: the same snapshot under the same name everywhere.
	sn := store.Snapshot{Stack: stackName, Volume: volume, Name: good.ID, Trigger: TriggerRemote, StartedAt: m.CreatedAt.UTC(), Encrypted: m.Encrypted}
	if sn.ID, err = r.Store.StartSnapshot(ctx, sn); err != nil {
		return fail(err)
	}
	sn.Dir = filepath.Join(r.Dir, stackName, volume, strconv.FormatInt(sn.ID, 10))
	err = r.Store.SetSnapshotDir(ctx, sn.ID, sn.Dir)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(sn.Dir), 0o700)
	}
	if err == nil {
		_, err = remote.Download(ctx, conn, good.Key, sn.Dir)
	}
	sn.FinishedAt = time.Now().UTC()
	if err != nil {
		sn.Status, sn.Error = store.SnapshotFailed, err.Error()
	} else {
		sn.Status, sn.SizeBytes, sn.Files, sn.DataBytes = store.SnapshotOK, m.ArchiveSize, int64(m.Files), m.Bytes
	}
	if ferr := r.Store.FinishSnapshot(context.WithoutCancel(ctx), sn); ferr != nil {
		err = errors.Join(err, ferr)
	}
	if err != nil {
		return fail(err)
	}
	r.Log.Info("remote copy downloaded", "stack", stackName, "volume", volume, "copy", fmt.Sprintf("%s/%s", conn, good.Key), "snapshot", sn.ID)
	return Found{Snapshot: sn, From: fmt.Sprintf("remote %s/%s", conn, good.Key), TakenAt: m.CreatedAt}, true, nil
}
