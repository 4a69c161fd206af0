package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// ErrNoRemote is returned (wrapped) for a remote job on a daemon without
// backup.remote.
var ErrNoRemote = errors.New("no remote is configured (backup.remote.url)")

// TestRemote downloads the newest copy of a volume of this host from the
// remote into a folder under the Offsite's Dir, restore-tests it at level
// 1, 2 or 3 (0: the volume's own) and records the result; a failed test,
// a damaged copy or a remote that cannot be read is an error naming why.
// It is the test that proves the backup outlives the host.
func (r *Runner) TestRemote(ctx context.Context, st *stack.Stack, cfg *Config, volume string, level int, trigger string) (store.RemoteTest, error) {
	vc, ok := cfg.Volumes[volume]
	if !ok {
		return store.RemoteTest{}, fmt.Errorf("test %s/%s: the stack does not back up volume %s", st.Name, volume, volume)
	}
	if r.Offsite == nil {
		return store.RemoteTest{}, fmt.Errorf("test the remote copy of %s/%s: %w", st.Name, volume, ErrNoRemote)
	}
	if level == 0 {
		level = vc.TestLevel
	}
	t := store.RemoteTest{Host: r.Offsite.Host, Stack: st.Name, Volume: volume, Level: level, Trigger: trigger, StartedAt: time.Now().UTC()}
	terr := func() error {
		tmp, err := r.Offsite.TempDir()
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		sn, err := r.Offsite.Fetch(ctx, r.Offsite.Host, st.Name, volume, "", filepath.Join(tmp, "snapshot"))
		t.Name = sn.Name
		if err != nil {
			return err
		}
		return r.TestSnapshot(ctx, st, cfg, volume, sn, level)
	}()
	if errors.Is(terr, ErrNoSnapshot) {
		return t, terr // nothing was tested: no result to record
	}
	t.FinishedAt, t.OK = time.Now().UTC(), terr == nil
	if terr != nil {
		t.Error = terr.Error()
	}
	var err error
	if t.ID, err = r.Store.RecordRemoteTest(context.WithoutCancel(ctx), t); err != nil {
		return t, errors.Join(terr, err)
	}
	if r.Observe != nil {
		r.Observe(Event{Stack: st.Name, Volume: volume, RemoteTest: &t, Took: t.FinishedAt.Sub(t.StartedAt)})
	}
	log := r.Log.With("stack", st.Name, "volume", volume, "copy", t.Name, "level", level, "remote", r.Offsite.Where)
	if terr != nil {
		log.Error("restore test of the remote copy failed", "err", terr)
		return t, fmt.Errorf("restore test of the remote copy %s of %s/%s (level %d): %w", t.Name, st.Name, volume, level, terr)
	}
	log.Info("restore test of the remote copy passed", "took", t.FinishedAt.Sub(t.StartedAt).Round(time.Millisecond))
	return t, nil
}

// TestSnapshot restore-tests a snapshot that is not in the record, such as
// a remote copy Offsite.Fetch downloaded, at level 1, 2 or 3. It records
// nothing.
func (r *Runner) TestSnapshot(ctx context.Context, st *stack.Stack, cfg *Config, volume string, sn store.Snapshot, level int) error {
	vc, ok := cfg.Volumes[volume]
	if !ok {
		return fmt.Errorf("test %s/%s: the stack does not back up volume %s", st.Name, volume, volume)
	}
	return r.test(ctx, st, vc, sn, level)
}
