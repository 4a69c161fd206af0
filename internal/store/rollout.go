package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// HealthySince is since when a stack has run a revision Synced and Healthy
// (the rollout's soak is measured from it).
type HealthySince struct {
	Stack, Revision string
	Since           time.Time
}

// HealthySinces lists every stack's healthy-since row, by stack.
func (s *Store) HealthySinces(ctx context.Context) (map[string]HealthySince, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT stack, revision, since FROM rollout_healthy`)
	if err != nil {
		return nil, fmt.Errorf("read healthy-since rows: %w", err)
	}
	defer rows.Close()
	out := map[string]HealthySince{}
	for rows.Next() {
		var h HealthySince
		var since sql.NullString
		if err := rows.Scan(&h.Stack, &h.Revision, &since); err != nil {
			return nil, fmt.Errorf("read healthy-since rows: %w", err)
		}
		if h.Since, err = parseTime(since); err != nil {
			return nil, fmt.Errorf("read healthy-since of stack %s: %w", h.Stack, err)
		}
		out[h.Stack] = h
	}
	return out, rows.Err()
}

// PutHealthySince records that stack has run revision healthy since since,
// replacing what it said of another revision.
func (s *Store) PutHealthySince(ctx context.Context, h HealthySince) error {
	if _, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO rollout_healthy (stack, revision, since) VALUES (?, ?, ?)`,
		h.Stack, h.Revision, timeArg(h.Since)); err != nil {
		return fmt.Errorf("record healthy-since of stack %s: %w", h.Stack, err)
	}
	return nil
}

// DeleteHealthySince forgets a stack's healthy-since row: it does not run
// its revision healthy (any more).
func (s *Store) DeleteHealthySince(ctx context.Context, stack string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM rollout_healthy WHERE stack = ?`, stack); err != nil {
		return fmt.Errorf("forget healthy-since of stack %s: %w", stack, err)
	}
	return nil
}
