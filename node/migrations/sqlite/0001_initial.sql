-- The node's schema as commit 395f065 left it (its PRAGMA user_version 5).

CREATE TABLE IF NOT EXISTS node_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);

CREATE TABLE IF NOT EXISTS data_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT, version INTEGER NOT NULL, wrapped BLOB, destroyed_ms INTEGER);

CREATE TABLE IF NOT EXISTS subjects (
        id INTEGER PRIMARY KEY AUTOINCREMENT, data_key_id INTEGER NOT NULL REFERENCES data_keys(id),
        national_number BLOB NOT NULL, given_names BLOB NOT NULL, family_name BLOB NOT NULL,
        birth_date BLOB NOT NULL, address BLOB NOT NULL, pseudonym BLOB NOT NULL);

CREATE INDEX IF NOT EXISTS subjects_by_pseudonym ON subjects (pseudonym);

CREATE TABLE IF NOT EXISTS subject_index (
        mac BLOB NOT NULL, subject_id INTEGER NOT NULL REFERENCES subjects(id), kind TEXT NOT NULL,
        PRIMARY KEY (mac, subject_id));

CREATE TABLE IF NOT EXISTS cases (
        id INTEGER PRIMARY KEY AUTOINCREMENT, subject_id INTEGER NOT NULL REFERENCES subjects(id),
        phase INTEGER NOT NULL, concerns TEXT NOT NULL, risk_level INTEGER NOT NULL,
        agencies TEXT NOT NULL, contact_id TEXT NOT NULL, opened_year INTEGER NOT NULL,
        opened_month INTEGER NOT NULL, lawful_basis TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open',
        closed_ms INTEGER,
        retain_until_ms INTEGER, erased_ms INTEGER);

CREATE TABLE IF NOT EXISTS case_notes (
        id INTEGER PRIMARY KEY AUTOINCREMENT, case_id INTEGER NOT NULL REFERENCES cases(id), at_ms INTEGER NOT NULL,
        uid INTEGER NOT NULL, body BLOB NOT NULL);

CREATE TABLE IF NOT EXISTS agreements (
        id INTEGER PRIMARY KEY AUTOINCREMENT, case_id INTEGER NOT NULL REFERENCES cases(id),
        recipient_kinds TEXT NOT NULL, purposes TEXT NOT NULL, valid_until_ms INTEGER NOT NULL,
        evidence_ref TEXT NOT NULL, recorded_ms INTEGER NOT NULL, uid INTEGER NOT NULL, withdrawn_ms INTEGER);

CREATE TABLE IF NOT EXISTS phase_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT, case_id INTEGER NOT NULL REFERENCES cases(id), at_ms INTEGER NOT NULL,
        uid INTEGER NOT NULL, from_phase INTEGER NOT NULL, to_phase INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS retention_extensions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, case_id INTEGER NOT NULL, at_ms INTEGER NOT NULL,
        uid INTEGER NOT NULL, days INTEGER NOT NULL, reason INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS erasures (
        case_id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, reason INTEGER NOT NULL, uid INTEGER NOT NULL,
        notified TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS erased_pseudonyms (
        sender TEXT NOT NULL, tag BLOB NOT NULL, erased_at_ms INTEGER NOT NULL,
        PRIMARY KEY (sender, tag));

CREATE TABLE IF NOT EXISTS received_erasures (
        id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL, at_ms INTEGER NOT NULL, items INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS users (
        uid INTEGER NOT NULL, role INTEGER NOT NULL, agency INTEGER NOT NULL, added_ms INTEGER NOT NULL,
        PRIMARY KEY (uid, role));

CREATE TABLE IF NOT EXISTS case_assignments (
        case_id INTEGER NOT NULL REFERENCES cases(id), uid INTEGER NOT NULL, PRIMARY KEY (case_id, uid));

CREATE TABLE IF NOT EXISTS access_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, uid INTEGER NOT NULL,
        case_id INTEGER NOT NULL, fields TEXT NOT NULL, purpose INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, idem_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
        recipient TEXT NOT NULL, rule_id TEXT NOT NULL, intent TEXT NOT NULL, envelope BLOB,
        status TEXT NOT NULL, attempts INTEGER NOT NULL, response BLOB, detail TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL, outcome TEXT NOT NULL DEFAULT '');

CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status, id);

CREATE TABLE IF NOT EXISTS inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL, idem_key TEXT NOT NULL,
        kind TEXT NOT NULL, envelope BLOB NOT NULL, pseudonym BLOB NOT NULL, received_ms INTEGER NOT NULL,
        status TEXT NOT NULL, subject_id INTEGER, case_id INTEGER, decided_ms INTEGER,
        UNIQUE (sender, idem_key));

CREATE TABLE IF NOT EXISTS tombstones (
        sender TEXT NOT NULL, idem_key TEXT NOT NULL, erased_ms INTEGER NOT NULL, PRIMARY KEY (sender, idem_key));

CREATE TABLE IF NOT EXISTS directory_entries (
        pseudonym BLOB NOT NULL, case_id INTEGER NOT NULL, registered_ms INTEGER NOT NULL,
        PRIMARY KEY (pseudonym, case_id));

CREATE TABLE IF NOT EXISTS liaison_hits (
        id INTEGER PRIMARY KEY AUTOINCREMENT, hit INTEGER NOT NULL, pseudonym BLOB NOT NULL,
        contact TEXT NOT NULL, file_ref TEXT NOT NULL, at_ms INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS monitoring_reports (
        period INTEGER NOT NULL, kind TEXT NOT NULL, members TEXT NOT NULL, report BLOB NOT NULL,
        at_ms INTEGER NOT NULL, PRIMARY KEY (period, kind));

CREATE TABLE IF NOT EXISTS delivery_refusals (
        id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL, reason TEXT NOT NULL,
        detail TEXT NOT NULL, at_ms INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS subject_pseudonyms (
        subject_id INTEGER NOT NULL REFERENCES subjects(id), kind TEXT NOT NULL, pseudonym BLOB NOT NULL,
        PRIMARY KEY (subject_id, pseudonym));

CREATE INDEX IF NOT EXISTS subject_pseudonyms_by_value ON subject_pseudonyms (pseudonym);

CREATE TABLE IF NOT EXISTS pseudonym_keys (
        domain INTEGER NOT NULL, epoch INTEGER NOT NULL, combined BLOB NOT NULL, PRIMARY KEY (domain, epoch));

CREATE TABLE IF NOT EXISTS tree_head (
        id INTEGER PRIMARY KEY CHECK (id = 1), head BLOB NOT NULL);

CREATE TABLE IF NOT EXISTS local_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, uid INTEGER NOT NULL,
        request TEXT NOT NULL, outcome TEXT NOT NULL);
