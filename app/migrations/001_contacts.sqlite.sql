-- Baseline: the contacts table as every release before migrations created it. IF NOT EXISTS:
-- a database deployed before (which already holds it, with its rows) is taken as it is.
CREATE TABLE IF NOT EXISTS contacts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    email        TEXT NOT NULL UNIQUE,
    company      TEXT,
    created_at   TEXT NOT NULL,
    processed_at TEXT
);
