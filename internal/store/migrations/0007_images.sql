-- 0007: images gitopsd brought to the host (built, or pulled), the only
-- images it may ever remove. last_used_at is the last time an image was
-- found in use by a container or by a kept revision (a stack's applied or
-- last healthy one); images.prune_after counts from there.
CREATE TABLE images (
    image_id     TEXT PRIMARY KEY,
    ref          TEXT NOT NULL,
    origin       TEXT NOT NULL,
    added_at     TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    removed_at   TEXT
) STRICT;
