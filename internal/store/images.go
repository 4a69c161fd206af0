package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Image origins.
const (
	ImageBuilt  = "built"
	ImagePulled = "pulled"
)

// Image is an image gitopsd brought to the host.
type Image struct {
	ID         string
	Ref        string // the name it was built or pulled as
	Origin     string // built | pulled
	AddedAt    time.Time
	LastUsedAt time.Time
	RemovedAt  time.Time // zero while on the host
}

// NoteImage records an image gitopsd built or pulled, as in use at at. An
// image removed before and brought back is on the host again.
func (s *Store) NoteImage(ctx context.Context, id, ref, origin string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO images (image_id, ref, origin, added_at, last_used_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (image_id) DO UPDATE SET ref = excluded.ref, last_used_at = excluded.last_used_at, removed_at = NULL`,
		id, ref, origin, timeArg(at), timeArg(at))
	if err != nil {
		return fmt.Errorf("note image %s: %w", ref, err)
	}
	return nil
}

// AdoptImage records an image gitopsd built but never recorded (a kill -9
// between the build and its record) as in use at at, so the grace period
// starts now; an image already recorded is left as it is.
func (s *Store) AdoptImage(ctx context.Context, id, ref, origin string, at time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO images (image_id, ref, origin, added_at, last_used_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (image_id) DO NOTHING`, id, ref, origin, timeArg(at), timeArg(at))
	if err != nil {
		return false, fmt.Errorf("adopt image %s: %w", ref, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// MarkImagesUsed sets the last use of those of ids gitopsd recorded to at.
func (s *Store) MarkImagesUsed(ctx context.Context, ids []string, at time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("mark images used: %w", err)
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `UPDATE images SET last_used_at = ? WHERE image_id = ? AND removed_at IS NULL`, timeArg(at), id); err != nil {
			return fmt.Errorf("mark image %s used: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("mark images used: %w", err)
	}
	return nil
}

// UnusedImages lists the images still on the host whose last use is
// before before, oldest first.
func (s *Store) UnusedImages(ctx context.Context, before time.Time) ([]Image, error) {
	return s.queryImages(ctx, `WHERE removed_at IS NULL AND last_used_at < ? ORDER BY last_used_at`, timeArg(before))
}

// Images lists every recorded image, removed ones too.
func (s *Store) Images(ctx context.Context) ([]Image, error) {
	return s.queryImages(ctx, `ORDER BY added_at`)
}

// MarkImageRemoved records that an image left the host.
func (s *Store) MarkImageRemoved(ctx context.Context, id string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE images SET removed_at = ? WHERE image_id = ?`, timeArg(at), id); err != nil {
		return fmt.Errorf("mark image %s removed: %w", id, err)
	}
	return nil
}

func (s *Store) queryImages(ctx context.Context, tail string, args ...any) ([]Image, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT image_id, ref, origin, added_at, last_used_at, removed_at FROM images `+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("read images: %w", err)
	}
	defer rows.Close()
	var out []Image
	for rows.Next() {
		var im Image
		var added, used, removed sql.NullString
		if err := rows.Scan(&im.ID, &im.Ref, &im.Origin, &added, &used, &removed); err != nil {
			return nil, fmt.Errorf("read images: %w", err)
		}
		for _, t := range []struct {
			dst *time.Time
			src sql.NullString
		}{{&im.AddedAt, added}, {&im.LastUsedAt, used}, {&im.RemovedAt, removed}} {
			if *t.dst, err = parseTime(t.src); err != nil {
				return nil, err
			}
		}
		out = append(out, im)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read images: %w", err)
	}
	return out, nil
}
