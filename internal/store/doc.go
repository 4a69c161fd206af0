// Package store is gitopsd's durable record: one SQLite database,
// state_dir/gitopsd.db, written through modernc.org/sqlite (pure Go, no cgo).
//
// # Model
//
// The database answers "what does this host know, and what did it do":
//
//   - revisions: every commit the daemon has fetched (sha, first line of the
//     message, author, commit time, when it was first seen). Written once.
//   - source_state: a single row, what the last fetch of the Git source
//     learned (url with secrets removed, branch, head, time, error).
//   - stacks: one row per stack, the state `gitopsd status` shows: the
//     revision applied and the one wanted, sync and health, whether an
//     operator pinned it, the last healthy revision (where a rollback goes)
//     and the failed revision (not retried until the branch moves).
//   - deployments: every attempt to bring a stack to a revision, with what
//     triggered it, from and to which revision, when, and how it ended
//     (running, succeeded, failed, rolled_back). Deployments are kept when a
//     stack is deleted: history outlives the stack.
//   - deployment_steps: the actions of a deployment in order (create, start,
//     stop, remove, ...), deleted with their deployment.
//   - stopped_services and restores: what a backup job stopped, and a
//     restore under way, written before the job acts so that the next
//     start can undo what a crash left (package backup, Runner.Recover).
//
// Times are stored as UTC text with a fixed nine-digit fraction
// (2006-01-02T15:04:05.000000000Z): exact to the nanosecond, sortable as text,
// and readable in the sqlite3 shell. NULL stands for Go's zero time (a
// deployment still running has no finished_at). Times come back as UTC.
//
// # Schema changes
//
// Migrations are SQL files under migrations/, compiled into the binary and
// numbered 0001, 0002, ...; PRAGMA user_version records how many were applied.
// Open applies the pending ones in one transaction, so a database is either at
// the old version or at the new one. A database with a higher version than the
// binary knows (a downgrade of gitopsd) is refused with ErrSchemaTooNew rather
// than read with a schema it does not understand. Migrations are only ever
// added, never edited once released.
//
// # Durability
//
// The database runs in WAL mode with synchronous=NORMAL. A transaction is
// committed once its frames are in the -wal file; fsync happens at
// checkpoints, not at every commit. The consequence, chosen deliberately:
//
//   - A crash of the process (kill -9, OOM kill, panic) loses nothing that
//     was committed: the WAL is in the operating system's page cache and the
//     next Open recovers it. A transaction that was open but not committed
//     is discarded as a whole. TestCrashKeepsCommitted kills a child process
//     with SIGKILL mid-transaction to prove both.
//   - A power loss or kernel crash may lose the most recent commits (those
//     not yet synced by a checkpoint), but never corrupts the database: it
//     comes back as it was at an earlier commit.
//
// That is the trade gitopsd wants: the record is written at every step of
// every deployment, so a sync per commit would cost far more than it buys,
// and after a power loss the daemon converges from what Docker reports
// anyway; the record only lags by the last moments before the loss.
//
// Checkpoints copy the WAL into the main file and truncate it: every
// CheckpointEvery (5 minutes) while the store is open, after every finished
// deployment, at every pin (the daemon calls Checkpoint), and after the rows
// that say what a crash must undo (stopped_services, restores). SQLite's
// own automatic checkpoint waits for 4 MB of WAL, which a quiet host takes
// weeks to write; meanwhile the whole record would sit in gitopsd.db-wal,
// and a lost -wal file would lose all of it. With the checkpoints it loses
// minutes, and the fsync a checkpoint does also bounds what a power loss
// takes.
//
// Open runs PRAGMA quick_check: a damaged page is found at start, and the
// start refusal names the file and the ways out (restore a `gitopsd state
// backup`, or reset and `gitopsd state adopt`). Backup writes a consistent
// copy with VACUUM INTO.
//
// # Concurrency
//
// A Store is safe for concurrent use. It holds two database/sql pools over
// the file: a writer with a single connection whose transactions begin
// IMMEDIATE, so writers of this process queue in Go instead of racing for the
// SQLite write lock, and a small pool of query_only readers, which WAL lets
// read a consistent snapshot while the writer writes. Other processes (the
// sqlite3 shell, a backup tool) are waited for up to busy_timeout (5 s).
// Every connection gets its pragmas (journal_mode, synchronous, foreign_keys,
// busy_timeout) from the DSN, so a connection the pool reopens is configured
// like the first.
package store
