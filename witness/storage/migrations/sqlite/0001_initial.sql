-- The witness's schema (it kept no version before migrations; recognised by its tables).

CREATE TABLE IF NOT EXISTS checkpoints (
        origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, note BLOB NOT NULL,
        cosigned_at INTEGER NOT NULL);
