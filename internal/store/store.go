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

// Deployment is one attempt to bring a stack to a revision.
type Deployment struct {
	ID         int64
	Stack      string
	Trigger    string // poll|webhook|manual|heal|rollback|startup
	From, To   string // revisions
	StartedAt  time.Time
	FinishedAt time.Time // zero while running
	Outcome    string    // running|succeeded|failed|rolled_back
	Error      string
	Steps      []Step
}

// Step is one action of a deployment.
type Step struct {
	ID           int64
	DeploymentID int64
	At           time.Time
	Action       string // e.g. create, start, stop, remove, recreate, network-create
	Service      string
	Replica      int // the service's replica number; 0 for other steps
	Container    string
	Detail       string
	Error        string
	// Duration is how long the step took; a create or recreate includes
	// the new container's health gate.
	Duration time.Duration
}

// Outcomes the store itself relies on; the sync package owns the others.
const (
	outcomeRunning   = "running"
	outcomeSucceeded = "succeeded"
	outcomeFailed    = "failed"
)

// StartDeployment records a running deployment and returns its ID. An empty
// Outcome is stored as "running" and a zero StartedAt as the current time;
// d.ID and d.Steps are ignored.
func (s *Store) StartDeployment(ctx context.Context, d Deployment) (int64, error) {
	if d.Stack == "" {
		return 0, errors.New("start deployment: empty stack")
	}
	if d.Outcome == "" {
		d.Outcome = outcomeRunning
	}
	if d.StartedAt.IsZero() {
		d.StartedAt = time.Now()
	}
	res, err := s.db.ExecContext(ctx, `
		INSERT INTO deployments (stack, "trigger", from_rev, to_rev, started_at, finished_at, outcome, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		d.Stack, d.Trigger, d.From, d.To, timeArg(d.StartedAt), timeArg(d.FinishedAt), d.Outcome, s.text(d.Error))
	if err != nil {
		return 0, fmt.Errorf("start deployment of %s: %w", d.Stack, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("start deployment of %s: %w", d.Stack, err)
	}
	return id, nil
}

// AddStep appends a step to its deployment (which must exist) and returns the
// step's ID. A zero At is stored as the current time.
func (s *Store) AddStep(ctx context.Context, st Step) (int64, error) {
	if st.At.IsZero() {
		st.At = time.Now()
	}
	res, err := s.db.ExecContext(ctx, `
		INSERT INTO deployment_steps (deployment_id, at, action, service, container, detail, error, duration_ms, replica)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		st.DeploymentID, timeArg(st.At), st.Action, st.Service, st.Container, s.text(st.Detail), s.text(st.Error), st.Duration.Milliseconds(), st.Replica)
	if err != nil {
		return 0, fmt.Errorf("add step %s to deployment %d: %w", st.Action, st.DeploymentID, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("add step %s to deployment %d: %w", st.Action, st.DeploymentID, err)
	}
	return id, nil
}

// FinishDeployment sets the outcome, error and finish time of a deployment.
// A zero at is stored as the current time.
func (s *Store) FinishDeployment(ctx context.Context, id int64, outcome, errMsg string, at time.Time) error {
	if at.IsZero() {
		at = time.Now()
	}
	res, err := s.db.ExecContext(ctx, `UPDATE deployments SET outcome = ?, error = ?, finished_at = ? WHERE id = ?`,
		outcome, s.text(errMsg), timeArg(at), id)
	if err != nil {
		return fmt.Errorf("finish deployment %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("finish deployment %d: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("finish deployment %d: no such deployment", id)
	}
	// A finished deployment is worth more than a checkpoint costs: from
	// here a lost -wal file no longer loses it. A failed checkpoint is
	// tried again by the periodic one; the row itself is committed.
	_ = s.Checkpoint(ctx)
	return nil
}

// Deployments lists deployments newest first, with their steps; stack ""
// means all stacks, limit <= 0 means no limit.
func (s *Store) Deployments(ctx context.Context, stack string, limit int) ([]Deployment, error) {
	var ds []Deployment
	var err error
	if stack == "" {
		ds, err = s.queryDeployments(ctx, "1 = 1", limit)
	} else {
		ds, err = s.queryDeployments(ctx, "stack = ?", limit, stack)
	}
	if err != nil {
		return nil, fmt.Errorf("read deployments: %w", err)
	}
	return ds, nil
}

// Deployment returns one deployment with its steps.
func (s *Store) Deployment(ctx context.Context, id int64) (Deployment, bool, error) {
	ds, err := s.queryDeployments(ctx, "id = ?", 1, id)
	if err != nil {
		return Deployment{}, false, fmt.Errorf("read deployment %d: %w", id, err)
	}
	if len(ds) == 0 {
		return Deployment{}, false, nil
	}
	return ds[0], true, nil
}

// LastDeployment returns the stack's newest deployment, whatever its outcome.
func (s *Store) LastDeployment(ctx context.Context, stack string) (Deployment, bool, error) {
	ds, err := s.queryDeployments(ctx, "stack = ?", 1, stack)
	if err != nil {
		return Deployment{}, false, fmt.Errorf("read last deployment of %s: %w", stack, err)
	}
	if len(ds) == 0 {
		return Deployment{}, false, nil
	}
	return ds[0], true, nil
}

// LastSucceeded returns the stack's newest deployment that succeeded.
func (s *Store) LastSucceeded(ctx context.Context, stack string) (Deployment, bool, error) {
	ds, err := s.queryDeployments(ctx, "stack = ? AND outcome = '"+outcomeSucceeded+"'", 1, stack)
	if err != nil {
		return Deployment{}, false, fmt.Errorf("read last successful deployment of %s: %w", stack, err)
	}
	if len(ds) == 0 {
		return Deployment{}, false, nil
	}
	return ds[0], true, nil
}

// FailRunningDeployments closes deployments left "running" by a crash: they
// become "failed" with reason (appended to any error they had) and finish at
// at. It returns how many it closed.
func (s *Store) FailRunningDeployments(ctx context.Context, reason string, at time.Time) (int, error) {
	if at.IsZero() {
		at = time.Now()
	}
	res, err := s.db.ExecContext(ctx, `
		UPDATE deployments
		SET outcome = ?2, finished_at = ?3,
			error = CASE WHEN error = '' THEN ?1 ELSE error || '; ' || ?1 END
		WHERE outcome = ?4`,
		s.text(reason), outcomeFailed, timeArg(at), outcomeRunning)
	if err != nil {
		return 0, fmt.Errorf("fail running deployments: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("fail running deployments: %w", err)
	}
	return int(n), nil
}

const deploymentCols = `id, stack, "trigger", from_rev, to_rev, started_at, finished_at, outcome, error`
const stepCols = `id, deployment_id, at, action, service, container, detail, error, duration_ms, replica`

// queryDeployments returns the deployments matching where (a constant SQL
// condition over deployments, with args), newest first, at most limit (<= 0:
// all), each with its steps in order. Two queries in one read transaction,
// so both see the same snapshot: one for the deployments, one for all their
// steps.
func (s *Store) queryDeployments(ctx context.Context, where string, limit int, args ...any) ([]Deployment, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	selection := ` FROM deployments WHERE ` + where + ` ORDER BY id DESC LIMIT ?`
	qargs := append(args[:len(args):len(args)], limit)

	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // read-only

	rows, err := tx.QueryContext(ctx, `SELECT `+deploymentCols+selection, qargs...)
	if err != nil {
		return nil, err
	}
	var ds []Deployment
	index := map[int64]int{}
	for rows.Next() {
		var d Deployment
		var started, finished sql.NullString
		if err := rows.Scan(&d.ID, &d.Stack, &d.Trigger, &d.From, &d.To, &started, &finished, &d.Outcome, &d.Error); err != nil {
			rows.Close()
			return nil, err
		}
		if d.StartedAt, err = parseTime(started); err == nil {
			d.FinishedAt, err = parseTime(finished)
		}
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("deployment %d: %w", d.ID, err)
		}
		index[d.ID] = len(ds)
		ds = append(ds, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, nil
	}

	rows, err = tx.QueryContext(ctx, `SELECT `+stepCols+` FROM deployment_steps
		WHERE deployment_id IN (SELECT id`+selection+`)
		ORDER BY deployment_id, id`, qargs...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var st Step
		var at sql.NullString
		var ms int64
		if err := rows.Scan(&st.ID, &st.DeploymentID, &at, &st.Action, &st.Service, &st.Container, &st.Detail, &st.Error, &ms, &st.Replica); err != nil {
			return nil, err
		}
		st.Duration = time.Duration(ms) * time.Millisecond
		if st.At, err = parseTime(at); err != nil {
			return nil, fmt.Errorf("step %d: %w", st.ID, err)
		}
		if i, ok := index[st.DeploymentID]; ok {
			ds[i].Steps = append(ds[i].Steps, st)
		}
	}
	return ds, rows.Err()
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
