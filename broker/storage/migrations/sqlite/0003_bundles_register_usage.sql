-- Bundles kept by digest (GetBundle), and new directory entries per holder and period (was user_version 9).

CREATE TABLE IF NOT EXISTS bundles (digest TEXT PRIMARY KEY, archive BLOB NOT NULL);

CREATE TABLE IF NOT EXISTS register_usage (
        holder TEXT NOT NULL, period TEXT NOT NULL, entries INTEGER NOT NULL, PRIMARY KEY (holder, period));
