package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Drift is one difference between a stack's applied revision and what runs
// (or, for kind behind, between the branch and what the stack runs).
type Drift struct {
	ID        int64
	Stack     string
	Service   string // "" for a stack-wide drift
	Container string // container name (or network/volume), "" for service- or stack-wide drift
	Kind      string
	Detail    string
	OpenedAt  time.Time
	ClosedAt  time.Time // zero while open
	ClosedBy  string    // healed | resolved | superseded; "" while open
}

// Open reports whether the drift is still open.
func (d Drift) Open() bool { return d.ClosedAt.IsZero() }

// OpenDrift records a drift unless one with the same stack, service,
// container and kind is open already; it returns the open row's ID and
// whether this call opened it. An open row's detail is brought up to date.
func (s *Store) OpenDrift(ctx context.Context, d Drift) (int64, bool, error) {
	if d.OpenedAt.IsZero() {
		d.OpenedAt = time.Now()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, fmt.Errorf("open drift %s/%s: %w", d.Stack, d.Kind, err)
	}
	defer tx.Rollback()
	var id int64
	err = tx.QueryRowContext(ctx, `SELECT id FROM drifts WHERE stack = ? AND service = ? AND container = ? AND kind = ? AND closed_at IS NULL`,
		d.Stack, d.Service, d.Container, d.Kind).Scan(&id)
	opened := false
	switch {
	case err == sql.ErrNoRows:
		res, err := tx.ExecContext(ctx, `INSERT INTO drifts (stack, service, container, kind, detail, opened_at) VALUES (?, ?, ?, ?, ?, ?)`,
			d.Stack, d.Service, d.Container, d.Kind, s.text(d.Detail), timeArg(d.OpenedAt))
		if err != nil {
			return 0, false, fmt.Errorf("open drift %s/%s: %w", d.Stack, d.Kind, err)
		}
		if id, err = res.LastInsertId(); err != nil {
			return 0, false, fmt.Errorf("open drift %s/%s: %w", d.Stack, d.Kind, err)
		}
		opened = true
	case err != nil:
		return 0, false, fmt.Errorf("open drift %s/%s: %w", d.Stack, d.Kind, err)
	default:
		if _, err := tx.ExecContext(ctx, `UPDATE drifts SET detail = ? WHERE id = ?`, s.text(d.Detail), id); err != nil {
			return 0, false, fmt.Errorf("update drift %d: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, false, fmt.Errorf("open drift %s/%s: %w", d.Stack, d.Kind, err)
	}
	return id, opened, nil
}

// CloseDrift closes an open drift; closing a closed one changes nothing.
func (s *Store) CloseDrift(ctx context.Context, id int64, by string, at time.Time) error {
	if at.IsZero() {
		at = time.Now()
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE drifts SET closed_at = ?, closed_by = ? WHERE id = ? AND closed_at IS NULL`, timeArg(at), by, id); err != nil {
		return fmt.Errorf("close drift %d: %w", id, err)
	}
	return nil
}

// OpenDrifts lists the open drifts of a stack ("" for every stack), oldest first.
func (s *Store) OpenDrifts(ctx context.Context, stack string) ([]Drift, error) {
	where, args := "closed_at IS NULL", []any{}
	if stack != "" {
		where, args = where+" AND stack = ?", append(args, stack)
	}
	return s.queryDrifts(ctx, where+" ORDER BY id", args...)
}

// Drifts lists the open drifts and the newest closed ones (up to limit,
// <= 0 for all), newest first.
func (s *Store) Drifts(ctx context.Context, limit int) ([]Drift, error) {
	q := "closed_at IS NULL OR id IN (SELECT id FROM drifts WHERE closed_at IS NOT NULL ORDER BY id DESC"
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	return s.queryDrifts(ctx, q+") ORDER BY id DESC")
}

// CountDrifts counts every drift row ever recorded for a stack.
func (s *Store) CountDrifts(ctx context.Context, stack string) (int, error) {
	var n int
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM drifts WHERE stack = ?`, stack).Scan(&n); err != nil {
		return 0, fmt.Errorf("count drifts of %s: %w", stack, err)
	}
	return n, nil
}

func (s *Store) queryDrifts(ctx context.Context, where string, args ...any) ([]Drift, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, stack, service, container, kind, detail, opened_at, closed_at, closed_by FROM drifts WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read drifts: %w", err)
	}
	defer rows.Close()
	var out []Drift
	for rows.Next() {
		var d Drift
		var opened, closed sql.NullString
		if err := rows.Scan(&d.ID, &d.Stack, &d.Service, &d.Container, &d.Kind, &d.Detail, &opened, &closed, &d.ClosedBy); err != nil {
			return nil, fmt.Errorf("read drifts: %w", err)
		}
		if d.OpenedAt, err = parseTime(opened); err != nil {
			return nil, err
		}
		if d.ClosedAt, err = parseTime(closed); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read drifts: %w", err)
	}
	return out, nil
}
