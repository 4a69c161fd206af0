package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// CheckpointEvery is how often an open Store copies the WAL into the main
// file. SQLite's own automatic checkpoint waits for 1000 pages (4 MB), which
// a quiet host takes weeks to write: until then the whole record lives in
// gitopsd.db-wal, and losing that one file (a careless cleanup, a restore of
// the main file alone) loses everything. Checkpoints also follow every
// finished deployment and every pin (Checkpoint), so a lost WAL costs at
// most the last few minutes.
const CheckpointEvery = 5 * time.Minute

// Checkpoint copies every committed transaction from the WAL into the main
// database file, fsyncs it, and truncates the WAL: from then on the main
// file alone holds the record.
func (s *Store) Checkpoint(ctx context.Context) error {
	var busy, logFrames, done int
	if err := s.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
		return fmt.Errorf("checkpoint %s: %w", s.path, err)
	}
	if busy != 0 {
		// A reader of another process held an old snapshot: what it pins
		// stays in the WAL until the next checkpoint.
		return fmt.Errorf("checkpoint %s: %d of %d WAL frames copied, a reader held the rest", s.path, done, logFrames)
	}
	return nil
}

// checkpoints checkpoints every CheckpointEvery until stop is closed.
func (s *Store) checkpoints(stop <-chan struct{}) {
	t := time.NewTicker(CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			// An error is tried again at the next tick; the record itself
			// is committed and safe against a crash of the process.
			_ = s.Checkpoint(context.Background())
		}
	}
}

// Backup writes a consistent copy of the whole database to path (VACUUM
// INTO), which must not exist yet. The copy is a plain database file with
// no WAL: it is restored by copying it to state_dir/gitopsd.db while
// gitopsd is stopped (and removing gitopsd.db-wal and gitopsd.db-shm).
func (s *Store) Backup(ctx context.Context, path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("back up the state to %s: the file exists; name a new file", path)
	}
	if _, err := s.db.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return fmt.Errorf("back up the state to %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("back up the state to %s: %w", path, err)
	}
	return nil
}

// Empty says whether the record is empty: no stack, no deployment, no
// fetched head. A daemon that finds it empty while its containers run has
// lost its record (a deleted -wal file, a zeroed or replaced gitopsd.db),
// not started for the first time.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	var n int
	err := s.rdb.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM stacks) + (SELECT count(*) FROM deployments) + (SELECT count(*) FROM source_state)`).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", s.path, err)
	}
	return n == 0, nil
}

// damaged says whether err is SQLite saying the file is not a sound
// database, as opposed to, say, a permission or a lock.
func damaged(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, s := range []string{"malformed", "not a database", "SQLITE_CORRUPT", "SQLITE_NOTADB", "integrity check"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// damagedError is the start refusal for a damaged database: it names the
// file and the two ways out, for the person reading the journal.
func damagedError(path string, err error) error {
	return fmt.Errorf("open store %s: %w\n"+
		"  the database is damaged; gitopsd will not start on it. Either:\n"+
		"  - restore a backup made with `gitopsd state backup FILE`: stop gitopsd, copy FILE to %[1]s, remove %[1]s-wal and %[1]s-shm, start gitopsd; or\n"+
		"  - reset it: stop gitopsd, move %[1]s, %[1]s-wal and %[1]s-shm aside, start gitopsd; it starts with an empty record, touches no stack, and waits for `gitopsd state adopt`",
		path, err)
}

// quickCheck runs SQLite's quick_check (the structure of every page, not
// the index contents): a damaged page is found at start, with the file
// named, rather than by a deployment's write hours later.
func quickCheck(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		if line != "ok" && len(problems) < 3 {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return errors.New("database disk image is malformed (integrity check: " + strings.Join(problems, "; ") + ")")
	}
	return nil
}

// StoppedService is a container a backup job stopped and has not started
// again yet.
type StoppedService struct {
	ContainerID, Stack, Service string
	Reason                      string // snapshot | restore
	StoppedAt                   time.Time
}

// RecordStopped notes a container about to be stopped by a backup job. It
// is written before the stop, so that a crash between the two cannot leave
// the container down with nobody knowing it was gitopsd's doing.
func (s *Store) RecordStopped(ctx context.Context, st StoppedService) error {
	if st.StoppedAt.IsZero() {
		st.StoppedAt = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO stopped_services (container_id, stack, service, reason, stopped_at)
		VALUES (?, ?, ?, ?, ?)`, st.ContainerID, st.Stack, st.Service, st.Reason, timeArg(st.StoppedAt))
	if err != nil {
		return fmt.Errorf("record %s/%s stopped for a %s: %w", st.Stack, st.Service, st.Reason, err)
	}
	// Synced to the main file now: a power cut must not lose the one row
	// that says who starts the container again. A failed checkpoint
	// leaves the row committed in the WAL, as safe as any other.
	_ = s.Checkpoint(ctx)
	return nil
}

// ClearStopped forgets a container that runs again (or is gone).
func (s *Store) ClearStopped(ctx context.Context, containerID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM stopped_services WHERE container_id = ?`, containerID); err != nil {
		return fmt.Errorf("clear stopped container %s: %w", containerID, err)
	}
	return nil
}

// StoppedServices lists the containers backup jobs stopped and did not
// start again, oldest first.
func (s *Store) StoppedServices(ctx context.Context) ([]StoppedService, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT container_id, stack, service, reason, stopped_at FROM stopped_services ORDER BY stopped_at`)
	if err != nil {
		return nil, fmt.Errorf("read stopped services: %w", err)
	}
	defer rows.Close()
	var out []StoppedService
	for rows.Next() {
		var st StoppedService
		var at sql.NullString
		if err := rows.Scan(&st.ContainerID, &st.Stack, &st.Service, &st.Reason, &at); err != nil {
			return nil, fmt.Errorf("read stopped services: %w", err)
		}
		if st.StoppedAt, err = parseTime(at); err != nil {
			return nil, fmt.Errorf("read stopped services: %w", err)
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// Phases of a restore under way.
const (
	RestoreCopying = "copying" // the old content is being copied aside; the volume is untouched
	RestoreWriting = "writing" // the copy is complete; the volume may be half-written
)

// Restore is a restore under way (see migration 0008).
type Restore struct {
	Stack, Volume, VolumeName string
	SnapshotID                int64
	SafetyDir                 string
	Phase                     string
	StartedAt                 time.Time
}

// PutRestore records a restore or moves it to another phase.
func (s *Store) PutRestore(ctx context.Context, r Restore) error {
	if r.StartedAt.IsZero() {
		r.StartedAt = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO restores (stack, volume, volume_name, snapshot_id, safety_dir, phase, started_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, r.Stack, r.Volume, r.VolumeName, r.SnapshotID, r.SafetyDir, r.Phase, timeArg(r.StartedAt))
	if err != nil {
		return fmt.Errorf("record restore of %s/%s (%s): %w", r.Stack, r.Volume, r.Phase, err)
	}
	_ = s.Checkpoint(ctx) // as in RecordStopped: this row must survive a power cut
	return nil
}

// DeleteRestore forgets a restore that ended (either way).
func (s *Store) DeleteRestore(ctx context.Context, stack, volume string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM restores WHERE stack = ? AND volume = ?`, stack, volume); err != nil {
		return fmt.Errorf("clear restore of %s/%s: %w", stack, volume, err)
	}
	return nil
}

// Restores lists the restores under way: after a start, the ones a crash cut.
func (s *Store) Restores(ctx context.Context) ([]Restore, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT stack, volume, volume_name, snapshot_id, safety_dir, phase, started_at FROM restores ORDER BY started_at`)
	if err != nil {
		return nil, fmt.Errorf("read restores: %w", err)
	}
	defer rows.Close()
	var out []Restore
	for rows.Next() {
		var r Restore
		var at sql.NullString
		if err := rows.Scan(&r.Stack, &r.Volume, &r.VolumeName, &r.SnapshotID, &r.SafetyDir, &r.Phase, &at); err != nil {
			return nil, fmt.Errorf("read restores: %w", err)
		}
		if r.StartedAt, err = parseTime(at); err != nil {
			return nil, fmt.Errorf("read restores: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
