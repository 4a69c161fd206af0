package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Build is one image build of a stack's service.
type Build struct {
	ID         int64
	Stack      string
	Service    string
	Digest     string // of the build context's files and the build configuration
	Revision   string // the revision whose files were built
	ImageID    string // "" when the build failed
	Tag        string // the image name compose gives it
	OK         bool
	Error      string // the builder's error and last lines, when it failed
	StartedAt  time.Time
	FinishedAt time.Time
}

// RecordBuild stores a finished build and returns its ID.
func (s *Store) RecordBuild(ctx context.Context, b Build) (int64, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO builds (stack, service, digest, revision, image_id, tag, ok, error, started_at, finished_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		b.Stack, b.Service, b.Digest, b.Revision, b.ImageID, b.Tag, b.OK, s.text(b.Error), timeArg(b.StartedAt), timeArg(b.FinishedAt))
	if err != nil {
		return 0, fmt.Errorf("record build of %s/%s: %w", b.Stack, b.Service, err)
	}
	return res.LastInsertId()
}

// LastGoodBuild is the newest successful build of a service with this
// digest; ok is false when there is none.
func (s *Store) LastGoodBuild(ctx context.Context, stack, service, digest string) (Build, bool, error) {
	rows, err := s.queryBuilds(ctx, `WHERE stack = ? AND service = ? AND digest = ? AND ok = 1 ORDER BY id DESC LIMIT 1`, stack, service, digest)
	if err != nil || len(rows) == 0 {
		return Build{}, false, err
	}
	return rows[0], true, nil
}

// Builds lists the builds of a stack ("" for every stack), newest first.
func (s *Store) Builds(ctx context.Context, stack string) ([]Build, error) {
	if stack == "" {
		return s.queryBuilds(ctx, `ORDER BY id DESC`)
	}
	return s.queryBuilds(ctx, `WHERE stack = ? ORDER BY id DESC`, stack)
}

func (s *Store) queryBuilds(ctx context.Context, tail string, args ...any) ([]Build, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, stack, service, digest, revision, image_id, tag, ok, error, started_at, finished_at FROM builds `+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("read builds: %w", err)
	}
	defer rows.Close()
	var out []Build
	for rows.Next() {
		var b Build
		var started, finished sql.NullString
		if err := rows.Scan(&b.ID, &b.Stack, &b.Service, &b.Digest, &b.Revision, &b.ImageID, &b.Tag, &b.OK, &b.Error, &started, &finished); err != nil {
			return nil, fmt.Errorf("read builds: %w", err)
		}
		if b.StartedAt, err = parseTime(started); err != nil {
			return nil, err
		}
		if b.FinishedAt, err = parseTime(finished); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read builds: %w", err)
	}
	return out, nil
}
