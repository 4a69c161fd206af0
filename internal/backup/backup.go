// Package backup owns volume snapshots: taking one while the volume is
// kept still (stop, pause or a hook), storing it (package format: zstd
// tar, optionally encrypted to age recipients, a manifest of every entry, a
// commit marker written last), retention (package policy, restic's
// vocabulary), restore tests at three levels, restores, and the record of
// every snapshot and test in the store.
//
// Volumes are read and written through the engine's archive endpoints and a
// helper container that is never started (engine.ReadVolume), so nothing is
// pulled and no shell is needed in any image. The restore tests:
//
//	level 1  decompress (decrypt) the archive, check every entry and hash against the manifest
//	level 2  level 1, then restore into a scratch volume and compare every entry read back
//	level 3  level 2, then run the stack's verify command from the service's local image,
//	         no network, the restored copy mounted where the service mounts the volume
//
// Scratch volumes and containers carry engine.LabelHelper and are always
// removed.
//
// A crash never leaves a service down or a volume half-written: the
// containers a job stops or pauses are recorded before it does so, a
// restore verifies the snapshot before it touches anything and keeps a
// copy of the volume's old content until the new content is complete, and
// Recover, at the next start, puts that copy back and starts what was
// stopped (Restore explains the steps).
//
// Offsite copies good snapshots to backup.remote beside the loop (a copy
// counts once read back; until then it is pending, retried with backoff,
// and the local snapshot is kept), applies the keep policy to the remote's
// own list, and fetches copies back for restore tests (Runner.TestRemote)
// and restores.
//
// Runner does the jobs; Scheduler says which are due (x-gitopsd.backup's
// schedule and test, each delayed by an offset of its own so a fleet does
// not snapshot in step) on a clock it is given. The daemon's loop runs
// both, so a stop for a snapshot never meets a sync or a heal.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"filippo.io/age"

	"github.com/gitopsd/gitopsd/internal/backup/format"
	"github.com/gitopsd/gitopsd/internal/backup/policy"
	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/health"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// Triggers of snapshots and restore tests.
const (
	TriggerSchedule     = "schedule"
	TriggerManual       = "manual"
	TriggerBeforeDeploy = "before_deploy"
)

// ErrNoSnapshot is returned (wrapped) when a volume has no good snapshot.
var ErrNoSnapshot = errors.New("no good snapshot")

// Runner takes, tests and restores snapshots. Its methods are not safe to
// call concurrently: the daemon runs one job at a time.
type Runner struct {
	Engine *engine.Engine
	Store  *store.Store
	Log    *slog.Logger
	// Dir holds the snapshots: Dir/<stack>/<volume>/<id>/.
	Dir string
	// Identities decrypt encrypted snapshots for tests and restores.
	Identities []age.Identity
	// Observe, if set, is told of every finished snapshot and test (metrics).
	Observe func(Event)
	// Owner tells this daemon's helper containers and scratch volumes from
	// another's on the same engine (LabelOwner); Recover removes its own.
	Owner string
	// Offsite, if set, copies good snapshots to the remote and fetches
	// copies back for restore tests (backup.remote).
	Offsite *Offsite
	// Alive, if set, is called every aliveEvery or so while a volume is
	// written: Recover runs at start, and putting a large volume back can
	// outlast a service manager's start timeout (systemd's is 90 s).
	Alive func()
}

// aliveEvery is how often Runner.Alive is called during a long write.
const aliveEvery = 20 * time.Second

// LabelOwner names the gitopsd (its state_dir) whose job made a helper.
const LabelOwner = engine.LabelHelper + ".owner"

// Event is a finished snapshot or restore test.
type Event struct {
	Stack, Volume string
	Snapshot      *store.Snapshot    // a snapshot was taken (Status ok or failed)
	Test          *store.RestoreTest // a restore test ran
	RemoteTest    *store.RemoteTest  // a restore test of a remote copy ran
	Took          time.Duration
}

// Snapshot snapshots one volume of a stack now, keeping it still per its
// consistency setting, and then applies retention.
func (r *Runner) Snapshot(ctx context.Context, st *stack.Stack, cfg *Config, volume, trigger, revision string) (store.Snapshot, error) {
	vc, ok := cfg.Volumes[volume]
	if !ok {
		return store.Snapshot{}, fmt.Errorf("snapshot %s/%s: the stack does not back up volume %s", st.Name, volume, volume)
	}
	began := time.Now()
	sn := store.Snapshot{Stack: st.Name, Volume: volume, Trigger: trigger, Revision: revision, StartedAt: began.UTC(), Encrypted: len(cfg.Recipients) > 0}
	id, err := r.Store.StartSnapshot(ctx, sn)
	if err != nil {
		return sn, err
	}
	sn.ID = id
	sn.Dir = filepath.Join(r.Dir, st.Name, volume, strconv.FormatInt(id, 10))
	if err := r.Store.SetSnapshotDir(ctx, id, sn.Dir); err != nil {
		return sn, err
	}
	log := r.Log.With("stack", st.Name, "volume", volume, "snapshot", id)
	m, err := r.write(ctx, st, vc, sn.Dir, cfg.Recipients)
	sn.FinishedAt = time.Now().UTC()
	if err != nil {
		sn.Status, sn.Error = store.SnapshotFailed, err.Error()
		_ = os.RemoveAll(sn.Dir)
		log.Error("snapshot failed", "err", err)
	} else {
		sn.Status, sn.SizeBytes, sn.Files, sn.DataBytes = store.SnapshotOK, m.ArchiveSize, int64(m.Files), m.Bytes
		log.Info("snapshot taken", "bytes", m.Bytes, "files", m.Files, "archive_bytes", m.ArchiveSize, "took", time.Since(began).Round(time.Millisecond))
	}
	if ferr := r.Store.FinishSnapshot(context.WithoutCancel(ctx), sn); ferr != nil {
		return sn, errors.Join(err, ferr)
	}
	if r.Observe != nil {
		r.Observe(Event{Stack: st.Name, Volume: volume, Snapshot: &sn, Took: time.Since(began)})
	}
	if err != nil {
		return sn, fmt.Errorf("snapshot %s/%s: %w", st.Name, volume, err)
	}
	var qerr error
	if r.Offsite != nil && !vc.Local {
		// Recorded before retention runs, so that retention keeps it.
		if qerr = r.Offsite.Enqueue(context.WithoutCancel(ctx), sn, vc.Keep); qerr != nil {
			qerr = fmt.Errorf("snapshot %s/%s: queue its remote copy: %w", st.Name, volume, qerr)
		}
	}
	return sn, errors.Join(qerr, r.retain(ctx, st.Name, volume, vc.Keep))
}

// write keeps the volume still and streams it into a snapshot directory.
func (r *Runner) write(ctx context.Context, st *stack.Stack, vc VolumeConfig, dir string, recipients []age.Recipient) (format.Manifest, error) {
	resume, err := r.quiesce(ctx, st, vc)
	if err != nil {
		return format.Manifest{}, errors.Join(err, resume())
	}
	m, err := func() (format.Manifest, error) {
		rc, err := r.Engine.ReadVolume(ctx, VolumeName(st, vc.Volume), r.helperLabels(st.Name))
		if err != nil {
			return format.Manifest{}, err
		}
		defer rc.Close()
		return format.Write(ctx, dir, crashReader(rc), recipients)
	}()
	// The services come back whatever happened to the snapshot.
	return m, errors.Join(err, resume())
}

// quiesce keeps a volume still per its consistency setting and returns
// what undoes it.
func (r *Runner) quiesce(ctx context.Context, st *stack.Stack, vc VolumeConfig) (func() error, error) {
	none := func() error { return nil }
	switch vc.Consistency {
	case ConsistencyStop:
		return r.stopServices(ctx, st, vc.Services, ReasonSnapshot)
	case ConsistencyPause:
		ids, err := r.containersOf(ctx, st.Name, vc.Services)
		if err != nil {
			return none, err
		}
		var paused []string
		resume := func() error {
			bg := context.WithoutCancel(ctx)
			var errs []error
			for _, id := range paused {
				if err := r.Engine.UnpauseContainer(bg, id); err != nil {
					errs = append(errs, err)
					continue
				}
				errs = append(errs, r.Store.ClearStopped(bg, id))
			}
			return errors.Join(errs...)
		}
		for _, id := range ids {
			// Recorded first, like a stop: a crash must not leave it frozen.
			if err := r.Store.RecordStopped(ctx, store.StoppedService{ContainerID: id, Stack: st.Name, Reason: ReasonPause}); err != nil {
				return resume, err
			}
			paused = append(paused, id)
			if err := r.Engine.PauseContainer(ctx, id); err != nil {
				return resume, err
			}
		}
		return resume, nil
	case ConsistencyHook:
		ids, err := r.containersOf(ctx, st.Name, []string{vc.Hook.Service})
		if err != nil || len(ids) == 0 {
			return none, errors.Join(err, fmt.Errorf("hook: no running container of service %s", vc.Hook.Service))
		}
		run := func(cmd []string, what string) error {
			if len(cmd) == 0 {
				return nil
			}
			code, out, err := r.Engine.Exec(context.WithoutCancel(ctx), ids[0], cmd)
			if err != nil {
				return fmt.Errorf("hook %s: %w", what, err)
			}
			if code != 0 {
				return fmt.Errorf("hook %s in %s exited %d: %s", what, vc.Hook.Service, code, out)
			}
			return nil
		}
		return func() error { return run(vc.Hook.After, "after") }, run(vc.Hook.Before, "before")
	}
	return none, nil
}

// stopServices stops the services' containers, dependents first, and
// returns what starts them again in dependency order, each through its
// health gate. Each container is recorded in the store before it is
// stopped and forgotten once it runs again, so that a crash in between
// leaves a record the next start acts on (RestartStopped), whatever the
// stack's drift policy: under drift: report nothing else would start it.
func (r *Runner) stopServices(ctx context.Context, st *stack.Stack, services []string, reason string) (func() error, error) {
	order := dependencyOrder(st, services)
	type stopped struct {
		id   string
		gate health.Gate
	}
	var done []stopped
	resume := func() error {
		bg := context.WithoutCancel(ctx)
		var errs []error
		for i := len(done) - 1; i >= 0; i-- { // stopped dependents first: start in dependency order
			if err := r.Engine.StartContainer(bg, done[i].id); err != nil {
				errs = append(errs, err)
				continue // the record stays: the next start tries again
			}
			errs = append(errs, r.Store.ClearStopped(bg, done[i].id))
			errs = append(errs, health.Wait(bg, r.Engine.Client(), done[i].id, done[i].gate))
		}
		return errors.Join(errs...)
	}
	for i := len(order) - 1; i >= 0; i-- {
		svc := order[i]
		ids, err := r.containersOf(ctx, st.Name, []string{svc})
		if err != nil {
			return resume, err
		}
		for _, id := range ids {
			if err := r.Store.RecordStopped(ctx, store.StoppedService{ContainerID: id, Stack: st.Name, Service: svc, Reason: reason}); err != nil {
				return resume, err // not stopped: nobody would know to start it again
			}
			done = append(done, stopped{id: id, gate: health.GateFor(st.Project.Services[svc])})
			if err := r.Engine.StopContainer(ctx, id, nil); err != nil {
				return resume, err
			}
		}
	}
	return resume, nil
}

// dependencyOrder sorts services so that dependencies come first.
func dependencyOrder(st *stack.Stack, services []string) []string {
	want := map[string]bool{}
	for _, s := range services {
		want[s] = true
	}
	var out []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		for _, dep := range st.Project.Services[name].GetDependencies() {
			visit(dep)
		}
		if want[name] {
			out = append(out, name)
		}
	}
	for _, name := range st.Project.ServiceNames() {
		visit(name)
	}
	return out
}

// containersOf lists the running containers of the services.
func (r *Runner) containersOf(ctx context.Context, stackName string, services []string) ([]string, error) {
	cs, err := r.Engine.Containers(ctx, stackName)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, s := range services {
		want[s] = true
	}
	var ids []string
	for _, c := range cs {
		if want[c.Service] && c.State == "running" {
			ids = append(ids, c.ID)
		}
	}
	return ids, nil
}

// retain removes the snapshots the volume's keep policy lets go, except
// those whose remote copy is still pending: a snapshot must not leave the
// host before its copy counts. They go at a later run.
func (r *Runner) retain(ctx context.Context, stackName, volume string, keep policy.Keep) error {
	good, err := r.Store.Snapshots(ctx, stackName, volume, store.SnapshotOK)
	if err != nil {
		return err
	}
	copies, err := r.Store.RemoteCopies(ctx, stackName, volume)
	if err != nil {
		return err
	}
	pending := map[int64]bool{}
	for _, c := range copies {
		if c.State == store.CopyPending {
			pending[c.SnapshotID] = true
		}
	}
	snaps := make([]policy.Snapshot, 0, len(good))
	byID := map[string]store.Snapshot{}
	for _, sn := range good {
		id := strconv.FormatInt(sn.ID, 10)
		snaps = append(snaps, policy.Snapshot{ID: id, CreatedAt: sn.StartedAt, TestedOK: sn.TestedOK})
		byID[id] = sn
	}
	_, remove := policy.Retain(snaps, keep, time.Local)
	var errs []error
	for _, p := range remove {
		sn := byID[p.ID]
		if pending[sn.ID] {
			r.Log.Info("snapshot kept until its remote copy counts", "stack", stackName, "volume", volume, "snapshot", sn.ID)
			continue
		}
		if err := os.RemoveAll(sn.Dir); err != nil {
			errs = append(errs, fmt.Errorf("retention: remove snapshot %d: %w", sn.ID, err))
			continue
		}
		errs = append(errs, r.Store.MarkSnapshotDeleted(ctx, sn.ID))
		r.Log.Info("snapshot removed by retention", "stack", stackName, "volume", volume, "snapshot", sn.ID)
	}
	return errors.Join(errs...)
}

// pick is the snapshot id of a volume, or its newest good one (id 0).
func (r *Runner) pick(ctx context.Context, stackName, volume string, id int64) (store.Snapshot, error) {
	if id != 0 {
		sn, ok, err := r.Store.Snapshot(ctx, id)
		if err != nil {
			return sn, err
		}
		if !ok || sn.Stack != stackName || sn.Volume != volume || sn.Status != store.SnapshotOK {
			return sn, fmt.Errorf("snapshot %d of %s/%s: %w", id, stackName, volume, ErrNoSnapshot)
		}
		return sn, nil
	}
	good, err := r.Store.Snapshots(ctx, stackName, volume, store.SnapshotOK)
	if err != nil {
		return store.Snapshot{}, err
	}
	if len(good) == 0 {
		return store.Snapshot{}, fmt.Errorf("%s/%s: %w", stackName, volume, ErrNoSnapshot)
	}
	return good[0], nil
}

// Test restore-tests a snapshot (id 0: the newest good one) at level 1, 2
// or 3 and records the result; a failed test is an error naming why.
func (r *Runner) Test(ctx context.Context, st *stack.Stack, cfg *Config, volume string, id int64, level int, trigger string) (store.RestoreTest, error) {
	vc, ok := cfg.Volumes[volume]
	if !ok {
		return store.RestoreTest{}, fmt.Errorf("test %s/%s: the stack does not back up volume %s", st.Name, volume, volume)
	}
	if level == 0 {
		level = vc.TestLevel
	}
	sn, err := r.pick(ctx, st.Name, volume, id)
	if err != nil {
		return store.RestoreTest{}, err
	}
	t := store.RestoreTest{SnapshotID: sn.ID, Stack: st.Name, Volume: volume, Level: level, Trigger: trigger, StartedAt: time.Now().UTC()}
	terr := r.test(ctx, st, vc, sn, level)
	t.FinishedAt, t.OK = time.Now().UTC(), terr == nil
	if terr != nil {
		t.Error = terr.Error()
	}
	if t.ID, err = r.Store.RecordRestoreTest(context.WithoutCancel(ctx), t); err != nil {
		return t, errors.Join(terr, err)
	}
	if r.Observe != nil {
		r.Observe(Event{Stack: st.Name, Volume: volume, Test: &t, Took: t.FinishedAt.Sub(t.StartedAt)})
	}
	log := r.Log.With("stack", st.Name, "volume", volume, "snapshot", sn.ID, "level", level)
	if terr != nil {
		log.Error("restore test failed", "err", terr)
		return t, fmt.Errorf("restore test of snapshot %d of %s/%s (level %d): %w", sn.ID, st.Name, volume, level, terr)
	}
	log.Info("restore test passed", "took", t.FinishedAt.Sub(t.StartedAt).Round(time.Millisecond))
	return t, nil
}

func (r *Runner) test(ctx context.Context, st *stack.Stack, vc VolumeConfig, sn store.Snapshot, level int) error {
	if err := format.Verify(ctx, sn.Dir, r.Identities); err != nil {
		return err
	}
	if level < 2 {
		return nil
	}
	m, err := format.ReadManifest(sn.Dir)
	if err != nil {
		return err
	}
	scratch := fmt.Sprintf("gitopsd-restore-test-%s-%s-%d", st.Name, vc.Volume, sn.ID)
	if err := r.Engine.CreateScratchVolume(ctx, scratch, r.helperLabels(st.Name)); err != nil {
		return err
	}
	defer func() { _ = r.Engine.RemoveVolume(context.WithoutCancel(ctx), scratch) }()
	if err := r.restoreInto(ctx, sn, scratch); err != nil {
		return err
	}
	rc, err := r.Engine.ReadVolume(ctx, scratch, r.helperLabels(st.Name))
	if err != nil {
		return err
	}
	cerr := format.Compare(ctx, m, rc)
	if err := errors.Join(cerr, rc.Close()); err != nil {
		return fmt.Errorf("restored copy: %w", err)
	}
	if level < 3 {
		return nil
	}
	svc := st.Project.Services[vc.VerifyWith]
	code, out, err := r.Engine.RunOnce(ctx, engine.OneOff{
		Name: scratch + "-verify", Image: svc.Image, Cmd: vc.Verify, Labels: r.helperLabels(st.Name),
		Volume: scratch, Target: MountPoint(st, vc.VerifyWith, vc.Volume), Timeout: vc.Timeout,
	})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if code != 0 {
		return fmt.Errorf("verify %q exited %d: %s", vc.Verify, code, out)
	}
	return nil
}

// restoreInto extracts a snapshot into a volume.
func (r *Runner) restoreInto(ctx context.Context, sn store.Snapshot, volume string) error {
	rc, err := format.Open(sn.Dir, r.Identities)
	if err != nil {
		return err
	}
	defer rc.Close()
	return r.Engine.WriteVolume(ctx, volume, rc, r.helperLabels(sn.Stack))
}

// VolumeName is the engine's name of a stack's volume (compose key key).
func VolumeName(st *stack.Stack, key string) string {
	if v, ok := st.Project.Volumes[key]; ok && v.Name != "" {
		return v.Name
	}
	return st.Name + "_" + key
}

func (r *Runner) helperLabels(stackName string) map[string]string {
	return map[string]string{engine.LabelStack + ".backup": stackName, LabelOwner: r.Owner}
}

// crashReader wraps the volume stream for the crash tests (crash.go).
func crashReader(r io.Reader) io.Reader {
	if crashAt != CrashHalfway {
		return r
	}
	return &halfway{r: r}
}
