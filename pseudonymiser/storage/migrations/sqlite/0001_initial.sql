-- One operator's schema as commit 395f065 left it (its PRAGMA user_version 1): shares, counts.

CREATE TABLE IF NOT EXISTS shares (
        domain INTEGER NOT NULL, epoch INTEGER NOT NULL, scalar BLOB NOT NULL, public BLOB NOT NULL,
        created_ms INTEGER NOT NULL, active INTEGER NOT NULL, PRIMARY KEY (domain, epoch));

CREATE TABLE IF NOT EXISTS counts (
        org TEXT NOT NULL, domain INTEGER NOT NULL, hour INTEGER NOT NULL, evaluations INTEGER NOT NULL,
        PRIMARY KEY (org, domain, hour));

CREATE TABLE IF NOT EXISTS unreported (
        org TEXT NOT NULL, kind TEXT NOT NULL, domain INTEGER NOT NULL, requests INTEGER NOT NULL,
        evaluations INTEGER NOT NULL, PRIMARY KEY (org, domain));

CREATE TABLE IF NOT EXISTS report_state (
        id INTEGER PRIMARY KEY CHECK (id = 1), reported_until_ms INTEGER NOT NULL);
