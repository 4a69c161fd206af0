package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/stack"
)

// A replaced host brings its data back by itself: a volume marked
// restore: if_empty that a sync has to create (the stack's first
// deployment on this host, or a volume that is gone) is filled from its
// newest good copy before any service starts, as a step of the
// deployment (sync.Filler). The copy is looked for under this host's name,
// so a new machine given the old one's host.name, repository and remote
// finds its predecessor's copies.

// filler is the daemon's sync.Filler.
type filler struct{ d *Daemon }

func (f filler) Fills(st *stack.Stack, key string) bool {
	cfg, err := backup.ParseConfig(st)
	return err == nil && cfg != nil && cfg.Volumes[key].IfEmpty
}

// Fill restores the volume from its newest good copy, local or remote. No
// copy anywhere leaves it empty, which the step, the log and status say. A
// copy that cannot be had fails the step, so the stack does not start,
// and the volume goes again: an empty volume left behind would pass for
// restored at the next sync, and its first snapshot would keep nothing.
func (f filler) Fill(ctx context.Context, st *stack.Stack, key string) (string, error) {
	d := f.d
	log := d.log.With("stack", st.Name, "volume", key)
	rem := d.remoteOf(d.host.Name)
	if cfg, err := backup.ParseConfig(st); err == nil && cfg != nil && cfg.Volumes[key].Local {
		rem.Open = nil // remote: false: its copies never leave the host
	}
	found, ok, err := d.backups.Refill(ctx, st, key, rem)
	if err != nil {
		name := backup.VolumeName(st, key)
		if rerr := d.engine.RemoveVolume(context.WithoutCancel(ctx), name); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove the empty volume %s: %w", name, rerr))
		}
		log.Error("the volume could not be restored; the stack is not started", "err", err)
		return "", err // the step names the volume and restore: if_empty
	}
	if !ok {
		where := "no local snapshot, and no remote to look on"
		if rem.Open != nil {
			where = "no local snapshot and no copy on the remote for host " + d.host.Name
		}
		log.Warn("no copy of the volume anywhere; starting it empty", "searched", where)
		return "no copy anywhere (" + where + "): started empty", nil
	}
	detail := "restored " + found.Describe(d.now())
	log.Info("volume restored before the stack starts", "snapshot", found.Snapshot.ID, "from", found.From, "taken", found.TakenAt)
	return detail, nil
}

// remoteOf is the configured remote (the uploader's), for the copies
// filed under host.
func (d *Daemon) remoteOf(host string) backup.Remote {
	if d.offsite == nil {
		return backup.Remote{Host: host}
	}
	return backup.Remote{Host: host, Open: d.offsite.Open}
}

// restoreFromHost puts the newest good remote copy of another host's
// stack volume into this host's (`backup restore --from-host`).
func (d *Daemon) restoreFromHost(ctx context.Context, st *stack.Stack, volume, host string) error {
	if d.offsite == nil {
		return errors.New("restore --from-host: no backup.remote is configured")
	}
	found, ok, err := d.backups.RestoreFrom(ctx, st, volume, d.remoteOf(host))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("restore --from-host %s: the remote has no copy of %s/%s/%s", host, host, st.Name, volume)
	}
	d.log.Info("volume restored from another host's copy", "stack", st.Name, "volume", volume, "host", host, "snapshot", found.Snapshot.ID, "from", found.From)
	return nil
}
