package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Remote copy states.
const (
	CopyPending   = "pending"   // not yet read back whole from the remote
	CopyUploaded  = "uploaded"  // read back whole: the copy counts
	CopyDeleted   = "deleted"   // removed from the remote by retention
	CopyAbandoned = "abandoned" // the local snapshot went before it was sent (deleted by hand)
)

// RemoteCopy is the off-host copy of one snapshot.
type RemoteCopy struct {
	SnapshotID int64
	Stack      string
	Volume     string
	State      string
	Attempts   int
	NextAt     time.Time
	Error      string
	FailedAt   time.Time
	UploadedAt time.Time
	// Keep is the volume's keep policy as JSON, for the remote's retention.
	Keep string
}

// AddRemoteCopy records that a snapshot is to be copied to the remote.
func (s *Store) AddRemoteCopy(ctx context.Context, c RemoteCopy) error {
	if c.Keep == "" {
		c.Keep = "{}"
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO remote_copies (snapshot_id, stack, volume, state, next_at, keep) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (snapshot_id) DO NOTHING`, c.SnapshotID, c.Stack, c.Volume, CopyPending, timeArg(c.NextAt), c.Keep)
	if err != nil {
		return fmt.Errorf("record the remote copy of snapshot %d: %w", c.SnapshotID, err)
	}
	return nil
}

// DueRemoteCopies are the pending copies whose next attempt may run at
// now, oldest snapshot first.
func (s *Store) DueRemoteCopies(ctx context.Context, now time.Time) ([]RemoteCopy, error) {
	return s.queryRemoteCopies(ctx, `state = ? AND next_at <= ? ORDER BY snapshot_id`, CopyPending, timeArg(now))
}

// NextRemoteCopy is when the next pending copy comes due (zero: none pending).
func (s *Store) NextRemoteCopy(ctx context.Context) (time.Time, error) {
	var at sql.NullString
	if err := s.rdb.QueryRowContext(ctx, `SELECT min(next_at) FROM remote_copies WHERE state = ?`, CopyPending).Scan(&at); err != nil {
		return time.Time{}, fmt.Errorf("read remote copies: %w", err)
	}
	return parseTime(at)
}

// RemoteCopies lists a volume's copies (stack "" for all), newest snapshot first.
func (s *Store) RemoteCopies(ctx context.Context, stack, volume string) ([]RemoteCopy, error) {
	where, args := "1 = 1", []any{}
	if stack != "" {
		where, args = where+" AND stack = ?", append(args, stack)
	}
	if volume != "" {
		where, args = where+" AND volume = ?", append(args, volume)
	}
	return s.queryRemoteCopies(ctx, where+" ORDER BY snapshot_id DESC", args...)
}

// RemoteCopy returns the copy of one snapshot.
func (s *Store) RemoteCopy(ctx context.Context, snapshotID int64) (RemoteCopy, bool, error) {
	out, err := s.queryRemoteCopies(ctx, "snapshot_id = ?", snapshotID)
	if err != nil || len(out) == 0 {
		return RemoteCopy{}, false, err
	}
	return out[0], true, nil
}

// RemoteCopyFailed records a failed attempt and when to try again.
func (s *Store) RemoteCopyFailed(ctx context.Context, snapshotID int64, reason string, at, next time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE remote_copies SET attempts = attempts + 1, error = ?, failed_at = ?, next_at = ? WHERE snapshot_id = ?`,
		s.text(reason), timeArg(at), timeArg(next), snapshotID)
	if err != nil {
		return fmt.Errorf("remote copy of snapshot %d: %w", snapshotID, err)
	}
	return nil
}

// SetRemoteCopyState moves a copy to uploaded (at is when), deleted or abandoned.
func (s *Store) SetRemoteCopyState(ctx context.Context, snapshotID int64, state string, at time.Time) error {
	q := `UPDATE remote_copies SET state = ? WHERE snapshot_id = ?`
	args := []any{state, snapshotID}
	if state == CopyUploaded {
		q, args = `UPDATE remote_copies SET state = ?, uploaded_at = ?, attempts = attempts + 1 WHERE snapshot_id = ?`, []any{state, timeArg(at), snapshotID}
	}
	if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("remote copy of snapshot %d: %w", snapshotID, err)
	}
	return nil
}

func (s *Store) queryRemoteCopies(ctx context.Context, where string, args ...any) ([]RemoteCopy, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT snapshot_id, stack, volume, state, attempts, next_at, error, failed_at, uploaded_at, keep
		FROM remote_copies WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read remote copies: %w", err)
	}
	defer rows.Close()
	var out []RemoteCopy
	for rows.Next() {
		var c RemoteCopy
		var next, failed, uploaded sql.NullString
		if err := rows.Scan(&c.SnapshotID, &c.Stack, &c.Volume, &c.State, &c.Attempts, &next, &c.Error, &failed, &uploaded, &c.Keep); err != nil {
			return nil, fmt.Errorf("read remote copies: %w", err)
		}
		for _, p := range []struct {
			dst *time.Time
			src sql.NullString
		}{{&c.NextAt, next}, {&c.FailedAt, failed}, {&c.UploadedAt, uploaded}} {
			if *p.dst, err = parseTime(p.src); err != nil {
				return nil, err
			}
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// RemoteTest is a restore test of a downloaded remote copy.
type RemoteTest struct {
	ID                        int64
	Host, Stack, Volume, Name string
	Level                     int
	Trigger                   string
	StartedAt, FinishedAt     time.Time
	OK                        bool
	Error                     string
}

// RecordRemoteTest records a finished restore test of a remote copy.
func (s *Store) RecordRemoteTest(ctx context.Context, t RemoteTest) (int64, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO remote_tests (host, stack, volume, name, level, "trigger", started_at, finished_at, ok, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, t.Host, t.Stack, t.Volume, t.Name, t.Level, t.Trigger, timeArg(t.StartedAt), timeArg(t.FinishedAt), t.OK, s.text(t.Error))
	if err != nil {
		return 0, fmt.Errorf("record restore test of remote copy %s/%s/%s/%s: %w", t.Host, t.Stack, t.Volume, t.Name, err)
	}
	return res.LastInsertId()
}

// LastRemoteTest is the newest restore test of one remote copy (name ""
// for any copy of the volume), of a trigger ("" for any).
func (s *Store) LastRemoteTest(ctx context.Context, host, stack, volume, name, trigger string) (RemoteTest, bool, error) {
	q := `SELECT id, name, level, "trigger", started_at, finished_at, ok, error FROM remote_tests WHERE host = ? AND stack = ? AND volume = ?`
	args := []any{host, stack, volume}
	if name != "" {
		q, args = q+` AND name = ?`, append(args, name)
	}
	if trigger != "" {
		q, args = q+` AND "trigger" = ?`, append(args, trigger)
	}
	t := RemoteTest{Host: host, Stack: stack, Volume: volume}
	var started, finished sql.NullString
	err := s.rdb.QueryRowContext(ctx, q+` ORDER BY id DESC LIMIT 1`, args...).Scan(&t.ID, &t.Name, &t.Level, &t.Trigger, &started, &finished, &t.OK, &t.Error)
	if err == sql.ErrNoRows {
		return RemoteTest{}, false, nil
	}
	if err != nil {
		return RemoteTest{}, false, fmt.Errorf("read remote restore tests of %s/%s/%s: %w", host, stack, volume, err)
	}
	if t.StartedAt, err = parseTime(started); err != nil {
		return t, false, err
	}
	if t.FinishedAt, err = parseTime(finished); err != nil {
		return t, false, err
	}
	return t, true, nil
}
