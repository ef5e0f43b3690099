-- The broker's schema as commit 395f065 left it (its PRAGMA user_version 7): queue, idempotency, decisions, acks, policy loads, evaluation reports, the audit log, the reference directory.

CREATE TABLE IF NOT EXISTS idempotency (
        sender TEXT NOT NULL, key TEXT NOT NULL, body_digest BLOB NOT NULL,
        response BLOB NOT NULL, at_ms INTEGER NOT NULL, leaf_index INTEGER NOT NULL, PRIMARY KEY (sender, key));

CREATE TABLE IF NOT EXISTS queue (
        recipient TEXT NOT NULL, seq INTEGER NOT NULL, item TEXT NOT NULL, sender TEXT NOT NULL,
        idem_key TEXT NOT NULL, rule_id TEXT NOT NULL, payload BLOB NOT NULL, enqueued_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL, leaf_index INTEGER NOT NULL, PRIMARY KEY (recipient, seq)) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS queue_by_deadline ON queue (expires_ms) WHERE item = 'envelope';

CREATE TABLE IF NOT EXISTS recipients (
        recipient TEXT PRIMARY KEY, next_seq INTEGER NOT NULL, depth INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS queue_shares (
        recipient TEXT NOT NULL, sender TEXT NOT NULL, depth INTEGER NOT NULL, PRIMARY KEY (recipient, sender));

CREATE TABLE IF NOT EXISTS decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, sender TEXT NOT NULL,
        kind TEXT NOT NULL, rule_id TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL,
        field TEXT NOT NULL, recipients TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS acks (
        seq INTEGER NOT NULL, recipient TEXT NOT NULL, outcome TEXT NOT NULL,
        reason TEXT NOT NULL, at_ms INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS policy_loads (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, name TEXT NOT NULL,
        version INTEGER NOT NULL, digest TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS evaluation_reports (
        operator TEXT NOT NULL, share INTEGER NOT NULL, period_start_ms INTEGER NOT NULL,
        period_end_ms INTEGER NOT NULL, org_id TEXT NOT NULL, org_kind TEXT NOT NULL, domain INTEGER NOT NULL,
        requests INTEGER NOT NULL, evaluations INTEGER NOT NULL, received_ms INTEGER NOT NULL,
        PRIMARY KEY (operator, period_start_ms, org_id, domain));

CREATE TABLE IF NOT EXISTS tree_nodes (
        level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS audit_events (
        idx INTEGER PRIMARY KEY, salt BLOB NOT NULL, meta BLOB, orgs TEXT NOT NULL, at_ms INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS tree_heads (
        size INTEGER PRIMARY KEY, root BLOB NOT NULL, timestamp_ms INTEGER NOT NULL, bundle_digest BLOB NOT NULL,
        signature BLOB NOT NULL);

CREATE TABLE IF NOT EXISTS directory (
        pseudonym BLOB NOT NULL, holder TEXT NOT NULL, contact_id TEXT NOT NULL, registered_ms INTEGER NOT NULL,
        covers TEXT NOT NULL, PRIMARY KEY (pseudonym, holder)) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS directory_by_holder ON directory (holder, pseudonym);

CREATE TABLE IF NOT EXISTS coverage (
        holder TEXT NOT NULL, pseudonym BLOB NOT NULL, position INTEGER NOT NULL, statement BLOB NOT NULL,
        signature BLOB NOT NULL, PRIMARY KEY (holder, pseudonym, position)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS open_requests (
        requester TEXT NOT NULL, holder TEXT NOT NULL, pseudonym BLOB NOT NULL, at_ms INTEGER NOT NULL,
        PRIMARY KEY (requester, holder, pseudonym)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS query_usage (
        org TEXT NOT NULL, period TEXT NOT NULL, rows INTEGER NOT NULL, PRIMARY KEY (org, period));

CREATE TABLE IF NOT EXISTS cosignatures (
        size INTEGER NOT NULL, witness TEXT NOT NULL, cosignature BLOB NOT NULL, PRIMARY KEY (size, witness));
