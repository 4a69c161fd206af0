package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/notify"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// Backup jobs run in the reconcile loop, one at a time, so a stop for a
// consistent snapshot is never fought by a sync or a drift heal: the loop
// is busy with the snapshot meanwhile. What is due when is the backup
// package's (backup.Scheduler); the loop asks it every backupEvery.

// backupTick is how often the loop looks for due snapshots and tests
// (Daemon.backupEvery; tests make it shorter).
const backupTick = 15 * time.Second

// loadedStack is a stack loaded from the live view, with its backup config,
// for the revision the view showed then.
type loadedStack struct {
	revision string
	st       *stack.Stack
	cfg      *backup.Config
	err      error
}

// loadStack loads one stack from the live view of the last reconcile. The
// result is kept until the view shows another revision of the stack: the
// backup schedule looks at every stack every few seconds, and loading one
// costs milliseconds the reconcile loop would wait.
func (d *Daemon) loadStack(ctx context.Context, name string) (*stack.Stack, *backup.Config, error) {
	d.mu.Lock()
	live, view := d.checkout, d.views[name]
	cached, ok := d.loaded[name]
	d.mu.Unlock()
	if live == "" {
		return nil, nil, errors.New("no revision loaded yet: the first fetch has not succeeded")
	}
	if ok && view != "" && cached.revision == view {
		return cached.st, cached.cfg, cached.err
	}
	l := loadedStack{revision: view}
	l.st, l.err = d.stacks.Load(ctx, live, name, d.host)
	if l.err != nil {
		l.err = fmt.Errorf("load stack %s: %w", name, l.err)
	} else if l.cfg, l.err = backup.ParseConfig(l.st); l.err != nil {
		l.err = fmt.Errorf("stack %s: %w", name, l.err)
	}
	if ctx.Err() == nil {
		d.mu.Lock()
		d.loaded[name] = l
		d.mu.Unlock()
	}
	return l.st, l.cfg, l.err
}

// backupVolumes is the volume asked for, or every volume the stack backs up.
func backupVolumes(st *stack.Stack, cfg *backup.Config, volume string) ([]string, error) {
	if cfg == nil || len(cfg.Volumes) == 0 {
		return nil, fmt.Errorf("stack %s backs up no volume (x-gitopsd.backup.volumes): %w", st.Name, api.ErrNotFound)
	}
	if volume != "" {
		if _, ok := cfg.Volumes[volume]; !ok {
			return nil, fmt.Errorf("stack %s does not back up volume %s: %w", st.Name, volume, api.ErrNotFound)
		}
		return []string{volume}, nil
	}
	return slices.Sorted(maps.Keys(cfg.Volumes)), nil
}

// runBackup snapshots volumes of a stack now.
func (d *Daemon) runBackup(ctx context.Context, name, volume, trigger string) error {
	st, cfg, err := d.loadStack(ctx, name)
	if err != nil {
		return err
	}
	vols, err := backupVolumes(st, cfg, volume)
	if err != nil {
		return err
	}
	state, _, err := d.store.Stack(ctx, name)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range vols {
		_, err := d.backups.Snapshot(ctx, st, cfg, v, trigger, state.Revision)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// testBackup restore-tests the newest good snapshot of volumes of a stack,
// or (fromRemote) the newest copy of each on the remote, downloaded.
func (d *Daemon) testBackup(ctx context.Context, name, volume string, level int, trigger string, fromRemote bool) error {
	if fromRemote && d.offsite == nil {
		return fmt.Errorf("backup test --remote: %w", backup.ErrNoRemote)
	}
	st, cfg, err := d.loadStack(ctx, name)
	if err != nil {
		return err
	}
	vols, err := backupVolumes(st, cfg, volume)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range vols {
		switch {
		case !fromRemote:
			_, err = d.backups.Test(ctx, st, cfg, v, 0, level, trigger)
		case cfg.Volumes[v].Local && volume != "":
			err = fmt.Errorf("volume %s of stack %s is kept on the host only (remote: false)", v, name)
		case cfg.Volumes[v].Local:
			continue
		default:
			_, err = d.backups.TestRemote(ctx, st, cfg, v, level, trigger)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// restoreBackup puts a snapshot back into a stack's volume, or, with
// fromHost, the newest good remote copy of that host's.
func (d *Daemon) restoreBackup(ctx context.Context, name, volume string, id int64, fromHost string) error {
	st, cfg, err := d.loadStack(ctx, name)
	if err != nil {
		return err
	}
	if _, err := backupVolumes(st, cfg, volume); err != nil {
		return err
	}
	if fromHost != "" {
		if id != 0 {
			return errors.New("restore --from-host takes the newest good remote copy, not a snapshot id")
		}
		return d.restoreFromHost(ctx, st, volume, fromHost)
	}
	_, err = d.backups.Restore(ctx, st, volume, id)
	return err
}

// Snapshots lists snapshots, newest first.
func (d *Daemon) Snapshots(ctx context.Context, stackName string) ([]api.Snapshot, error) {
	ss, err := d.store.Snapshots(ctx, stackName, "")
	if err != nil {
		return nil, err
	}
	out := make([]api.Snapshot, 0, len(ss))
	for _, sn := range ss {
		out = append(out, api.Snapshot{
			ID: sn.ID, Name: sn.Name, Stack: sn.Stack, Volume: sn.Volume, CreatedAt: rfc3339(sn.StartedAt), SizeBytes: sn.SizeBytes,
			TestOK: sn.TestedOK, TestedAt: rfc3339(sn.LastTest.FinishedAt), Status: sn.Status, Trigger: sn.Trigger,
			Files: sn.Files, DataBytes: sn.DataBytes, Encrypted: sn.Encrypted, Error: sn.Error,
			LastTestOK: sn.LastTest.OK, LastTestLevel: sn.LastTest.Level, LastTestError: sn.LastTest.Error,
		})
	}
	return out, nil
}

// backupBriefs is the backup state of each volume of a stack, for status.
func (d *Daemon) backupBriefs(ctx context.Context, stackName string) ([]api.BackupBrief, error) {
	ss, err := d.store.Snapshots(ctx, stackName, "")
	if err != nil {
		return nil, err
	}
	by := map[string]*api.BackupBrief{}
	var order []string
	for _, sn := range ss { // newest first
		b, ok := by[sn.Volume]
		if !ok {
			b = &api.BackupBrief{Volume: sn.Volume}
			by[sn.Volume] = b
			order = append(order, sn.Volume)
		}
		if b.LastSuccess == "" && (sn.Status == store.SnapshotOK || sn.Status == store.SnapshotDeleted) {
			b.LastSuccess = rfc3339(sn.FinishedAt)
		}
	}
	copies, err := d.store.RemoteCopies(ctx, stackName, "")
	if err != nil {
		return nil, err
	}
	fills, err := d.store.LastSteps(ctx, stackName, string(sync.ActRestoreVolume))
	if err != nil {
		return nil, err
	}
	for _, v := range slices.Sorted(maps.Keys(fills)) {
		if by[v] == nil { // restored, or started empty, and not snapshotted since
			by[v] = &api.BackupBrief{Volume: v}
			order = append(order, v)
		}
		f := fills[v]
		by[v].Restored = rfc3339(f.At) + ": " + f.Detail
		if f.Error != "" {
			by[v].Restored = rfc3339(f.At) + ": failed: " + f.Error
		}
	}
	out := []api.BackupBrief{}
	for _, v := range order {
		b := by[v]
		if t, ok, err := d.store.LastRestoreTest(ctx, stackName, v, ""); err == nil && ok {
			b.LastTest, b.LastTestOK = rfc3339(t.FinishedAt), t.OK
		}
		remoteBrief(b, copies)
		out = append(out, *b)
	}
	return out, nil
}

// BackupRun queues a snapshot of a stack's volume (or all of them).
func (d *Daemon) BackupRun(ctx context.Context, stackName, volume string, wait bool) error {
	run := func(ctx context.Context) error { return d.runBackup(ctx, stackName, volume, backup.TriggerManual) }
	return d.queue(ctx, nowJob{op: "backup-run", stack: stackName, volume: volume, run: run}, wait)
}

// BackupTest restore-tests the newest good snapshot and waits for the verdict.
func (d *Daemon) BackupTest(ctx context.Context, stackName, volume string, level int) error {
	run := func(ctx context.Context) error {
		return d.testBackup(ctx, stackName, volume, level, backup.TriggerManual, false)
	}
	return d.queue(ctx, nowJob{op: "backup-test", stack: stackName, volume: volume, run: run}, true)
}

// BackupTestRemote downloads the newest copy on the remote, restore-tests
// it and waits for the verdict. It runs on the loop like any test: its
// scratch volume and verify container are the Runner's.
func (d *Daemon) BackupTestRemote(ctx context.Context, stackName, volume string, level int) error {
	run := func(ctx context.Context) error {
		return d.testBackup(ctx, stackName, volume, level, backup.TriggerManual, true)
	}
	return d.queue(ctx, nowJob{op: "backup-test-remote", stack: stackName, volume: volume, run: run}, true)
}

// BackupRestore puts a snapshot (or another host's remote copy) back and
// waits for it.
func (d *Daemon) BackupRestore(ctx context.Context, stackName, volume string, snapshot int64, fromHost string) error {
	run := func(ctx context.Context) error { return d.restoreBackup(ctx, stackName, volume, snapshot, fromHost) }
	return d.queue(ctx, nowJob{op: "backup-restore", stack: stackName, volume: volume, run: run}, true)
}

// observeBackup puts a finished snapshot or restore test into the metrics.
func (d *Daemon) observeBackup(e backup.Event) {
	switch {
	case e.Snapshot != nil:
		d.metrics.Snapshot(e.Stack, e.Volume, e.Snapshot.Status == store.SnapshotOK, e.Snapshot.SizeBytes, e.Snapshot.FinishedAt, e.Took)
		if e.Snapshot.Status != store.SnapshotOK {
			d.notifier.Send(notify.BackupFailed, e.Stack, fmt.Sprintf("snapshot of volume %s failed: %s", e.Volume, e.Snapshot.Error))
		}
	case e.RemoteTest != nil:
		// A copy that restores from the remote is as good a proof as a
		// local one, and a failure as bad.
		d.metrics.RestoreTest(e.Stack, e.Volume, e.RemoteTest.OK, e.RemoteTest.FinishedAt)
		if !e.RemoteTest.OK {
			d.notifier.Send(notify.RestoreTestFailed, e.Stack, fmt.Sprintf("level %d restore test of the remote copy %s of volume %s failed: %s", e.RemoteTest.Level, e.RemoteTest.Name, e.Volume, e.RemoteTest.Error))
		}
	case e.Test != nil:
		d.metrics.RestoreTest(e.Stack, e.Volume, e.Test.OK, e.Test.FinishedAt)
		if !e.Test.OK {
			d.notifier.Send(notify.RestoreTestFailed, e.Stack, fmt.Sprintf("level %d restore test of volume %s failed: %s", e.Test.Level, e.Volume, e.Test.Error))
		}
	}
}

// snapshotBeforeDeploy snapshots, before a deploy of rev, the volumes of a
// stack with x-gitopsd.backup.before_deploy that a service the deploy
// changes mounts, tagged with the revision the data belongs to (the one the
// stack runs), so `rollback --with-data` can bring the data back with it.
// A failed snapshot does not stop the deploy: it is recorded and logged.
func (d *Daemon) snapshotBeforeDeploy(ctx context.Context, st *stack.Stack, state store.StackState, rev string, trigger sync.Trigger) {
	cfg, err := backup.ParseConfig(st)
	if err != nil || cfg == nil || !cfg.BeforeDeploy || state.Revision == "" || state.Revision == rev {
		return
	}
	if rev == state.FailedRevision && trigger != sync.TriggerRetry {
		return // held: Sync leaves it alone
	}
	plan, err := d.rec.Diff(ctx, st, rev)
	if err != nil {
		d.log.Warn("snapshot before deploy: cannot tell what the deploy changes", "stack", st.Name, "err", err)
		return
	}
	changed := map[string]bool{}
	for _, a := range plan.Actions {
		if a.Service != "" && a.Kind != sync.ActCreate {
			changed[a.Service] = true
		}
	}
	for _, v := range slices.Sorted(maps.Keys(cfg.Volumes)) {
		touched := false
		for svc := range changed {
			if backup.MountPoint(st, svc, v) != "" {
				touched = true
			}
		}
		if !touched {
			continue
		}
		if _, err := d.backups.Snapshot(ctx, st, cfg, v, backup.TriggerBeforeDeploy, state.Revision); err != nil {
			d.log.Error("snapshot before deploy failed; deploying anyway", "stack", st.Name, "volume", v, "err", err)
		}
	}
}

// restoreBeforeDeploy follows an operator's rollback with its data: every
// volume the stack backs up gets the newest snapshot taken before a deploy
// away from the revision the stack now runs.
func (d *Daemon) restoreBeforeDeploy(ctx context.Context, name string) error {
	state, _, err := d.store.Stack(ctx, name)
	if err != nil {
		return err
	}
	st, cfg, err := d.loadStack(ctx, name)
	if err != nil {
		return err
	}
	vols, err := backupVolumes(st, cfg, "")
	if err != nil {
		return fmt.Errorf("rollback --with-data: %w", err)
	}
	var errs []error
	for _, v := range vols {
		ss, err := d.store.Snapshots(ctx, name, v, store.SnapshotOK)
		if err != nil {
			return err
		}
		var id int64
		for _, sn := range ss {
			if sn.Trigger == backup.TriggerBeforeDeploy && sn.Revision == state.Revision {
				id = sn.ID
				break
			}
		}
		if id == 0 {
			errs = append(errs, fmt.Errorf("rollback --with-data: volume %s has no snapshot taken before a deploy away from %s (x-gitopsd.backup.before_deploy)", v, ids.Short(state.Revision)))
			continue
		}
		if _, err := d.backups.Restore(ctx, st, v, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
