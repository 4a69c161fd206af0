-- 0008: what a crash in the middle of a backup job must not leave behind.
--
-- stopped_services: a container a snapshot or a restore stopped, written
-- before it is stopped and deleted once it runs again. A row left at start
-- is a container a crash left down; the next start starts it again, whatever
-- the stack's drift policy says (under drift: report nobody else would).
CREATE TABLE stopped_services (
    container_id TEXT PRIMARY KEY,
    stack        TEXT NOT NULL,
    service      TEXT NOT NULL,
    reason       TEXT NOT NULL,             -- snapshot | restore
    stopped_at   TEXT NOT NULL
) STRICT;

-- restores: a restore under way. The volume's old content is copied into a
-- snapshot directory (safety_dir) before the volume is touched; phase says
-- whether the volume may already be half-written (writing), so that the
-- next start puts the old content back, or not yet (copying).
CREATE TABLE restores (
    stack       TEXT NOT NULL,
    volume      TEXT NOT NULL,              -- the compose key of the volume
    volume_name TEXT NOT NULL,              -- the engine's name of the volume
    snapshot_id INTEGER NOT NULL,
    safety_dir  TEXT NOT NULL,
    phase       TEXT NOT NULL,              -- copying | writing
    started_at  TEXT NOT NULL,
    PRIMARY KEY (stack, volume)
) STRICT;
