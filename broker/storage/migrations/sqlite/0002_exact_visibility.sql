-- Checkpoints on new heads, audit visibility by exact identity (was user_version 8), aggregated refusals.

ALTER TABLE tree_heads ADD COLUMN checkpoint BLOB;

CREATE TABLE IF NOT EXISTS audit_visibility (
        viewer TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (viewer, idx)) WITHOUT ROWID;

-- Visibility as rows: the old comma list of org ids becomes legacy:<id> viewers, which the broker resolves to
-- full identities under the bundle it enforces at start-up (resolve_legacy_viewers).
WITH RECURSIVE split(idx, rest, org) AS (
    SELECT idx, orgs || ',', '' FROM audit_events WHERE orgs != ''
    UNION ALL
    SELECT idx, substr(rest, instr(rest, ',') + 1), substr(rest, 1, instr(rest, ',') - 1)
    FROM split WHERE rest != '')
INSERT OR IGNORE INTO audit_visibility (viewer, idx)
SELECT 'legacy:' || org, idx FROM split WHERE org != '';

CREATE TABLE IF NOT EXISTS refusal_aggregates (
        viewer TEXT NOT NULL, interval_start_ms INTEGER NOT NULL, count INTEGER NOT NULL, codes TEXT NOT NULL,
        first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, chain BLOB NOT NULL,
        PRIMARY KEY (viewer, interval_start_ms));
