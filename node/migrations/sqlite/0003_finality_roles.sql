-- Finality of outcomes under the witnesses' quorum; role requests and the grant log (was user_version 7).

CREATE TABLE IF NOT EXISTS finality (
        item TEXT NOT NULL, row_id INTEGER NOT NULL, leaf_index INTEGER, since_ms INTEGER NOT NULL,
        state TEXT NOT NULL, PRIMARY KEY (item, row_id));

CREATE INDEX IF NOT EXISTS finality_open ON finality (state, leaf_index);

CREATE TABLE IF NOT EXISTS role_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT, uid INTEGER NOT NULL, role INTEGER NOT NULL, agency INTEGER NOT NULL,
        requested_by INTEGER NOT NULL, requested_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
        confirmers TEXT NOT NULL, state TEXT NOT NULL, confirmed_by INTEGER, decided_ms INTEGER);

CREATE TABLE IF NOT EXISTS role_grants (
        id INTEGER PRIMARY KEY AUTOINCREMENT, request_id INTEGER NOT NULL REFERENCES role_requests(id),
        at_ms INTEGER NOT NULL, uid INTEGER NOT NULL, role INTEGER NOT NULL, agency INTEGER NOT NULL,
        requested_by INTEGER NOT NULL, confirmed_by INTEGER, mode TEXT NOT NULL, statement BLOB NOT NULL,
        signature BLOB NOT NULL);
