-- How long a deployment step took (a recreate includes its health gate), so
-- `history` can say where a roll spent its time, and which replica it was.
ALTER TABLE deployment_steps ADD COLUMN duration_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployment_steps ADD COLUMN replica INTEGER NOT NULL DEFAULT 0;
