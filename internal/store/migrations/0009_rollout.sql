-- 0009: fleet rollouts (internal/fleet, docs/fleet.md).
--
-- rollout_healthy: since when a stack has run its revision Synced and
-- Healthy on this host. It is exported as
-- gitopsd_rollout_healthy_since_timestamp_seconds, which later waves of a
-- rollout read through Prometheus to measure the soak: a restart of the
-- daemon must not restart the soak of every host, so it is kept here. A
-- row is replaced when the stack runs another revision healthy, and
-- deleted while it does not.
CREATE TABLE rollout_healthy (
    stack    TEXT PRIMARY KEY,
    revision TEXT NOT NULL,
    since    TEXT NOT NULL
) STRICT;
