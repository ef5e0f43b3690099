-- Who holds what among several broker instances over one database: a recipient's delivery stream
-- ("stream:<recipient>": the newest claim wins, its epoch counts claims) and the checkpoint pusher ("pusher":
-- held until it expires unless renewed). Runtime state: an export leaves it out.
CREATE TABLE leases (
        name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
