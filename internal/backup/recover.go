package backup

import (
	"context"
	"os"
	"strings"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/gitopsd/gitopsd/internal/backup/format"
	"github.com/gitopsd/gitopsd/internal/store"
)

// Recover closes the snapshots a crash cut off and removes their files,
// and the helper containers and scratch volumes this gitopsd left. A
// restore a crash cut off while it was writing the volume gets the
// volume's old content back. Then the containers a cut-off snapshot or
// restore stopped or paused run again. It runs at start, before anything
// else touches a stack.
func (r *Runner) Recover(ctx context.Context) error {
	if r.Owner != "" {
		if err := r.Engine.RemoveHelpers(ctx, LabelOwner+"="+r.Owner); err != nil {
			r.Log.Warn("remove helpers left by a previous run", "err", err)
		}
	}
	cut, err := r.Store.FailRunningSnapshots(ctx, "interrupted: gitopsd stopped during the snapshot")
	if err != nil {
		return err
	}
	for _, sn := range cut {
		if sn.Dir != "" {
			_ = os.RemoveAll(sn.Dir)
		}
		r.Log.Warn("closed a snapshot interrupted by a previous stop", "stack", sn.Stack, "volume", sn.Volume, "snapshot", sn.ID)
	}
	keepDown, err := r.recoverRestores(ctx)
	if err != nil {
		return err
	}
	return r.restartStopped(ctx, keepDown)
}

// recoverRestores ends the restores a crash cut off. It returns the stacks
// whose volume could not be put back: their stopped services stay down
// rather than start on half a volume.
func (r *Runner) recoverRestores(ctx context.Context) (map[string]bool, error) {
	jobs, err := r.Store.Restores(ctx)
	if err != nil {
		return nil, err
	}
	keepDown := map[string]bool{}
	for _, job := range jobs {
		log := r.Log.With("stack", job.Stack, "volume", job.Volume, "snapshot", job.SnapshotID)
		if job.Phase != store.RestoreWriting || !format.Committed(job.SafetyDir) {
			// Cut while copying the old content aside: the volume was not
			// touched yet.
			if err := r.endRestore(ctx, job); err != nil {
				return nil, err
			}
			log.Warn("a restore was cut off by a previous stop before it changed the volume; the volume keeps its content")
			continue
		}
		if err := r.putBack(ctx, job); err != nil {
			keepDown[job.Stack] = true
			log.Error("a restore was cut off by a previous stop and the volume's old content could not be put back; its services stay stopped", "err", err)
			continue
		}
		log.Warn("a restore was cut off by a previous stop; the volume's old content was put back (run the restore again)")
	}
	return keepDown, nil
}

// Why a backup job stopped or paused a container (store.StoppedService).
const (
	ReasonSnapshot = "snapshot"
	ReasonRestore  = "restore"
	ReasonPause    = "pause"
)

// restartStopped starts (or unpauses) the containers backup jobs stopped
// and a crash kept from starting again, and forgets them.
func (r *Runner) restartStopped(ctx context.Context, keepDown map[string]bool) error {
	stopped, err := r.Store.StoppedServices(ctx)
	if err != nil {
		return err
	}
	for _, s := range stopped {
		if keepDown[s.Stack] {
			continue
		}
		log := r.Log.With("stack", s.Stack, "service", s.Service, "container", s.ContainerID)
		if s.Reason == ReasonPause {
			err = r.Engine.UnpauseContainer(ctx, s.ContainerID)
		} else {
			err = r.Engine.StartContainer(ctx, s.ContainerID)
		}
		switch {
		case err != nil && cerrdefs.IsNotFound(err):
			log.Info("a container a cut-off backup job stopped is gone; nothing to start")
		case err != nil && s.Reason == ReasonPause && strings.Contains(err.Error(), "is not paused"):
			// Docker unfroze it already (an engine restart does).
		case err != nil:
			log.Error("cannot start a container a cut-off backup job stopped", "err", err)
			continue
		default:
			log.Warn("started a container that a backup job cut off by a previous stop had stopped", "reason", s.Reason)
		}
		if err := r.Store.ClearStopped(ctx, s.ContainerID); err != nil {
			return err
		}
	}
	return nil
}
