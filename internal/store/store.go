package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// readConns bounds the reader pool. Reads are short; a handful lets status,
// history and metrics run side by side while a deployment writes.
const readConns = 4

// Store is gitopsd's durable record: one SQLite database (WAL) under state_dir.
//
// It holds two pools over the same file: db, the only writer (one
// connection, transactions BEGIN IMMEDIATE), and rdb, readers (query_only).
// Writers of this process queue in database/sql instead of spinning on
// SQLITE_BUSY; readers never wait for writers, as WAL allows.
type Store struct {
	db   *sql.DB // writer: MaxOpenConns(1)
	rdb  *sql.DB // readers
	path string
	// redact takes secrets out of free text (errors, step details, drift
	// details) before it is written; nil writes it as it is.
	redact func(string) string
	// stop ends the periodic checkpoints (CheckpointEvery).
	stop chan struct{}
}

// Open opens (creating if needed) the database at path and applies the
// migrations compiled into the binary. A database written by a newer gitopsd
// is refused with an error wrapping ErrSchemaTooNew.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	// Create the file ourselves so it is private: SQLite would use 0644, and
	// gives the -wal and -shm files the mode of the main file.
	f, err := os.OpenFile(abs, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	f.Close()

	s := &Store{path: abs}
	if s.db, err = sql.Open("sqlite", dsn(abs, false)); err != nil {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	s.db.SetMaxOpenConns(1)
	s.db.SetMaxIdleConns(1)
	s.db.SetConnMaxLifetime(0)
	s.db.SetConnMaxIdleTime(0)
	if err := s.init(ctx); err != nil {
		s.db.Close()
		if damaged(err) {
			return nil, damagedError(abs, err)
		}
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	if s.rdb, err = sql.Open("sqlite", dsn(abs, true)); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	s.rdb.SetMaxOpenConns(readConns)
	s.rdb.SetMaxIdleConns(readConns)
	if err := s.rdb.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	s.stop = make(chan struct{})
	go s.checkpoints(s.stop)
	return s, nil
}

// Close closes both pools. The last connection to close checkpoints the WAL
// into the main file.
func (s *Store) Close() error {
	var errs []error
	if s.stop != nil {
		close(s.stop)
		s.stop = nil
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}

// Path is the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// SetRedact makes every free-text column (errors, step details, drift
// details: where output of hooks, probes, builds and verify commands
// lands) go through redact before it is written, so that a decrypted
// secret a container printed never reaches the database. Call it before
// the store is used.
func (s *Store) SetRedact(redact func(string) string) { s.redact = redact }

// text is free text as it may be written.
func (s *Store) text(v string) string {
	if s.redact == nil {
		return v
	}
	return s.redact(v)
}

// init checks that WAL took effect and migrates.
func (s *Store) init(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		// e.g. a file system without shared memory for the -shm file.
		return fmt.Errorf("journal_mode is %q, want wal", mode)
	}
	if err := migrate(ctx, s.db); err != nil {
		return err
	}
	return quickCheck(ctx, s.db)
}

// dsn is the driver's data source name. Pragmas go in the DSN so that every
// connection the pool opens, now or after a reconnect, gets them.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)") // other processes (sqlite3 shell, a second gitopsd)
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)") // see doc.go: durable against process crash
	q.Add("_pragma", "foreign_keys(ON)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		// Take the write lock at BEGIN: a deferred transaction that reads
		// first could fail with SQLITE_BUSY when it upgrades.
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// SourceState is what the daemon last learned from the Git source.
type SourceState struct {
	URL, Branch string
	Head        string // newest fetched revision of the branch
	FetchedAt   time.Time
	Error       string // why the last fetch failed or was not trusted; "" if it worked
}

// PutSourceState replaces the single source row.
func (s *Store) PutSourceState(ctx context.Context, st SourceState) error {
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO source_state (id, url, branch, head, fetched_at, error) VALUES (1, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET url = excluded.url, branch = excluded.branch, head = excluded.head,
			fetched_at = excluded.fetched_at, error = excluded.error`,
		st.URL, st.Branch, st.Head, timeArg(st.FetchedAt), s.text(st.Error))
	if err != nil {
		return fmt.Errorf("store source state: %w", err)
	}
	return nil
}

// SourceState returns the source row, or the zero SourceState before the
// first PutSourceState.
func (s *Store) SourceState(ctx context.Context) (SourceState, error) {
	var st SourceState
	var fetched sql.NullString
	err := s.rdb.QueryRowContext(ctx, `SELECT url, branch, head, fetched_at, error FROM source_state WHERE id = 1`).
		Scan(&st.URL, &st.Branch, &st.Head, &fetched, &st.Error)
	if errors.Is(err, sql.ErrNoRows) {
		return SourceState{}, nil
	}
	if err == nil {
		st.FetchedAt, err = parseTime(fetched)
	}
	if err != nil {
		return SourceState{}, fmt.Errorf("read source state: %w", err)
	}
	return st, nil
}

// Revision is a commit the daemon has seen.
type Revision struct {
	SHA         string
	Message     string // first line
	Author      string
	CommittedAt time.Time
	SeenAt      time.Time
}

// RecordRevision inserts a revision once; later calls are no-ops.
func (s *Store) RecordRevision(ctx context.Context, r Revision) error {
	if r.SHA == "" {
		return errors.New("record revision: empty sha")
	}
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO revisions (sha, message, author, committed_at, seen_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (sha) DO NOTHING`,
		r.SHA, r.Message, r.Author, timeArg(r.CommittedAt), timeArg(r.SeenAt))
	if err != nil {
		return fmt.Errorf("record revision %s: %w", r.SHA, err)
	}
	return nil
}

// Revision returns the recorded revision with that sha.
func (s *Store) Revision(ctx context.Context, sha string) (Revision, bool, error) {
	r := Revision{SHA: sha}
	var committed, seen sql.NullString
	err := s.rdb.QueryRowContext(ctx, `SELECT message, author, committed_at, seen_at FROM revisions WHERE sha = ?`, sha).
		Scan(&r.Message, &r.Author, &committed, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return Revision{}, false, nil
	}
	if err == nil {
		if r.CommittedAt, err = parseTime(committed); err == nil {
			r.SeenAt, err = parseTime(seen)
		}
	}
	if err != nil {
		return Revision{}, false, fmt.Errorf("read revision %s: %w", sha, err)
	}
	return r, true, nil
}

// StackState is the per-stack record the status command shows.
type StackState struct {
	Name                string
	Revision            string // revision applied
	Target              string // revision wanted
	Sync                string // Synced|OutOfSync|Progressing|Invalid|Failed
	Health              string // Healthy|Progressing|Degraded|Unknown
	Pinned              bool
	Error               string
	LastHealthyRevision string
	// FailedRevision is a revision that failed and must not be retried
	// automatically until the branch moves.
	FailedRevision string
	UpdatedAt      time.Time
}

// PutStack inserts or replaces the stack's row. A zero UpdatedAt is stored as
// the current time.
func (s *Store) PutStack(ctx context.Context, st StackState) error {
	if st.Name == "" {
		return errors.New("store stack: empty name")
	}
	if st.UpdatedAt.IsZero() {
		st.UpdatedAt = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `
		INSERT OR REPLACE INTO stacks (name, revision, target, sync, health, pinned, error,
			last_healthy_revision, failed_revision, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		st.Name, st.Revision, st.Target, st.Sync, st.Health, st.Pinned, s.text(st.Error),
		st.LastHealthyRevision, st.FailedRevision, timeArg(st.UpdatedAt))
	if err != nil {
		return fmt.Errorf("store stack %s: %w", st.Name, err)
	}
	return nil
}

const stackCols = `name, revision, target, sync, health, pinned, error, last_healthy_revision, failed_revision, updated_at`

// Stack returns the stack's row; false if there is none.
func (s *Store) Stack(ctx context.Context, name string) (StackState, bool, error) {
	st, err := scanStack(s.rdb.QueryRowContext(ctx, `SELECT `+stackCols+` FROM stacks WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return StackState{}, false, nil
	}
	if err != nil {
		return StackState{}, false, fmt.Errorf("read stack %s: %w", name, err)
	}
	return st, true, nil
}

// Stacks returns every stack row, sorted by name.
func (s *Store) Stacks(ctx context.Context) ([]StackState, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+stackCols+` FROM stacks ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("read stacks: %w", err)
	}
	defer rows.Close()
	var out []StackState
	for rows.Next() {
		st, err := scanStack(rows)
		if err != nil {
			return nil, fmt.Errorf("read stacks: %w", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read stacks: %w", err)
	}
	return out, nil
}

// DeleteStack removes the stack's row. Its deployments stay: history
// outlives the stack.
func (s *Store) DeleteStack(ctx context.Context, name string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM stacks WHERE name = ?`, name); err != nil {
		return fmt.Errorf("delete stack %s: %w", name, err)
	}
	return nil
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

func scanStack(r scanner) (StackState, error) {
	var st StackState
	var updated sql.NullString
	if err := r.Scan(&st.Name, &st.Revision, &st.Target, &st.Sync, &st.Health, &st.Pinned, &st.Error,
		&st.LastHealthyRevision, &st.FailedRevision, &updated); err != nil {
		return StackState{}, err
	}
	var err error
	st.UpdatedAt, err = parseTime(updated)
	return st, err
}

// timeLayout is RFC 3339 in UTC with a fixed nine-digit fraction, so that
// stored times sort as text in time order (RFC3339Nano trims zeros and does not).
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// timeArg is a time as stored: UTC text, or NULL for the zero time.
func timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(timeLayout)
}

// parseTime reads a stored time back as UTC; NULL is the zero time.
func parseTime(s sql.NullString) (time.Time, error) {
	if !s.Valid || s.String == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s.String)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad stored time %q: %w", s.String, err)
	}
	return t.UTC(), nil
}
