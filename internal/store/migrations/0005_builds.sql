-- 0005: builds. One row per image gitopsd built from a stack's build:
-- section. digest covers the build context's files (after .dockerignore)
-- and the build configuration, so a digest already built into an image
-- that still exists is never built again; failed builds are rows too,
-- with the builder's last lines in error.
CREATE TABLE builds (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stack       TEXT NOT NULL,
    service     TEXT NOT NULL,
    digest      TEXT NOT NULL,
    revision    TEXT NOT NULL,
    image_id    TEXT NOT NULL DEFAULT '',
    tag         TEXT NOT NULL DEFAULT '',
    ok          INTEGER NOT NULL,
    error       TEXT NOT NULL DEFAULT '',
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL
) STRICT;

CREATE INDEX builds_digest ON builds (stack, service, digest, id);
