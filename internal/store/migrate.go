package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// ErrSchemaTooNew is returned (wrapped) by Open when the database was written
// by a newer gitopsd than this binary: its schema cannot be trusted here.
var ErrSchemaTooNew = errors.New("database schema is newer than this gitopsd")

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema step; version n is the file NNNN_*.sql and leaves
// PRAGMA user_version at n.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the schema steps compiled into the binary, in order.
var migrations = mustLoadMigrations(migrationFiles)

func mustLoadMigrations(fsys fs.FS) []migration {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		panic(err)
	}
	sort.Strings(names)
	ms := make([]migration, 0, len(names))
	for i, name := range names {
		base := path.Base(name)
		prefix, _, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(prefix)
		if err != nil || v != i+1 {
			// A build-time mistake, caught by any test that opens a store.
			panic(fmt.Sprintf("store: migration %s: want version %d as its NNNN_ prefix", base, i+1))
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			panic(err)
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	return ms
}

// SchemaVersion is the schema version this binary writes (PRAGMA user_version).
func SchemaVersion() int { return len(migrations) }

// migrate brings the database at user_version up to SchemaVersion. All
// pending migrations run in one IMMEDIATE transaction (the writer pool's
// _txlock), so a crash or a concurrent gitopsd leaves either the old schema or
// the new one, never half of it.
func migrate(ctx context.Context, db *sql.DB) error {
	current, err := userVersion(ctx, db)
	if err != nil {
		return err
	}
	if err := checkVersion(current); err != nil || current == len(migrations) {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// Read again under the write lock: another process may have migrated
	// between the check above and BEGIN IMMEDIATE.
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	if err := checkVersion(current); err != nil {
		return err
	}
	for _, m := range migrations[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migrate: %s: %w", m.name, err)
		}
	}
	// PRAGMA takes no bound parameters; the value is our own integer.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("migrate: set schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

func userVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func checkVersion(v int) error {
	if v > len(migrations) {
		return fmt.Errorf("schema version %d, this gitopsd knows up to %d (upgrade gitopsd, or move the database aside): %w",
			v, len(migrations), ErrSchemaTooNew)
	}
	return nil
}
