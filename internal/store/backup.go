package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"
)

// Snapshot statuses.
const (
	SnapshotRunning = "running"
	SnapshotOK      = "ok"
	SnapshotFailed  = "failed"
	SnapshotDeleted = "deleted" // removed by retention; the row stays for history
)

// Snapshot is one snapshot of one volume of a stack.
type Snapshot struct {
	ID    int64
	Stack string
	// Name is unique across hosts and rebuilds of this one (a UTC time
	// stamp and a random suffix): the snapshot's folder on a remote.
	Name       string
	Volume     string // compose key
	Trigger    string
	Revision   string
	StartedAt  time.Time
	FinishedAt time.Time
	Status     string
	Error      string
	Dir        string
	SizeBytes  int64
	Files      int64
	DataBytes  int64
	Encrypted  bool
	// LastTest is the newest restore test of the snapshot (zero ID: none).
	LastTest RestoreTest
	// TestedOK says whether any restore test of it passed.
	TestedOK bool
}

// RestoreTest is one restore test of a snapshot.
type RestoreTest struct {
	ID         int64
	SnapshotID int64
	Stack      string
	Volume     string
	Level      int
	Trigger    string
	StartedAt  time.Time
	FinishedAt time.Time
	OK         bool
	Error      string
}

// StartSnapshot records a running snapshot and returns its ID.
func (s *Store) StartSnapshot(ctx context.Context, sn Snapshot) (int64, error) {
	if sn.StartedAt.IsZero() {
		sn.StartedAt = time.Now()
	}
	if sn.Name == "" {
		sn.Name = SnapshotName(sn.StartedAt)
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO snapshots (stack, name, volume, "trigger", revision, started_at, status, dir, encrypted)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, sn.Stack, sn.Name, sn.Volume, sn.Trigger, sn.Revision, timeArg(sn.StartedAt), SnapshotRunning, sn.Dir, sn.Encrypted)
	if err != nil {
		return 0, fmt.Errorf("start snapshot of %s/%s: %w", sn.Stack, sn.Volume, err)
	}
	return res.LastInsertId()
}

// SnapshotName names a snapshot taken at t so that the name does not
// repeat for a volume, even on a host rebuilt with an empty state_dir
// whose ids count from 1 again: 20261206T061500Z-3f9a1c. Names sort by
// time.
func SnapshotName(t time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// SetSnapshotDir records where a running snapshot writes its files.
func (s *Store) SetSnapshotDir(ctx context.Context, id int64, dir string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE snapshots SET dir = ? WHERE id = ?`, dir, id); err != nil {
		return fmt.Errorf("snapshot %d: %w", id, err)
	}
	return nil
}

// FinishSnapshot closes a snapshot as ok (with its sizes) or failed.
func (s *Store) FinishSnapshot(ctx context.Context, sn Snapshot) error {
	if sn.FinishedAt.IsZero() {
		sn.FinishedAt = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `UPDATE snapshots SET status = ?, error = ?, finished_at = ?, size_bytes = ?, files = ?, data_bytes = ? WHERE id = ?`,
		sn.Status, s.text(sn.Error), timeArg(sn.FinishedAt), sn.SizeBytes, sn.Files, sn.DataBytes, sn.ID)
	if err != nil {
		return fmt.Errorf("finish snapshot %d: %w", sn.ID, err)
	}
	return nil
}

// MarkSnapshotDeleted records that retention removed a snapshot's files.
func (s *Store) MarkSnapshotDeleted(ctx context.Context, id int64) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE snapshots SET status = ? WHERE id = ?`, SnapshotDeleted, id); err != nil {
		return fmt.Errorf("snapshot %d: %w", id, err)
	}
	return nil
}

// FailRunningSnapshots closes the snapshots a crash cut off and returns
// them, so their files can be removed.
func (s *Store) FailRunningSnapshots(ctx context.Context, reason string) ([]Snapshot, error) {
	cut, err := s.querySnapshots(ctx, "s.status = ?", SnapshotRunning)
	if err != nil {
		return nil, err
	}
	for _, sn := range cut {
		if _, err := s.db.ExecContext(ctx, `UPDATE snapshots SET status = ?, error = ?, finished_at = ? WHERE id = ?`,
			SnapshotFailed, s.text(reason), timeArg(time.Now()), sn.ID); err != nil {
			return nil, fmt.Errorf("close snapshot %d: %w", sn.ID, err)
		}
	}
	return cut, nil
}

// Snapshots lists a stack's snapshots ("" for all stacks; volume "" for
// every volume) of the given statuses (none: all), newest first.
func (s *Store) Snapshots(ctx context.Context, stack, volume string, statuses ...string) ([]Snapshot, error) {
	where, args := "1 = 1", []any{}
	if stack != "" {
		where, args = where+" AND s.stack = ?", append(args, stack)
	}
	if volume != "" {
		where, args = where+" AND s.volume = ?", append(args, volume)
	}
	if len(statuses) > 0 {
		where += " AND s.status IN (?" + repeat(",?", len(statuses)-1) + ")"
		for _, st := range statuses {
			args = append(args, st)
		}
	}
	return s.querySnapshots(ctx, where, args...)
}

// Snapshot returns one snapshot.
func (s *Store) Snapshot(ctx context.Context, id int64) (Snapshot, bool, error) {
	out, err := s.querySnapshots(ctx, "s.id = ?", id)
	if err != nil || len(out) == 0 {
		return Snapshot{}, false, err
	}
	return out[0], true, nil
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

func (s *Store) querySnapshots(ctx context.Context, where string, args ...any) ([]Snapshot, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT s.id, s.stack, s.name, s.volume, s."trigger", s.revision, s.started_at, s.finished_at, s.status, s.error, s.dir,
			s.size_bytes, s.files, s.data_bytes, s.encrypted,
			COALESCE(t.id, 0), COALESCE(t.level, 0), t.started_at, t.finished_at, COALESCE(t.ok, 0), COALESCE(t.error, ''),
			EXISTS (SELECT 1 FROM restore_tests g WHERE g.snapshot_id = s.id AND g.ok = 1)
		FROM snapshots s LEFT JOIN restore_tests t ON t.id = (SELECT max(id) FROM restore_tests WHERE snapshot_id = s.id)
		WHERE `+where+` ORDER BY s.id DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("read snapshots: %w", err)
	}
	defer rows.Close()
	var out []Snapshot
	for rows.Next() {
		var sn Snapshot
		var started, finished, tStarted, tFinished sql.NullString
		if err := rows.Scan(&sn.ID, &sn.Stack, &sn.Name, &sn.Volume, &sn.Trigger, &sn.Revision, &started, &finished, &sn.Status, &sn.Error, &sn.Dir,
			&sn.SizeBytes, &sn.Files, &sn.DataBytes, &sn.Encrypted,
			&sn.LastTest.ID, &sn.LastTest.Level, &tStarted, &tFinished, &sn.LastTest.OK, &sn.LastTest.Error, &sn.TestedOK); err != nil {
			return nil, fmt.Errorf("read snapshots: %w", err)
		}
		for _, p := range []struct {
			dst *time.Time
			src sql.NullString
		}{{&sn.StartedAt, started}, {&sn.FinishedAt, finished}, {&sn.LastTest.StartedAt, tStarted}, {&sn.LastTest.FinishedAt, tFinished}} {
			if *p.dst, err = parseTime(p.src); err != nil {
				return nil, err
			}
		}
		if sn.LastTest.ID != 0 {
			sn.LastTest.SnapshotID, sn.LastTest.Stack, sn.LastTest.Volume = sn.ID, sn.Stack, sn.Volume
		}
		out = append(out, sn)
	}
	return out, rows.Err()
}

// LastSnapshotStarted is when the newest snapshot of a stack's volume with
// the given trigger started (zero: none), whatever became of it: the
// backup schedule asks it of every volume at every tick, so it reads one
// row, not the volume's history.
func (s *Store) LastSnapshotStarted(ctx context.Context, stack, volume, trigger string) (time.Time, error) {
	var started sql.NullString
	err := s.rdb.QueryRowContext(ctx, `SELECT started_at FROM snapshots WHERE stack = ? AND volume = ? AND "trigger" = ? ORDER BY id DESC LIMIT 1`,
		stack, volume, trigger).Scan(&started)
	if err == sql.ErrNoRows {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read snapshots of %s/%s: %w", stack, volume, err)
	}
	return parseTime(started)
}

// RecordRestoreTest records a finished restore test and returns its ID.
func (s *Store) RecordRestoreTest(ctx context.Context, t RestoreTest) (int64, error) {
	if t.FinishedAt.IsZero() {
		t.FinishedAt = time.Now()
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO restore_tests (snapshot_id, stack, volume, level, "trigger", started_at, finished_at, ok, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, t.SnapshotID, t.Stack, t.Volume, t.Level, t.Trigger, timeArg(t.StartedAt), timeArg(t.FinishedAt), t.OK, s.text(t.Error))
	if err != nil {
		return 0, fmt.Errorf("record restore test of snapshot %d: %w", t.SnapshotID, err)
	}
	return res.LastInsertId()
}

// LastRestoreTest is the newest restore test of a stack's volume, of a
// scheduled or any trigger ("" for any).
func (s *Store) LastRestoreTest(ctx context.Context, stack, volume, trigger string) (RestoreTest, bool, error) {
	q := `SELECT id, snapshot_id, level, "trigger", started_at, finished_at, ok, error FROM restore_tests WHERE stack = ? AND volume = ?`
	args := []any{stack, volume}
	if trigger != "" {
		q, args = q+` AND "trigger" = ?`, append(args, trigger)
	}
	var t RestoreTest
	var started, finished sql.NullString
	err := s.rdb.QueryRowContext(ctx, q+` ORDER BY id DESC LIMIT 1`, args...).Scan(&t.ID, &t.SnapshotID, &t.Level, &t.Trigger, &started, &finished, &t.OK, &t.Error)
	if err == sql.ErrNoRows {
		return RestoreTest{}, false, nil
	}
	if err != nil {
		return RestoreTest{}, false, fmt.Errorf("read restore tests of %s/%s: %w", stack, volume, err)
	}
	t.Stack, t.Volume = stack, volume
	if t.StartedAt, err = parseTime(started); err != nil {
		return t, false, err
	}
	if t.FinishedAt, err = parseTime(finished); err != nil {
		return t, false, err
	}
	return t, true, nil
}

// SnapshotByName returns a volume's snapshot by its name.
func (s *Store) SnapshotByName(ctx context.Context, stack, volume, name string) (Snapshot, bool, error) {
	out, err := s.querySnapshots(ctx, "s.stack = ? AND s.volume = ? AND s.name = ?", stack, volume, name)
	if err != nil || len(out) == 0 {
		return Snapshot{}, false, err
	}
	return out[0], true, nil
}
