package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/backup/format"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// Restore puts a snapshot (id 0: the newest good one) back into the volume.
//
// A restore never destroys before it is sure, and never leaves the volume
// empty or half-written:
//
//  1. The snapshot is verified first (Verify: the whole archive read,
//     decrypted and decompressed, its digest and every entry checked
//     against the manifest). A snapshot that fails is refused; nothing
//     was stopped or touched.
//  2. The restore is recorded (store.Restore), the services that mount
//     the volume are stopped (recorded too, see stopServices), and the
//     volume's current content is copied aside into a snapshot directory
//     of its own under Dir/.restore/<stack>/<volume> (same format,
//     committed, unencrypted: it stays on this host, beside the volume it
//     copies). Docker volumes cannot be renamed, so a scratch volume
//     could not be swapped in; a copy on the state disk also outlives a
//     crash, which a helper volume (removed by Recover) would not.
//  3. Only then is the volume emptied and filled from the snapshot, and
//     read back and compared entry by entry with the manifest.
//  4. If 3 fails, the old content is put back from the copy the same way.
//     If gitopsd dies during 3, the next start does that (Recover).
//  5. The services start again; the copy and the records go.
//
// The price is disk space on state_dir for one compressed copy of the
// volume while the restore runs; without it, the restore is refused in
// step 2 with the volume untouched.
func (r *Runner) Restore(ctx context.Context, st *stack.Stack, volume string, id int64) (store.Snapshot, error) {
	sn, err := r.pick(ctx, st.Name, volume, id)
	if err != nil {
		return sn, err
	}
	log := r.Log.With("stack", st.Name, "volume", volume, "snapshot", sn.ID)
	if err := format.Verify(ctx, sn.Dir, r.Identities); err != nil {
		log.Error("restore refused: the snapshot does not verify; the volume was not touched", "err", err)
		return sn, fmt.Errorf("restore snapshot %d into %s/%s: refused, the volume was not touched: %w", sn.ID, st.Name, volume, err)
	}
	m, err := format.ReadManifest(sn.Dir)
	if err != nil {
		return sn, fmt.Errorf("restore snapshot %d into %s/%s: %w", sn.ID, st.Name, volume, err)
	}
	if err := r.restorable(ctx, VolumeName(st, volume)); err != nil {
		return sn, fmt.Errorf("restore snapshot %d into %s/%s: refused, the volume was not touched: %w", sn.ID, st.Name, volume, err)
	}
	job := store.Restore{Stack: st.Name, Volume: volume, VolumeName: VolumeName(st, volume), SnapshotID: sn.ID,
		SafetyDir: filepath.Join(r.Dir, restoreDir, st.Name, volume), Phase: store.RestoreCopying}
	if _, err := os.Stat(job.SafetyDir); err == nil {
		return sn, fmt.Errorf("restore snapshot %d into %s/%s: %s holds the old content of an earlier restore that could not be put back; move it away first", sn.ID, st.Name, volume, job.SafetyDir)
	}
	if err := r.Store.PutRestore(ctx, job); err != nil {
		return sn, err
	}
	var users []string
	for _, name := range st.Project.ServiceNames() {
		if MountPoint(st, name, volume) != "" {
			users = append(users, name)
		}
	}
	resume, err := r.stopServices(ctx, st, users, ReasonRestore)
	if err == nil {
		err = r.swap(ctx, st.Name, sn, m, &job)
	} else if cerr := r.Store.DeleteRestore(context.WithoutCancel(ctx), st.Name, volume); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err := errors.Join(err, resume()); err != nil {
		return sn, fmt.Errorf("restore snapshot %d into %s/%s: %w", sn.ID, st.Name, volume, err)
	}
	log.Info("snapshot restored")
	return sn, nil
}

// aliveReader calls alive at most every aliveEvery while it is read.
type aliveReader struct {
	r     io.Reader
	alive func()
	last  time.Time
}

func (a *aliveReader) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(a.last) >= aliveEvery {
		a.last = now
		a.alive()
	}
	return a.r.Read(p)
}

// restorable refuses, before anything is stopped, a volume a restore
// could not empty (engine.EmptyVolume: plain local volumes only), and one
// that does not exist: a helper container would create it without
// compose's labels, and the stack would then take it for a stranger.
func (r *Runner) restorable(ctx context.Context, name string) error {
	res, err := r.Engine.Client().VolumeInspect(ctx, name, client.VolumeInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("volume %s does not exist (a sync creates it)", name)
	}
	if err != nil {
		return fmt.Errorf("inspect volume %s: %w", name, err)
	}
	if v := res.Volume; v.Driver != "local" || v.Mountpoint == "" || len(v.Options) > 0 {
		return fmt.Errorf("volume %s: only plain local volumes can be restored in place (driver %q, options %v)", name, v.Driver, v.Options)
	}
	return nil
}

// restoreDir is the folder under Runner.Dir that holds the old content of
// volumes being restored. Stack names cannot start with a dot.
const restoreDir = ".restore"

// swap copies the volume's content aside, fills the volume from the
// verified snapshot, and puts the old content back if that fails.
func (r *Runner) swap(ctx context.Context, stackName string, sn store.Snapshot, m format.Manifest, job *store.Restore) error {
	bg := context.WithoutCancel(ctx)
	rc, err := r.Engine.ReadVolume(ctx, job.VolumeName, r.helperLabels(stackName))
	if err == nil {
		_, err = format.Write(ctx, job.SafetyDir, rc, nil)
		err = errors.Join(err, rc.Close())
	}
	if err != nil {
		_ = os.RemoveAll(job.SafetyDir)
		return errors.Join(fmt.Errorf("copy the volume's content aside (nothing was changed): %w", err), r.Store.DeleteRestore(bg, job.Stack, job.Volume))
	}
	job.Phase = store.RestoreWriting
	if err := r.Store.PutRestore(ctx, *job); err != nil {
		_ = os.RemoveAll(job.SafetyDir)
		return errors.Join(fmt.Errorf("nothing was changed: %w", err), r.Store.DeleteRestore(bg, job.Stack, job.Volume))
	}
	werr := r.fill(ctx, sn.Dir, r.Identities, m, job.VolumeName, stackName, true)
	if werr == nil {
		return r.endRestore(bg, *job)
	}
	r.Log.Error("restore failed midway; putting the volume's old content back", "stack", stackName, "volume", job.Volume, "err", werr)
	if perr := r.putBack(bg, *job); perr != nil {
		return errors.Join(werr, perr)
	}
	return fmt.Errorf("%w (the volume's old content was put back)", werr)
}

// fill empties a volume and extracts a snapshot into it, then reads it
// back and compares it with the snapshot's manifest: the volume holds the
// snapshot exactly, or fill fails.
func (r *Runner) fill(ctx context.Context, dir string, ids []age.Identity, m format.Manifest, volume, stackName string, crashable bool) error {
	if err := r.Engine.EmptyVolume(ctx, volume); err != nil {
		return err
	}
	rc, err := format.Open(dir, ids)
	if err != nil {
		return err
	}
	var src io.Reader = rc
	if crashable {
		src = restoreCrashReader(rc)
	}
	if r.Alive != nil {
		src = &aliveReader{r: src, alive: r.Alive}
	}
	err = r.Engine.WriteVolume(ctx, volume, src, r.helperLabels(stackName))
	_ = rc.Close() // the client closes a request body that is a Closer; this is for when it did not get that far
	if err != nil {
		return err
	}
	back, err := r.Engine.ReadVolume(ctx, volume, r.helperLabels(stackName))
	if err != nil {
		return err
	}
	cerr := format.Compare(ctx, m, back)
	if err := errors.Join(cerr, back.Close()); err != nil {
		return fmt.Errorf("the volume read back differs from the snapshot: %w", err)
	}
	return nil
}

// putBack fills a volume again from the copy of its old content taken
// before a restore, and ends the restore. If even that fails the copy and
// the record stay, and the error says where the copy is and how to put it
// back by hand.
func (r *Runner) putBack(ctx context.Context, job store.Restore) error {
	m, err := format.ReadManifest(job.SafetyDir)
	if err == nil {
		err = r.fill(ctx, job.SafetyDir, nil, m, job.VolumeName, job.Stack, false)
	}
	if err != nil {
		return fmt.Errorf("put the old content back into volume %s: %w; it is kept in %s (by hand, as root: "+
			"zstd -d -c %s/%s | tar -x --numeric-owner -p --strip-components 1 -C \"$(docker volume inspect -f '{{.Mountpoint}}' %s)\")",
			job.VolumeName, err, job.SafetyDir, job.SafetyDir, format.ArchiveName, job.VolumeName)
	}
	return r.endRestore(ctx, job)
}

// endRestore removes the copy of the old content and the record.
func (r *Runner) endRestore(ctx context.Context, job store.Restore) error {
	if err := os.RemoveAll(job.SafetyDir); err != nil {
		return fmt.Errorf("remove %s: %w", job.SafetyDir, err)
	}
	_ = os.Remove(filepath.Dir(job.SafetyDir)) // the stack's folder, once no other volume of it is being restored
	return r.Store.DeleteRestore(ctx, job.Stack, job.Volume)
}
