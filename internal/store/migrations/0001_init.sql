-- 0001: the initial schema. Times are UTC text in the fixed-width form
-- 2006-01-02T15:04:05.000000000Z (sortable, readable with the sqlite3 shell);
-- NULL where the Go value is the zero time.

CREATE TABLE revisions (
    sha          TEXT PRIMARY KEY,
    message      TEXT NOT NULL DEFAULT '',
    author       TEXT NOT NULL DEFAULT '',
    committed_at TEXT,
    seen_at      TEXT
) STRICT;

-- One row (id = 1): what the daemon last learned from the Git source.
CREATE TABLE source_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    url        TEXT NOT NULL DEFAULT '',
    branch     TEXT NOT NULL DEFAULT '',
    head       TEXT NOT NULL DEFAULT '',
    fetched_at TEXT,
    error      TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE stacks (
    name                  TEXT PRIMARY KEY,
    revision              TEXT NOT NULL DEFAULT '',
    target                TEXT NOT NULL DEFAULT '',
    sync                  TEXT NOT NULL DEFAULT '',
    health                TEXT NOT NULL DEFAULT '',
    pinned                INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
    error                 TEXT NOT NULL DEFAULT '',
    last_healthy_revision TEXT NOT NULL DEFAULT '',
    failed_revision       TEXT NOT NULL DEFAULT '',
    updated_at            TEXT
) STRICT;

-- Deployments outlive their stack row: deleting a stack keeps its history.
CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stack       TEXT NOT NULL,
    "trigger"   TEXT NOT NULL DEFAULT '',
    from_rev    TEXT NOT NULL DEFAULT '',
    to_rev      TEXT NOT NULL DEFAULT '',
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    outcome     TEXT NOT NULL,
    error       TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX deployments_stack_id ON deployments (stack, id);
-- Only crashed or in-flight deployments are "running": a tiny partial index.
CREATE INDEX deployments_running ON deployments (id) WHERE outcome = 'running';

CREATE TABLE deployment_steps (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    at            TEXT NOT NULL,
    action        TEXT NOT NULL DEFAULT '',
    service       TEXT NOT NULL DEFAULT '',
    container     TEXT NOT NULL DEFAULT '',
    detail        TEXT NOT NULL DEFAULT '',
    error         TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX deployment_steps_deployment_id ON deployment_steps (deployment_id, id);
