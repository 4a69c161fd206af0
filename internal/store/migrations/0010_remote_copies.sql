-- 0010: off-host copies of snapshots.
--
-- snapshots.name is the snapshot's name on a remote: a UTC time stamp and a
-- random suffix (20261206T061500Z-3f9a1c). The integer id is this
-- database's and a host rebuilt with an empty state_dir counts from 1
-- again; the name does not repeat. Older rows get one from their start
-- time and id.
ALTER TABLE snapshots ADD COLUMN name TEXT NOT NULL DEFAULT '';
UPDATE snapshots SET name = COALESCE(strftime('%Y%m%dT%H%M%SZ', started_at), 'snapshot') || '-l' || id WHERE name = '';

-- remote_copies: the copy of one snapshot on the remote. A row is written
-- (state pending) when the snapshot is taken, before anything is sent, and
-- marked uploaded only once the copy was read back whole: a crash or a
-- remote that went away leaves it pending, and the uploader tries again
-- (next_at, with backoff). Local retention keeps a snapshot whose copy is
-- pending. keep is the volume's keep policy as JSON, so that the remote's
-- retention after a restart needs no stack loaded.
CREATE TABLE remote_copies (
    snapshot_id INTEGER PRIMARY KEY REFERENCES snapshots (id),
    stack       TEXT NOT NULL,
    volume      TEXT NOT NULL,
    state       TEXT NOT NULL,              -- pending | uploaded | deleted | abandoned
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     TEXT NOT NULL,              -- when the next attempt may run
    error       TEXT NOT NULL DEFAULT '',   -- the last attempt's
    failed_at   TEXT,                       -- when the last attempt failed
    uploaded_at TEXT,
    keep        TEXT NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX remote_copies_state ON remote_copies (state, next_at);
CREATE INDEX remote_copies_stack_volume ON remote_copies (stack, volume, snapshot_id);

-- remote_tests: restore tests run on a downloaded remote copy, by the
-- copy's place on the remote (its host may be another, or gone).
CREATE TABLE remote_tests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    host        TEXT NOT NULL,
    stack       TEXT NOT NULL,
    volume      TEXT NOT NULL,
    name        TEXT NOT NULL,
    level       INTEGER NOT NULL,
    "trigger"   TEXT NOT NULL DEFAULT '',
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    ok          INTEGER NOT NULL DEFAULT 0 CHECK (ok IN (0, 1)),
    error       TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX remote_tests_copy ON remote_tests (host, stack, volume, name, id);
