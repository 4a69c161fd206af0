package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Pull is the last successful pull of one image reference.
type Pull struct {
	Ref      string // as the compose file names it
	ImageID  string // what the reference named after the pull
	PulledAt time.Time
}

// RecordPull records a successful pull, replacing the reference's last one.
func (s *Store) RecordPull(ctx context.Context, p Pull) error {
	if p.PulledAt.IsZero() {
		p.PulledAt = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO pulls (ref, image_id, pulled_at) VALUES (?, ?, ?)
		ON CONFLICT (ref) DO UPDATE SET image_id = excluded.image_id, pulled_at = excluded.pulled_at`,
		p.Ref, p.ImageID, timeArg(p.PulledAt))
	if err != nil {
		return fmt.Errorf("record pull of %s: %w", p.Ref, err)
	}
	return nil
}

// LastPull is the last successful pull of ref; ok is false when gitopsd
// never pulled it.
func (s *Store) LastPull(ctx context.Context, ref string) (p Pull, ok bool, err error) {
	var at sql.NullString
	err = s.rdb.QueryRowContext(ctx, `SELECT ref, image_id, pulled_at FROM pulls WHERE ref = ?`, ref).Scan(&p.Ref, &p.ImageID, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return Pull{}, false, nil
	}
	if err != nil {
		return Pull{}, false, fmt.Errorf("read last pull of %s: %w", ref, err)
	}
	if p.PulledAt, err = parseTime(at); err != nil {
		return Pull{}, false, err
	}
	return p, true, nil
}
