-- 0006: image pulls. The last successful pull of each image reference, so
-- the periodic pull policies (daily, weekly, every_<duration>) pull again
-- only once it is older than their period, across restarts. One row per
-- reference, as the compose file names it; never a credential.
CREATE TABLE pulls (
    ref       TEXT PRIMARY KEY,
    image_id  TEXT NOT NULL,
    pulled_at TEXT NOT NULL
) STRICT;
