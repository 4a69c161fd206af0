package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

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
// d.ID is ignored. d.Steps, when given, are its first steps, written with
// it: what led to a sync (its phases) costs no write of its own.
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
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("start deployment of %s: %w", d.Stack, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `
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
	for _, st := range d.Steps {
		st.DeploymentID = id
		if _, err := s.addStep(ctx, tx, st); err != nil {
			return 0, fmt.Errorf("start deployment of %s: %w", d.Stack, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("start deployment of %s: %w", d.Stack, err)
	}
	return id, nil
}

// AddStep appends a step to its deployment (which must exist) and returns the
// step's ID. A zero At is stored as the current time.
func (s *Store) AddStep(ctx context.Context, st Step) (int64, error) {
	return s.addStep(ctx, s.db, st)
}

// execer is the writer pool or one of its transactions.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (s *Store) addStep(ctx context.Context, db execer, st Step) (int64, error) {
	if st.At.IsZero() {
		st.At = time.Now()
	}
	res, err := db.ExecContext(ctx, `
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
		st, err := scanStep(rows)
		if err != nil {
			return nil, err
		}
		if i, ok := index[st.DeploymentID]; ok {
			ds[i].Steps = append(ds[i].Steps, st)
		}
	}
	return ds, rows.Err()
}

// scanStep reads one row of stepCols.
func scanStep(rows *sql.Rows) (Step, error) {
	var st Step
	var at sql.NullString
	var ms int64
	if err := rows.Scan(&st.ID, &st.DeploymentID, &at, &st.Action, &st.Service, &st.Container, &st.Detail, &st.Error, &ms, &st.Replica); err != nil {
		return st, err
	}
	st.Duration = time.Duration(ms) * time.Millisecond
	var err error
	if st.At, err = parseTime(at); err != nil {
		return st, fmt.Errorf("step %d: %w", st.ID, err)
	}
	return st, nil
}

// LastSteps returns the newest step of action in the stack's deployments
// for each name such steps carry (Container): how each volume was last
// filled, for restore-volume.
func (s *Store) LastSteps(ctx context.Context, stack, action string) (map[string]Step, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+stepCols+` FROM deployment_steps
		WHERE action = ? AND deployment_id IN (SELECT id FROM deployments WHERE stack = ?)
		ORDER BY id DESC`, action, stack)
	if err != nil {
		return nil, fmt.Errorf("read %s steps of %s: %w", action, stack, err)
	}
	defer rows.Close()
	out := map[string]Step{}
	for rows.Next() {
		st, err := scanStep(rows)
		if err != nil {
			return nil, fmt.Errorf("read %s steps of %s: %w", action, stack, err)
		}
		if _, ok := out[st.Container]; !ok {
			out[st.Container] = st
		}
	}
	return out, rows.Err()
}
