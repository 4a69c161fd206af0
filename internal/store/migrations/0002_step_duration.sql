-- How long a deployment step took (a recreate includes its health gate), so
-- `history` can say where a roll spent its time.
ALTER TABLE deployment_steps ADD COLUMN duration_ms INTEGER NOT NULL DEFAULT 0;
