-- What the node keeps to hold its broker to the log: proven leaves, aggregated refusals, delivery sequence (was user_version 6).

CREATE TABLE IF NOT EXISTS proven_leaves (
        leaf_index INTEGER PRIMARY KEY, outbox_id INTEGER NOT NULL, env BLOB NOT NULL);

CREATE INDEX IF NOT EXISTS proven_leaves_by_row ON proven_leaves (outbox_id);

CREATE TABLE IF NOT EXISTS refusal_intervals (
        interval_start_ms INTEGER PRIMARY KEY, state TEXT NOT NULL, leaf_index INTEGER,
        alarmed INTEGER NOT NULL DEFAULT 0);

CREATE TABLE IF NOT EXISTS aggregated_refusals (
        interval_start_ms INTEGER NOT NULL, position INTEGER NOT NULL, env BLOB NOT NULL, outbox_id INTEGER,
        PRIMARY KEY (interval_start_ms, position));

CREATE TABLE IF NOT EXISTS delivery_seqs (origin TEXT PRIMARY KEY, top INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS delivery_held (origin TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (origin, seq));

CREATE TABLE IF NOT EXISTS delivery_gaps (
        origin TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, seen_ms INTEGER NOT NULL,
        settled INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (origin, first_seq));

CREATE TABLE IF NOT EXISTS expired_seqs (
        origin TEXT NOT NULL, seq INTEGER NOT NULL, leaf_index INTEGER NOT NULL, PRIMARY KEY (origin, seq));
