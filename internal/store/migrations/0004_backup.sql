-- 0004: volume snapshots and their restore tests. A snapshot row is written
-- (status running) before its files, and marked ok only once the snapshot's
-- commit marker is on disk: a crash in between leaves a running row, which
-- the next start closes as failed and whose files it removes, so a
-- half-written snapshot is never listed as good.
CREATE TABLE snapshots (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stack       TEXT NOT NULL,
    volume      TEXT NOT NULL,              -- the compose key of the volume
    "trigger"   TEXT NOT NULL DEFAULT '',   -- schedule | manual | before_deploy
    revision    TEXT NOT NULL DEFAULT '',   -- the stack's revision when taken
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL,              -- running | ok | failed | deleted
    error       TEXT NOT NULL DEFAULT '',
    dir         TEXT NOT NULL DEFAULT '',
    size_bytes  INTEGER NOT NULL DEFAULT 0, -- of the stored archive
    files       INTEGER NOT NULL DEFAULT 0,
    data_bytes  INTEGER NOT NULL DEFAULT 0, -- of the files in the volume
    encrypted   INTEGER NOT NULL DEFAULT 0 CHECK (encrypted IN (0, 1))
) STRICT;

CREATE INDEX snapshots_stack_volume ON snapshots (stack, volume, id);

CREATE TABLE restore_tests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    snapshot_id INTEGER NOT NULL REFERENCES snapshots (id),
    stack       TEXT NOT NULL,
    volume      TEXT NOT NULL,
    level       INTEGER NOT NULL,
    "trigger"   TEXT NOT NULL DEFAULT '',
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    ok          INTEGER NOT NULL DEFAULT 0 CHECK (ok IN (0, 1)),
    error       TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX restore_tests_snapshot ON restore_tests (snapshot_id, id);
CREATE INDEX restore_tests_stack_volume ON restore_tests (stack, volume, id);
