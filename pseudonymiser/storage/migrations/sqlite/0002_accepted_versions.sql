-- The highest bundle and root versions accepted (was user_version 2).

CREATE TABLE IF NOT EXISTS accepted_versions (
        id INTEGER PRIMARY KEY CHECK (id = 1), bundle INTEGER NOT NULL, root INTEGER NOT NULL);
