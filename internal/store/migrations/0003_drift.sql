-- 0003: drift. One row per drift gitopsd saw: a container stopped, missing,
-- changed or added by hand, an image tag moved, or a stack held behind its
-- branch. A row is open while closed_at is NULL; closed_by says how it ended:
-- healed (gitopsd put it back), resolved (it went away without gitopsd:
-- fixed by hand, or by the container's own restart policy) or superseded
-- (a deployment of another revision, or the stack's removal, replaced it).
CREATE TABLE drifts (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    stack     TEXT NOT NULL,
    service   TEXT NOT NULL DEFAULT '',
    container TEXT NOT NULL DEFAULT '',
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '',
    opened_at TEXT NOT NULL,
    closed_at TEXT,
    closed_by TEXT NOT NULL DEFAULT ''
) STRICT;

-- At most one open row per drift: opening twice is a no-op, even after a crash.
CREATE UNIQUE INDEX drifts_open ON drifts (stack, service, container, kind) WHERE closed_at IS NULL;
CREATE INDEX drifts_stack_id ON drifts (stack, id);
