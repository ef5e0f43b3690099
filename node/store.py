"""The node's own store: subjects, cases, outbox, inbox, local request log.

Identifiers are stored in clear in this first version (field encryption comes
with the case-file issue); they never leave this file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from olievlek.store import Database, Txn

SCHEMA_VERSION = 2  # 1: subjects, cases, outbox, inbox, delivery_refusals, local_requests;
#                    2: subject_pseudonyms, pseudonym_keys

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS subjects (
        id INTEGER PRIMARY KEY AUTOINCREMENT, national_number TEXT NOT NULL,
        given_names TEXT NOT NULL, family_name TEXT NOT NULL, pseudonym BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS subjects_by_pseudonym ON subjects (pseudonym)",
    """CREATE TABLE IF NOT EXISTS cases (
        id INTEGER PRIMARY KEY AUTOINCREMENT, subject_id INTEGER NOT NULL REFERENCES subjects(id),
        phase INTEGER NOT NULL, concerns TEXT NOT NULL, risk_level INTEGER NOT NULL,
        agencies TEXT NOT NULL, contact_id TEXT NOT NULL, opened_year INTEGER NOT NULL,
        opened_month INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, idem_key TEXT NOT NULL UNIQUE, recipient TEXT NOT NULL,
        rule_id TEXT NOT NULL, envelope BLOB NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
        response BLOB, created_ms INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL, idem_key TEXT NOT NULL,
        kind TEXT NOT NULL, envelope BLOB NOT NULL, pseudonym BLOB NOT NULL, received_ms INTEGER NOT NULL,
        status TEXT NOT NULL, subject_id INTEGER, UNIQUE (sender, idem_key))""",
    """CREATE TABLE IF NOT EXISTS delivery_refusals (
        id INTEGER PRIMARY KEY AUTOINCREMENT, seq INTEGER NOT NULL, reason TEXT NOT NULL,
        detail TEXT NOT NULL, at_ms INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS subject_pseudonyms (
        subject_id INTEGER NOT NULL REFERENCES subjects(id), kind TEXT NOT NULL, pseudonym BLOB NOT NULL,
        PRIMARY KEY (subject_id, pseudonym))""",
    "CREATE INDEX IF NOT EXISTS subject_pseudonyms_by_value ON subject_pseudonyms (pseudonym)",
    """CREATE TABLE IF NOT EXISTS pseudonym_keys (
        domain INTEGER NOT NULL, epoch INTEGER NOT NULL, combined BLOB NOT NULL, PRIMARY KEY (domain, epoch))""",
    """CREATE TABLE IF NOT EXISTS tree_head (
        id INTEGER PRIMARY KEY CHECK (id = 1), head BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS local_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, uid INTEGER NOT NULL,
        request TEXT NOT NULL, outcome TEXT NOT NULL)""",
]


@dataclass(frozen=True, slots=True)
class CaseRow:
    id: int
    subject_id: int
    pseudonym: bytes
    phase: int
    concerns: list[int]
    risk_level: int
    agencies: list[int]
    contact_id: str
    opened_year: int
    opened_month: int


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    idem_key: str
    recipient: str
    rule_id: str
    envelope: bytes
    status: str
    response: bytes | None


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    sender: str
    kind: str
    envelope: bytes
    received_ms: int
    status: str
    subject_id: int | None


class NodeStore:
    """Typed access to the node's SQLite file."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> NodeStore:
        return cls(await Database.open(path, SCHEMA))

    # -- subjects and cases -------------------------------------------
    @staticmethod
    async def insert_subject_txn(tx: Txn, national_number: str, given: str, family: str,
                                 pseudonyms: list[tuple[str, bytes]]) -> int:
        """A subject and every pseudonym of its identifiers; the first is the one summaries carry."""
        subject_id = await tx.execute(
            "INSERT INTO subjects (national_number, given_names, family_name, pseudonym) VALUES (?, ?, ?, ?)",
            (national_number, given, family, pseudonyms[0][1]),
        )
        for kind, p in pseudonyms:
            await tx.execute("INSERT OR IGNORE INTO subject_pseudonyms (subject_id, kind, pseudonym) VALUES (?, ?, ?)",
                             (subject_id, kind, p))
        return subject_id

    async def pinned_key(self, domain: int, epoch: int) -> bytes | None:
        row = await self.db.fetchone("SELECT combined FROM pseudonym_keys WHERE domain = ? AND epoch = ?",
                                     (domain, epoch))
        return bytes(row[0]) if row else None

    async def pin_key(self, domain: int, epoch: int, combined: bytes) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("INSERT OR IGNORE INTO pseudonym_keys (domain, epoch, combined) VALUES (?, ?, ?)",
                             (domain, epoch, combined))

    @staticmethod
    async def insert_case_txn(tx: Txn, subject_id: int, phase: int, concerns: list[int], risk: int,
                              agencies: list[int], contact_id: str, year: int, month: int) -> int:
        return await tx.execute(
            "INSERT INTO cases (subject_id, phase, concerns, risk_level, agencies, contact_id, opened_year,"
            " opened_month) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (subject_id, phase, json.dumps(concerns), risk, json.dumps(agencies), contact_id, year, month),
        )

    async def case(self, case_id: int) -> CaseRow | None:
        row = await self.db.fetchone(
            "SELECT c.id, c.subject_id, s.pseudonym, c.phase, c.concerns, c.risk_level, c.agencies, c.contact_id,"
            " c.opened_year, c.opened_month FROM cases c JOIN subjects s ON s.id = c.subject_id WHERE c.id = ?",
            (case_id,),
        )
        if row is None:
            return None
        return CaseRow(int(row[0]), int(row[1]), bytes(row[2]), int(row[3]), json.loads(row[4]), int(row[5]),
                       json.loads(row[6]), row[7], int(row[8]), int(row[9]))

    # -- outbox ---------------------------------------------------------
    async def add_outbox(self, idem_key: str, recipient: str, rule_id: str, envelope: bytes, now_ms: int) -> int:
        async with self.db.transaction() as tx:
            return await tx.execute(
                "INSERT INTO outbox (idem_key, recipient, rule_id, envelope, status, attempts, created_ms)"
                " VALUES (?, ?, ?, ?, 'pending', 0, ?)",
                (idem_key, recipient, rule_id, envelope, now_ms),
            )

    async def pending_outbox(self) -> list[OutboxRow]:
        rows = await self.db.fetchall(
            "SELECT id, idem_key, recipient, rule_id, envelope, status, response FROM outbox"
            " WHERE status = 'pending' ORDER BY id"
        )
        return [OutboxRow(int(r[0]), r[1], r[2], r[3], bytes(r[4]), r[5], r[6]) for r in rows]

    async def outbox(self, outbox_id: int) -> OutboxRow | None:
        r = await self.db.fetchone(
            "SELECT id, idem_key, recipient, rule_id, envelope, status, response FROM outbox WHERE id = ?",
            (outbox_id,),
        )
        return OutboxRow(int(r[0]), r[1], r[2], r[3], bytes(r[4]), r[5], r[6]) if r else None

    async def finish_outbox(self, outbox_id: int, status: str, response: bytes) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE outbox SET status = ?, response = ?, attempts = attempts + 1 WHERE id = ?",
                (status, response, outbox_id),
            )

    async def replace_outbox_envelope(self, outbox_id: int, sealed: bytes) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE outbox SET envelope = ?, attempts = attempts + 1 WHERE id = ? AND status = 'pending'",
                (sealed, outbox_id),
            )

    async def count_attempt(self, outbox_id: int) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (outbox_id,))

    # -- inbox ----------------------------------------------------------
    async def store_delivery(self, sender: str, idem_key: str, kind: str, envelope: bytes, pseudonym: bytes,
                             now_ms: int) -> bool:
        """Store one delivery; False when (sender, key) is already there (a redelivery)."""
        async with self.db.transaction() as tx:
            existing = await tx.fetchone(
                "SELECT 1 FROM inbox WHERE sender = ? AND idem_key = ?", (sender, idem_key)
            )
            if existing is not None:
                return False
            await tx.execute(
                "INSERT INTO inbox (sender, idem_key, kind, envelope, pseudonym, received_ms, status)"
                " VALUES (?, ?, ?, ?, ?, ?, 'pending_identification')",
                (sender, idem_key, kind, envelope, pseudonym, now_ms),
            )
        return True

    async def refuse_delivery(self, seq: int, reason: str, detail: str, now_ms: int) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO delivery_refusals (seq, reason, detail, at_ms) VALUES (?, ?, ?, ?)",
                (seq, reason, detail, now_ms),
            )

    async def inbox(self) -> list[InboxRow]:
        rows = await self.db.fetchall(
            "SELECT id, sender, kind, envelope, received_ms, status, subject_id FROM inbox ORDER BY id"
        )
        return [InboxRow(int(r[0]), r[1], r[2], bytes(r[3]), int(r[4]), r[5], r[6]) for r in rows]

    async def match_inbox_txn(self, tx: Txn, pseudonym: bytes, subject_id: int) -> list[int]:
        rows = await tx.fetchall(
            "SELECT id FROM inbox WHERE pseudonym = ? AND status = 'pending_identification'", (pseudonym,)
        )
        ids = [int(r[0]) for r in rows]
        for item in ids:
            await tx.execute(
                "UPDATE inbox SET status = 'identified', subject_id = ? WHERE id = ?", (subject_id, item)
            )
        return ids

    # -- the last audit-log head this node accepted ---------------------
    async def last_head(self) -> bytes | None:
        row = await self.db.fetchone("SELECT head FROM tree_head WHERE id = 1")
        return bytes(row[0]) if row else None

    async def keep_head(self, head: bytes) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("INSERT OR REPLACE INTO tree_head (id, head) VALUES (1, ?)", (head,))

    # -- local request log ---------------------------------------------
    async def log_request(self, uid: int, request: str, outcome: str, now_ms: int) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO local_requests (at_ms, uid, request, outcome) VALUES (?, ?, ?, ?)",
                (now_ms, uid, request, outcome),
            )

    async def close(self) -> None:
        await self.db.close()
