"""The node's own store: subjects, cases, outbox, inbox, access and request logs.

Identifying fields are stored only sealed under their case's data key
(``olievlek.fieldcrypt``; ``node/casefile.py`` seals and opens them); a copied
database file reveals no identity. Lookups by identifier use a blind index.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olievlek.groupcommit import Writer
from olievlek.i18n import N_
from olievlek.kinds import MessageKind
from olievlek.statuses import CaseStatus, InboxStatus, OutboxStatus
from olievlek.storage.migrations import load
from olievlek.storage.sqlite import Database, Txn
from olievlek.v1 import local_pb2, summary_pb2

from .access import GrantMode, GrantRefusal, GrantRefused, RoleRequestState
from .evidence import Item, keep_aggregated_txn, keep_finality_txn, keep_proven_txn
from .request_error import RequestError

# The schema is node/migrations/sqlite/*.sql (olievlek.storage.migrations); a file from before them carries its
# version in PRAGMA user_version: 5 (commit 395f065) is migration 1, 6 is 2, 7 is 3.
MIGRATIONS = load("olievlek.node", "node", legacy_user_version={5: 1, 6: 2, 7: 3})


@dataclass(frozen=True, slots=True)
class RoleRequestRow:
    """A request to give a local user a role (``role_requests``)."""

    id: int
    uid: int
    role: int
    agency: int
    requested_by: int
    requested_ms: int
    expires_ms: int
    confirmers: frozenset[int]  # the administrators who may confirm it: those there were when it was made
    state: RoleRequestState
    confirmed_by: int | None
    decided_ms: int | None


@dataclass(frozen=True, slots=True)
class GrantSeal:
    """What the node signed about one grant, and its signature."""

    statement: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class RoleGrantRow:
    """One entry of the grant log (``role_grants``)."""

    id: int
    request_id: int
    at_ms: int
    uid: int
    role: int
    agency: int
    requested_by: int
    confirmed_by: int | None
    mode: GrantMode
    seal: GrantSeal


_ROLE_REQUEST_SELECT = ("SELECT id, uid, role, agency, requested_by, requested_ms, expires_ms, confirmers, state,"
                        " confirmed_by, decided_ms FROM role_requests")


def _role_request_row(r: tuple[Any, ...]) -> RoleRequestRow:
    return RoleRequestRow(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]),
                          frozenset(int(u) for u in json.loads(r[7])), RoleRequestState(r[8]),
                          int(r[9]) if r[9] is not None else None, int(r[10]) if r[10] is not None else None)


@dataclass(frozen=True, slots=True)
class CaseRow:
    id: int
    subject_id: int
    pseudonym: bytes
    phase: summary_pb2.Phase.ValueType
    concerns: list[summary_pb2.ConcernCategory.ValueType]
    risk_level: summary_pb2.RiskLevel.ValueType
    agencies: list[summary_pb2.AgencyRole.ValueType]
    contact_id: str
    opened_year: int
    opened_month: int


# Which inbox items an erasure takes: one item, those a case was opened from, or what one sender sent
# about one pseudonym (not yet taken over into a case).
_INBOX_SCOPES = {"item": "id = ?", "case": "case_id = ?",
                 "about": "sender = ? AND pseudonym = ? AND case_id IS NULL",
                 "request": "kind = 'disclosure.request' AND pseudonym = ?"}
_KEEP_TOMBSTONES = ("INSERT OR IGNORE INTO tombstones (sender, idem_key, erased_ms)"
                    " SELECT sender, idem_key, ? FROM inbox WHERE ")
# What a regisseur does with an inbox item first: identify the person (alerts, handovers) or decide.
_INITIAL_STATUS = {MessageKind.DISCLOSURE_REQUEST: InboxStatus.PENDING_DECISION,
                   MessageKind.DISCLOSURE_RESPONSE: InboxStatus.RECEIVED}
SUBJECT_FIELDS = ("national_number", "given_names", "family_name", "birth_date", "address")
_CASE_SELECT = ("SELECT c.id, c.subject_id, s.pseudonym, c.phase, c.concerns, c.risk_level, c.agencies, c.contact_id,"
                " c.opened_year, c.opened_month FROM cases c JOIN subjects s ON s.id = c.subject_id")


def _case_row(row: tuple[Any, ...]) -> CaseRow:
    # The stored numbers are the wire enums' values; they were checked against the enum when written.
    return CaseRow(int(row[0]), int(row[1]), bytes(row[2]), summary_pb2.Phase.ValueType(int(row[3])),
                   [summary_pb2.ConcernCategory.ValueType(int(c)) for c in json.loads(row[4])],
                   summary_pb2.RiskLevel.ValueType(int(row[5])),
                   [summary_pb2.AgencyRole.ValueType(int(a)) for a in json.loads(row[6])],
                   row[7], int(row[8]), int(row[9]))


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    idem_key: str
    kind: MessageKind
    recipient: str
    rule_id: str
    intent: dict[str, Any]
    envelope: bytes | None
    status: OutboxStatus
    attempts: int
    response: bytes | None
    detail: str
    created_ms: int
    outcome: str


_OUTBOX_SELECT = ("SELECT id, idem_key, kind, recipient, rule_id, intent, envelope, status, attempts, response,"
                  " detail, created_ms, outcome FROM outbox")
_OUTBOX_BY_STATUS = _OUTBOX_SELECT + " WHERE status = ? AND id > ? ORDER BY id LIMIT ?"
_OUTBOX_ALL = _OUTBOX_SELECT + " ORDER BY id"
_OUTBOX_ONE = _OUTBOX_SELECT + " WHERE id = ?"


def _outbox_row(r: tuple[Any, ...]) -> OutboxRow:
    return OutboxRow(int(r[0]), r[1], MessageKind(r[2]), r[3], r[4], json.loads(r[5]),
                     bytes(r[6]) if r[6] is not None else None, OutboxStatus(r[7]), int(r[8]),
                     bytes(r[9]) if r[9] is not None else None, r[10], int(r[11]), r[12])


def _inbox_row(r: tuple[Any, ...]) -> InboxRow:
    return InboxRow(int(r[0]), r[1], MessageKind(r[2]), bytes(r[3]), int(r[4]), InboxStatus(r[5]), r[6])


@dataclass(frozen=True, slots=True)
class Answer:
    """The broker's answer to an outbox row, as recorded: its status, the answer's bytes, a detail, and what
    backs it - the proven leaf, or the (interval, place) of an aggregated refusal still to be proven."""

    outbox_id: int
    status: OutboxStatus
    response: bytes
    detail: str
    env: bytes
    leaf: int | None = None
    aggregated: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A verified delivery addressed to us, ready to store."""

    sender: str
    idem_key: str
    kind: MessageKind
    envelope: bytes
    pseudonym: bytes
    created_ms: int = 0
    pseudonym_tag: bytes = b""  # the keyed tag erasures are remembered by
    leaf: int | None = None  # the decision leaf that queued it (its outcome is final once the witnesses cover it)


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    sender: str
    kind: MessageKind
    envelope: bytes
    received_ms: int
    status: InboxStatus
    subject_id: int | None


class NodeStore:
    """Typed access to the node's SQLite file."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Concurrent writes (intents, inbox batches, outbox answers) share one commit and fsync.
        self.writer = Writer(db)

    @classmethod
    async def open(cls, path: Path) -> NodeStore:
        store = cls(await Database.open(path, MIGRATIONS, secure_delete=True))
        # A crash between an erasure's commit and its checkpoint left erased pages in the WAL: fold it now.
        await store.db.checkpoint_truncate()
        store.writer.start()
        return store

    # -- subjects and cases -------------------------------------------
    @staticmethod
    async def insert_data_key_txn(tx: Txn, version: int) -> int:
        return await tx.execute("INSERT INTO data_keys (version) VALUES (?)", (version,))

    @staticmethod
    async def set_wrapped_key_txn(tx: Txn, key_id: int, wrapped: bytes) -> None:
        await tx.execute("UPDATE data_keys SET wrapped = ? WHERE id = ?", (wrapped, key_id))

    async def wrapped_key(self, key_id: int) -> tuple[int, bytes | None]:
        row = await self.db.fetchone("SELECT version, wrapped FROM data_keys WHERE id = ?", (key_id,))
        if row is None:
            raise KeyError(key_id)
        return int(row[0]), bytes(row[1]) if row[1] is not None else None

    @staticmethod
    async def insert_subject_txn(tx: Txn, data_key_id: int, pseudonyms: list[tuple[str, bytes]]) -> int:
        """A subject row (sealed fields follow, as they need its id) and every pseudonym of its
        identifiers; the first is the one summaries carry."""
        subject_id = await tx.execute(
            "INSERT INTO subjects (data_key_id, national_number, given_names, family_name, birth_date, address,"
            " pseudonym) VALUES (?, x'', x'', x'', x'', x'', ?)",
            (data_key_id, pseudonyms[0][1]),
        )
        for kind, p in pseudonyms:
            await tx.execute("INSERT OR IGNORE INTO subject_pseudonyms (subject_id, kind, pseudonym) VALUES (?, ?, ?)",
                             (subject_id, kind, p))
        return subject_id

    @staticmethod
    async def seal_subject_txn(tx: Txn, subject_id: int, sealed: dict[str, bytes],
                               index: list[tuple[str, bytes]]) -> None:
        for column, blob in sealed.items():
            assert column in SUBJECT_FIELDS
            await tx.execute(f"UPDATE subjects SET {column} = ? WHERE id = ?", (blob, subject_id))  # noqa: S608
        for kind, mac in index:
            await tx.execute("INSERT OR IGNORE INTO subject_index (mac, subject_id, kind) VALUES (?, ?, ?)",
                             (mac, subject_id, kind))

    async def sealed_subject(self, subject_id: int) -> tuple[int, dict[str, bytes]]:
        """(data key id, sealed fields) of a subject."""
        row = await self.db.fetchone(
            "SELECT data_key_id, national_number, given_names, family_name, birth_date, address FROM subjects"
            " WHERE id = ?", (subject_id,))
        if row is None:
            raise KeyError(subject_id)
        return int(row[0]), dict(zip(SUBJECT_FIELDS, (bytes(v) for v in row[1:]), strict=True))

    async def subjects_by_index(self, mac: bytes) -> list[int]:
        rows = await self.db.fetchall("SELECT subject_id FROM subject_index WHERE mac = ?", (mac,))
        return [int(r[0]) for r in rows]

    async def meta(self, name: str) -> bytes | None:
        row = await self.db.fetchone("SELECT value FROM node_meta WHERE name = ?", (name,))
        return bytes(row[0]) if row else None

    async def set_meta(self, name: str, value: bytes) -> None:
        async def op(tx: Txn) -> None:
            await tx.execute("INSERT INTO node_meta (name, value) VALUES (?, ?)", (name, value))
        await self.writer.write(op)

    async def put_meta(self, name: str, value: bytes) -> None:
        """Set ``name`` whether or not it was set before."""
        async def op(tx: Txn) -> None:
            await tx.execute("INSERT INTO node_meta (name, value) VALUES (?, ?) "
                             "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))
        await self.writer.write(op)

    async def log_access(self, uid: int, case_id: int, fields: list[str], purpose: int, now_ms: int) -> None:
        async def op(tx: Txn) -> None:
            await tx.execute("INSERT INTO access_log (at_ms, uid, case_id, fields, purpose) VALUES (?, ?, ?, ?, ?)",
                             (now_ms, uid, case_id, ",".join(fields), purpose))
        await self.writer.write(op)

    async def access_log(self, case_id: int) -> list[tuple[int, int, int, list[str], int]]:
        rows = await self.db.fetchall(
            "SELECT at_ms, uid, case_id, fields, purpose FROM access_log WHERE ? = 0 OR case_id = ? ORDER BY id",
            (case_id, case_id))
        return [(int(r[0]), int(r[1]), int(r[2]), [f for f in r[3].split(",") if f], int(r[4])) for r in rows]

    async def cases(self, assigned_to: int | None = None) -> list[CaseRow]:
        """Every case, or only those assigned to a uid."""
        if assigned_to is None:
            rows = await self.db.fetchall(_CASE_SELECT + " ORDER BY c.id")
        else:
            rows = await self.db.fetchall(
                _CASE_SELECT + " JOIN case_assignments a ON a.case_id = c.id WHERE a.uid = ? ORDER BY c.id",
                (assigned_to,))
        return [_case_row(r) for r in rows]

    # -- users and need-to-know ----------------------------------------
    async def roles_of(self, uid: int) -> list[tuple[int, int]]:
        """(role, agency) of a local user."""
        rows = await self.db.fetchall("SELECT role, agency FROM users WHERE uid = ?", (uid,))
        return [(int(r[0]), int(r[1])) for r in rows]

    async def users(self) -> list[tuple[int, int, int]]:
        rows = await self.db.fetchall("SELECT uid, role, agency FROM users ORDER BY uid, role")
        return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def set_user(self, uid: int, role: int, agency: int, present: bool, now_ms: int) -> None:
        async def op(tx: Txn) -> None:
            if present:
                await tx.execute("INSERT OR REPLACE INTO users (uid, role, agency, added_ms) VALUES (?, ?, ?, ?)",
                                 (uid, role, agency, now_ms))
            else:
                await tx.execute("DELETE FROM users WHERE uid = ? AND role = ?", (uid, role))
                if role == local_pb2.USER_ROLE_TABLE_MEMBER:  # no longer at the table, no longer assigned
                    await tx.execute("DELETE FROM case_assignments WHERE uid = ?", (uid,))
        await self.writer.write(op)

    async def administrators(self) -> frozenset[int]:
        """The uids registered as administrators (the configuration's are added by the caller)."""
        rows = await self.db.fetchall("SELECT uid FROM users WHERE role = ?", (local_pb2.USER_ROLE_ADMINISTRATOR,))
        return frozenset(int(r[0]) for r in rows)

    @staticmethod
    async def _grant_txn(tx: Txn, request_id: int, uid: int, role: int, agency: int, requested_by: int,
                         confirmed_by: int | None, mode: GrantMode, seal: GrantSeal, now_ms: int) -> None:
        """The role itself and its entry in the grant log, in the caller's transaction."""
        await tx.execute("INSERT OR REPLACE INTO users (uid, role, agency, added_ms) VALUES (?, ?, ?, ?)",
                         (uid, role, agency, now_ms))
        await tx.execute(
            "INSERT INTO role_grants (request_id, at_ms, uid, role, agency, requested_by, confirmed_by, mode,"
            " statement, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request_id, now_ms, uid, role, agency, requested_by, confirmed_by, mode, seal.statement, seal.signature))

    async def request_role(self, uid: int, role: int, agency: int, requested_by: int, confirmers: frozenset[int],
                           now_ms: int, expires_ms: int, at_once: GrantSeal | None = None) -> int:
        """Record a request for a role; with ``at_once`` (single-administrator mode) it is granted in the same
        transaction, countersigned in the grant log. Returns the request's number."""
        async def op(tx: Txn) -> int:
            state = RoleRequestState.GRANTED if at_once is not None else RoleRequestState.PENDING
            request_id = await tx.execute(
                "INSERT INTO role_requests (uid, role, agency, requested_by, requested_ms, expires_ms, confirmers,"
                " state, decided_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (uid, role, agency, requested_by, now_ms, expires_ms, json.dumps(sorted(confirmers)), state,
                 now_ms if at_once is not None else None))
            if at_once is not None:
                await NodeStore._grant_txn(tx, request_id, uid, role, agency, requested_by, None,
                                           GrantMode.SINGLE_ADMINISTRATOR, at_once, now_ms)
            return request_id
        return await self.writer.write(op)

    async def role_request(self, request_id: int) -> RoleRequestRow | None:
        row = await self.db.fetchone(_ROLE_REQUEST_SELECT + " WHERE id = ?", (request_id,))
        return _role_request_row(row) if row is not None else None

    async def role_requests(self, state: RoleRequestState | None = None) -> list[RoleRequestRow]:
        rows = await self.db.fetchall(_ROLE_REQUEST_SELECT + " WHERE ? IS NULL OR state = ? ORDER BY id",
                                      (state, state))
        return [_role_request_row(r) for r in rows]

    async def expire_role_requests(self, now_ms: int) -> None:
        """Pending requests past their time are expired: nothing of them is granted any more."""
        async def op(tx: Txn) -> None:
            await tx.execute("UPDATE role_requests SET state = ?, decided_ms = ? WHERE state = ? AND expires_ms < ?",
                             (RoleRequestState.EXPIRED, now_ms, RoleRequestState.PENDING, now_ms))
        await self.writer.write(op)

    async def confirm_role(self, request_id: int, confirmed_by: int, seal: GrantSeal, now_ms: int) -> None:
        """Grant a pending request that ``confirmed_by`` confirms (the caller checked who may), with its entry
        in the grant log, in one transaction. Checked again inside it: two confirmations grant once.

        Raises:
            GrantRefused: the request was decided or expired meanwhile.
        """
        async def op(tx: Txn) -> None:
            row = await tx.fetchone(_ROLE_REQUEST_SELECT + " WHERE id = ?", (request_id,))
            if row is None:
                raise GrantRefused.later(GrantRefusal.UNKNOWN_ROLE_REQUEST, N_("there is no role request {request}"),
                                         request=request_id)
            req = _role_request_row(row)
            if req.state == RoleRequestState.EXPIRED or req.expires_ms < now_ms:
                raise GrantRefused.later(GrantRefusal.REQUEST_EXPIRED,
                                         N_("role request {request} expired unconfirmed; ask for the role again"),
                                         request=request_id)
            if req.state != RoleRequestState.PENDING:
                raise GrantRefused.later(GrantRefusal.REQUEST_DECIDED, N_("role request {request} was already granted"),
                                         request=request_id)
            await tx.execute("UPDATE role_requests SET state = ?, confirmed_by = ?, decided_ms = ? WHERE id = ?",
                             (RoleRequestState.GRANTED, confirmed_by, now_ms, request_id))
            await NodeStore._grant_txn(tx, request_id, req.uid, req.role, req.agency, req.requested_by,
                                       confirmed_by, GrantMode.CONFIRMED, seal, now_ms)
        await self.writer.write(op)

    async def role_grants(self) -> list[RoleGrantRow]:
        rows = await self.db.fetchall(
            "SELECT id, request_id, at_ms, uid, role, agency, requested_by, confirmed_by, mode, statement, signature"
            " FROM role_grants ORDER BY id")
        return [RoleGrantRow(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]),
                             int(r[7]) if r[7] is not None else None, GrantMode(r[8]),
                             GrantSeal(bytes(r[9]), bytes(r[10]))) for r in rows]

    async def assign(self, case_id: int, uid: int, present: bool) -> list[int]:
        async def op(tx: Txn) -> list[int]:
            if present:
                await tx.execute("INSERT OR IGNORE INTO case_assignments (case_id, uid) VALUES (?, ?)", (case_id, uid))
            else:
                await tx.execute("DELETE FROM case_assignments WHERE case_id = ? AND uid = ?", (case_id, uid))
            rows = await tx.fetchall("SELECT uid FROM case_assignments WHERE case_id = ? ORDER BY uid", (case_id,))
            return [int(r[0]) for r in rows]
        return await self.writer.write(op)

    # -- updates, notes, phase history ----------------------------------
    @staticmethod
    async def update_case_txn(tx: Txn, case_id: int, uid: int, now_ms: int, phase: int, concerns: list[int] | None,
                              risk: int, agencies: list[int] | None) -> None:
        status = await tx.fetchone("SELECT status FROM cases WHERE id = ?", (case_id,))
        if status is None or status[0] != CaseStatus.OPEN:
            raise RequestError.later("not_open", N_("case {case_id} is not open"), case_id=case_id)
        if phase:
            row = await tx.fetchone("SELECT phase FROM cases WHERE id = ?", (case_id,))
            assert row is not None
            if int(row[0]) != phase:
                await tx.execute("UPDATE cases SET phase = ? WHERE id = ?", (phase, case_id))
                await tx.execute("INSERT INTO phase_changes (case_id, at_ms, uid, from_phase, to_phase)"
                                 " VALUES (?, ?, ?, ?, ?)", (case_id, now_ms, uid, int(row[0]), phase))
        if concerns is not None:
            await tx.execute("UPDATE cases SET concerns = ? WHERE id = ?", (json.dumps(concerns), case_id))
        if risk:
            await tx.execute("UPDATE cases SET risk_level = ? WHERE id = ?", (risk, case_id))
        if agencies is not None:
            await tx.execute("UPDATE cases SET agencies = ? WHERE id = ?", (json.dumps(agencies), case_id))

    @staticmethod
    async def insert_note_txn(tx: Txn, case_id: int, uid: int, now_ms: int) -> int:
        return await tx.execute("INSERT INTO case_notes (case_id, at_ms, uid, body) VALUES (?, ?, ?, x'')",
                                (case_id, now_ms, uid))

    @staticmethod
    async def seal_note_txn(tx: Txn, note_id: int, body: bytes) -> None:
        await tx.execute("UPDATE case_notes SET body = ? WHERE id = ?", (body, note_id))

    async def notes(self, case_id: int) -> list[tuple[int, int, int, bytes]]:
        rows = await self.db.fetchall("SELECT id, at_ms, uid, body FROM case_notes WHERE case_id = ? ORDER BY id",
                                      (case_id,))
        return [(int(r[0]), int(r[1]), int(r[2]), bytes(r[3])) for r in rows]

    async def phase_changes(self, case_id: int) -> list[tuple[int, int, int, int]]:
        rows = await self.db.fetchall(
            "SELECT at_ms, uid, from_phase, to_phase FROM phase_changes WHERE case_id = ? ORDER BY id", (case_id,))
        return [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    async def record_agreement(self, case_id: int, kinds: list[str], purposes: list[str], until_ms: int,
                               evidence: str, uid: int, now_ms: int,
                               then: Callable[[Txn, int], Awaitable[None]]) -> int:
        """Record an agreement; ``then`` runs in the same transaction (the directory's new coverage)."""
        async def op(tx: Txn) -> int:
            agreement_id = await tx.execute(
                "INSERT INTO agreements (case_id, recipient_kinds, purposes, valid_until_ms, evidence_ref,"
                " recorded_ms, uid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (case_id, ",".join(kinds), ",".join(purposes), until_ms, evidence, now_ms, uid))
            await then(tx, case_id)
            return agreement_id
        return await self.writer.write(op)

    async def agreement_case(self, agreement_id: int) -> int | None:
        row = await self.db.fetchone("SELECT case_id FROM agreements WHERE id = ?", (agreement_id,))
        return int(row[0]) if row else None

    async def sent_about_case(self, case_id: int) -> list[tuple[str, str, str, str, int]]:
        """(kind, recipient, rule, status, created ms) of the alerts and handovers sent about a case."""
        rows = await self.db.fetchall(
            "SELECT kind, recipient, rule_id, status, created_ms FROM outbox WHERE kind IN ('alert.move', 'handover')"
            " AND json_extract(intent, '$.case_id') = ? ORDER BY id", (case_id,))
        return [(r[0], r[1], r[2], r[3], int(r[4])) for r in rows]

    async def received_for_case(self, case_id: int) -> list[tuple[str, str, int]]:
        """(sender, kind, received ms) of the inbox items a case was opened from."""
        rows = await self.db.fetchall("SELECT sender, kind, received_ms FROM inbox WHERE case_id = ? ORDER BY id",
                                      (case_id,))
        return [(r[0], r[1], int(r[2])) for r in rows]

    @staticmethod
    async def withdraw_agreement_txn(tx: Txn, agreement_id: int, now_ms: int) -> set[str] | None:
        """Withdraw an agreement in force; the recipient kinds it covered, or None if none was in force."""
        row = await tx.fetchone("SELECT recipient_kinds FROM agreements WHERE id = ? AND withdrawn_ms IS NULL",
                                (agreement_id,))
        if row is None:
            return None
        await tx.execute("UPDATE agreements SET withdrawn_ms = ? WHERE id = ?", (now_ms, agreement_id))
        return set(str(row[0]).split(","))

    async def agreements(self, case_id: int) -> list[tuple[Any, ...]]:
        return await self.db.fetchall(
            "SELECT id, case_id, recipient_kinds, purposes, valid_until_ms, evidence_ref, recorded_ms, withdrawn_ms"
            " FROM agreements WHERE case_id = ? ORDER BY id", (case_id,))

    async def data_key_of_case(self, case_id: int) -> int:
        row = await self.db.fetchone("SELECT s.data_key_id FROM cases c JOIN subjects s ON s.id = c.subject_id"
                                     " WHERE c.id = ?", (case_id,))
        assert row is not None
        return int(row[0])

    # -- closure, retention, erasure -----------------------------------
    @staticmethod
    async def close_case_txn(tx: Txn, case_id: int, now_ms: int, retain_until_ms: int) -> bool:
        row = await tx.fetchone("SELECT status FROM cases WHERE id = ?", (case_id,))
        if row is None or row[0] != "open":
            return False
        await tx.execute("UPDATE cases SET status = 'closed', closed_ms = ?, retain_until_ms = ? WHERE id = ?",
                         (now_ms, retain_until_ms, case_id))
        return True

    async def case_status(self, case_id: int) -> tuple[CaseStatus, str] | None:
        """(status, lawful basis) of a case."""
        row = await self.db.fetchone("SELECT status, lawful_basis FROM cases WHERE id = ?", (case_id,))
        return (CaseStatus(row[0]), row[1]) if row else None

    async def extend_retention(self, case_id: int, days: int, reason: int, uid: int, now_ms: int) -> int:
        async def op(tx: Txn) -> int:
            await tx.execute("UPDATE cases SET retain_until_ms = retain_until_ms + ? WHERE id = ?",
                             (days * 86_400_000, case_id))
            await tx.execute("INSERT INTO retention_extensions (case_id, at_ms, uid, days, reason)"
                             " VALUES (?, ?, ?, ?, ?)", (case_id, now_ms, uid, days, reason))
            row = await tx.fetchone("SELECT retain_until_ms FROM cases WHERE id = ?", (case_id,))
            return int(row[0]) if row else 0
        return await self.writer.write(op)

    async def retention_due(self, until_ms: int) -> list[tuple[int, str, int, int]]:
        """Closed cases whose retention ends by ``until_ms``: (case, status, closed, retain until)."""
        rows = await self.db.fetchall(
            "SELECT id, status, closed_ms, retain_until_ms FROM cases WHERE status = 'closed'"
            " AND retain_until_ms <= ? ORDER BY retain_until_ms", (until_ms,))
        return [(int(r[0]), r[1], int(r[2]), int(r[3])) for r in rows]

    @staticmethod
    async def erase_case_txn(tx: Txn, case_id: int, now_ms: int, due_only: bool) -> tuple[bytes, list[str]] | None:
        """Crypto-shred a case's subject and strip what it sent; returns (pseudonym, recipients told before),
        or None when the case is no longer to be erased (checked here, inside the transaction: erased
        meanwhile, or - for a retention run - extended or reopened meanwhile).

        The wrapped data key is destroyed (the sealed fields can never open again) and the sealed
        fields, blind index, pseudonyms, notes, agreements and the inbox items the case was opened from
        deleted (tombstones stay); alerts about the case keep their metadata, not their bytes; the case
        row stays as a tombstone with status 'erased', its summary fields emptied.
        """
        row = await tx.fetchone(
            "SELECT s.id, s.pseudonym, c.status, c.retain_until_ms FROM cases c JOIN subjects s ON s.id = c.subject_id"
            " WHERE c.id = ?", (case_id,))
        if row is None or row[2] == "erased" or (due_only and (row[2] != "closed" or int(row[3]) > now_ms)):
            return None
        subject_id, pseudonym = int(row[0]), bytes(row[1])
        others = await tx.fetchone("SELECT COUNT(*) FROM cases WHERE subject_id = ? AND id != ? AND status != 'erased'",
                                   (subject_id, case_id))
        if others and int(others[0]):
            raise RequestError.later("shared_subject", N_("case {case_id}'s person has other cases at this node; "
                                                          "erase those first"), case_id=case_id)
        sent = await tx.fetchall(
            "SELECT DISTINCT recipient FROM outbox WHERE kind IN ('alert.move', 'handover')"
            " AND json_extract(intent, '$.case_id') = ?"
            " AND status IN ('pending', 'accepted', 'expired') ORDER BY recipient", (case_id,))
        await NodeStore.shred_subject_txn(tx, subject_id, now_ms, keep_row=True)
        await tx.execute("DELETE FROM case_notes WHERE case_id = ?", (case_id,))
        await tx.execute("DELETE FROM agreements WHERE case_id = ?", (case_id,))
        await NodeStore.tombstone_inbox_txn(tx, "case", (case_id,), now_ms)
        await tx.execute("UPDATE outbox SET envelope = NULL, status = CASE WHEN status IN ('queued', 'pending')"
                         " THEN 'cancelled' ELSE status END WHERE kind IN ('alert.move', 'handover')"
                         " AND json_extract(intent, '$.case_id') = ?", (case_id,))
        await tx.execute("UPDATE cases SET status = 'erased', erased_ms = ?, concerns = '[]', agencies = '[]',"
                         " risk_level = 0 WHERE id = ?", (now_ms, case_id))
        return pseudonym, [r[0] for r in sent]

    @staticmethod
    async def tombstone_inbox_txn(tx: Txn, scope: str, params: tuple[object, ...], now_ms: int) -> int:
        """Delete the inbox items in ``scope`` (a key of ``_INBOX_SCOPES``), keeping (sender, key) as
        tombstones so no redelivery brings them back; returns how many were deleted."""
        where = _INBOX_SCOPES[scope]
        await tx.execute(_KEEP_TOMBSTONES + where, (now_ms, *params))
        await tx.execute(f"DELETE FROM inbox WHERE {where}", params)  # noqa: S608
        row = await tx.fetchone("SELECT changes()")
        return int(row[0]) if row else 0

    @staticmethod
    async def shred_subject_txn(tx: Txn, subject_id: int, now_ms: int, keep_row: bool) -> None:
        """Destroy a subject's data key and delete its sealed fields, index and pseudonyms."""
        await tx.execute("UPDATE data_keys SET wrapped = NULL, destroyed_ms = ? WHERE id ="
                         " (SELECT data_key_id FROM subjects WHERE id = ?)", (now_ms, subject_id))
        await tx.execute("DELETE FROM subject_index WHERE subject_id = ?", (subject_id,))
        await tx.execute("DELETE FROM subject_pseudonyms WHERE subject_id = ?", (subject_id,))
        if keep_row:  # a case still points at it
            await tx.execute("UPDATE subjects SET national_number = x'', given_names = x'', family_name = x'',"
                             " birth_date = x'', address = x'', pseudonym = x'' WHERE id = ?", (subject_id,))
        else:
            await tx.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))

    @staticmethod
    async def release_subjects_txn(tx: Txn, subject_ids: set[int], now_ms: int) -> None:
        """Shred subjects entered only to match inbox items, once no item and no case refers to them."""
        for subject_id in subject_ids:
            used = await tx.fetchone(
                "SELECT (SELECT COUNT(*) FROM inbox WHERE subject_id = ?) + (SELECT COUNT(*) FROM cases"
                " WHERE subject_id = ?)", (subject_id, subject_id))
            if used is not None and int(used[0]) == 0:
                await NodeStore.shred_subject_txn(tx, subject_id, now_ms, keep_row=False)

    @staticmethod
    async def case_pseudonyms_txn(tx: Txn, case_id: int) -> list[bytes]:
        rows = await tx.fetchall("SELECT p.pseudonym FROM subject_pseudonyms p JOIN cases c ON c.subject_id ="
                                 " p.subject_id WHERE c.id = ? ORDER BY p.pseudonym", (case_id,))
        return [bytes(r[0]) for r in rows]

    async def subject_pseudonyms(self, subject_id: int) -> list[tuple[str, bytes]]:
        """(kind, pseudonym) of a subject, the one its summaries carry first."""
        rows = await self.db.fetchall(
            "SELECT p.kind, p.pseudonym FROM subject_pseudonyms p JOIN subjects s ON s.id = p.subject_id"
            " WHERE p.subject_id = ? ORDER BY p.pseudonym != s.pseudonym", (subject_id,))
        return [(r[0], bytes(r[1])) for r in rows]

    @staticmethod
    async def record_erasure_txn(tx: Txn, case_id: int, now_ms: int, reason: int, uid: int,
                                 notified: list[str]) -> None:
        await tx.execute("INSERT INTO erasures (case_id, at_ms, reason, uid, notified) VALUES (?, ?, ?, ?, ?)",
                         (case_id, now_ms, reason, uid, ",".join(notified)))

    async def apply_erasure(self, sender: str, idem_key: str, pseudonym: bytes, tag: bytes, erased_at_ms: int,
                            now_ms: int) -> tuple[bool, int]:
        """At a recipient: erase what ``sender`` sent about ``pseudonym`` (tombstones stay).

        Returns (fresh, items erased); a redelivered notice is not fresh and erases nothing more.
        """
        async def op(tx: Txn) -> tuple[bool, int]:
            seen = await tx.fetchone("SELECT 1 FROM tombstones WHERE sender = ? AND idem_key = ?", (sender, idem_key))
            if seen is not None:
                return False, 0
            subjects = await tx.fetchall("SELECT DISTINCT subject_id FROM inbox WHERE sender = ? AND pseudonym = ?"
                                         " AND subject_id IS NOT NULL AND case_id IS NULL", (sender, pseudonym))
            erased = await NodeStore.tombstone_inbox_txn(tx, "about", (sender, pseudonym), now_ms)
            # At a querying organisation: the hits on it, and the pseudonym in the requests it asked.
            await tx.execute("DELETE FROM liaison_hits WHERE hit IN (SELECT hit FROM liaison_hits WHERE pseudonym = ?)",
                             (pseudonym,))
            await tx.execute("UPDATE outbox SET envelope = NULL, intent = json_remove(intent, '$.pseudonym'),"
                             " status = CASE WHEN status IN ('queued', 'pending') THEN 'cancelled' ELSE status END"
                             " WHERE kind = 'disclosure.request' AND json_extract(intent, '$.pseudonym') = ?",
                             (pseudonym.hex(),))
            await tx.execute("INSERT INTO tombstones (sender, idem_key, erased_ms) VALUES (?, ?, ?)",
                             (sender, idem_key, now_ms))
            await NodeStore.release_subjects_txn(tx, {int(r[0]) for r in subjects}, now_ms)
            await tx.execute("INSERT OR REPLACE INTO erased_pseudonyms (sender, tag, erased_at_ms)"
                             " VALUES (?, ?, ?)", (sender, tag, erased_at_ms))
            await tx.execute("INSERT INTO received_erasures (sender, at_ms, items) VALUES (?, ?, ?)",
                             (sender, now_ms, erased))
            return True, erased
        return await self.writer.write(op)

    # -- item outcomes (accept / return) --------------------------------
    async def inbox_item(self, item_id: int) -> InboxRow | None:
        r = await self.db.fetchone(
            "SELECT id, sender, kind, envelope, received_ms, status, subject_id FROM inbox WHERE id = ?", (item_id,))
        return _inbox_row(r) if r else None

    @staticmethod
    async def decide_item_txn(tx: Txn, item_id: int, status: InboxStatus, case_id: int | None,
                              now_ms: int) -> str | None:
        """Accept (keep, link the case) or return (erase, keep the tombstone) an inbox item; its key,
        or None when it was decided (or erased) meanwhile."""
        row = await tx.fetchone("SELECT idem_key, subject_id FROM inbox WHERE id = ? AND status IN"
                                " ('pending_identification', 'identified')", (item_id,))
        if row is None:
            return None
        if status == InboxStatus.RETURNED:  # not ours: nothing of it stays but the tombstone
            await NodeStore.tombstone_inbox_txn(tx, "item", (item_id,), now_ms)
        else:  # the case gets its own subject; the item keeps only the link to the case
            await tx.execute("UPDATE inbox SET status = ?, case_id = ?, subject_id = NULL, decided_ms = ?"
                             " WHERE id = ?", (status, case_id, now_ms, item_id))
        if row[1] is not None:
            await NodeStore.release_subjects_txn(tx, {int(row[1])}, now_ms)
        return str(row[0])

    async def apply_item_status(self, sender: str, idem_key: str, item_key: str, outcome: str,
                                detail: str, now_ms: int) -> bool:
        """At the original sender: record what ``sender`` (our recipient) did with our item ``item_key``."""
        async def op(tx: Txn) -> bool:
            seen = await tx.fetchone("SELECT 1 FROM tombstones WHERE sender = ? AND idem_key = ?", (sender, idem_key))
            if seen is not None:
                return False
            await tx.execute("UPDATE outbox SET outcome = ?, detail = ? WHERE idem_key = ? AND recipient = ?",
                             (outcome, detail, item_key, sender))
            await tx.execute("INSERT INTO tombstones (sender, idem_key, erased_ms) VALUES (?, ?, ?)",
                             (sender, idem_key, now_ms))
            return True
        return await self.writer.write(op)

    async def is_assigned(self, case_id: int, uid: int) -> bool:
        row = await self.db.fetchone("SELECT 1 FROM case_assignments WHERE case_id = ? AND uid = ?", (case_id, uid))
        return row is not None

    async def pinned_key(self, domain: int, epoch: int) -> bytes | None:
        row = await self.db.fetchone("SELECT combined FROM pseudonym_keys WHERE domain = ? AND epoch = ?",
                                     (domain, epoch))
        return bytes(row[0]) if row else None

    async def received_of_kind(self, sender: str, kind: MessageKind) -> list[tuple[str, bytes]]:
        """(idempotency key, envelope) of every item of ``kind`` this node keeps from ``sender``."""
        rows = await self.db.fetchall("SELECT idem_key, envelope FROM inbox WHERE sender = ? AND kind = ? ORDER BY id",
                                      (sender, kind))
        return [(str(r[0]), bytes(r[1])) for r in rows]

    async def pinned_keys(self) -> list[tuple[int, int, bytes]]:
        rows = await self.db.fetchall("SELECT domain, epoch, combined FROM pseudonym_keys ORDER BY domain, epoch")
        return [(int(r[0]), int(r[1]), bytes(r[2])) for r in rows]

    async def pin_key(self, domain: int, epoch: int, combined: bytes) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("INSERT OR IGNORE INTO pseudonym_keys (domain, epoch, combined) VALUES (?, ?, ?)",
                             (domain, epoch, combined))

    @staticmethod
    async def insert_case_txn(tx: Txn, subject_id: int, phase: int, concerns: list[int], risk: int,
                              agencies: list[int], contact_id: str, year: int, month: int, basis: str) -> int:
        return await tx.execute(
            "INSERT INTO cases (subject_id, phase, concerns, risk_level, agencies, contact_id, opened_year,"
            " opened_month, lawful_basis) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (subject_id, phase, json.dumps(concerns), risk, json.dumps(agencies), contact_id, year, month, basis),
        )

    async def case(self, case_id: int) -> CaseRow | None:
        row = await self.db.fetchone(_CASE_SELECT + " WHERE c.id = ?", (case_id,))
        return _case_row(row) if row is not None else None

    # -- outbox ---------------------------------------------------------
    @staticmethod
    async def case_is_open_txn(tx: Txn, case_id: int) -> bool:
        row = await tx.fetchone("SELECT status FROM cases WHERE id = ?", (case_id,))
        return row is not None and row[0] != "erased"

    @staticmethod
    async def add_intent_txn(tx: Txn, idem_key: str, kind: str, recipient: str, rule_id: str,
                             intent: dict[str, Any], now_ms: int) -> int:
        """The intent to send, in the caller's transaction (the business change that causes it)."""
        return await tx.execute(
            "INSERT INTO outbox (idem_key, kind, recipient, rule_id, intent, status, attempts, created_ms)"
            " VALUES (?, ?, ?, ?, ?, 'queued', 0, ?)",
            (idem_key, kind, recipient, rule_id, json.dumps(intent, sort_keys=True), now_ms),
        )

    async def outbox_rows(self, status: str, limit: int = 1000, after_id: int = 0) -> list[OutboxRow]:
        rows = await self.db.fetchall(_OUTBOX_BY_STATUS, (status, after_id, limit))
        return [_outbox_row(r) for r in rows]

    async def all_outbox(self) -> list[OutboxRow]:
        return [_outbox_row(r) for r in await self.db.fetchall(_OUTBOX_ALL)]

    async def outbox(self, outbox_id: int) -> OutboxRow | None:
        r = await self.db.fetchone(_OUTBOX_ONE, (outbox_id,))
        return _outbox_row(r) if r else None

    async def outbox_stats(self) -> tuple[int, int]:
        """(entries without a broker answer, created-at of the oldest of them or 0)."""
        row = await self.db.fetchone(
            "SELECT COUNT(*), MIN(created_ms) FROM outbox WHERE status IN ('queued', 'pending')")
        return (int(row[0]), int(row[1] or 0)) if row else (0, 0)

    async def seal_outbox(self, sealed: list[tuple[int, bytes]], failed: list[tuple[int, str]]) -> None:
        """Store built and signed envelopes (queued -> pending); mark intents that cannot be built."""
        async def op(tx: Txn) -> None:
            await tx.executemany(
                "UPDATE outbox SET envelope = ?, status = 'pending' WHERE id = ? AND status = 'queued'",
                [(env, i) for i, env in sealed])
            await tx.executemany(
                "UPDATE outbox SET status = 'failed', detail = ?, intent = CASE WHEN kind IN"
                " ('erasure.notice', 'directory.register', 'directory.withdraw') THEN '{}' ELSE intent END"
                " WHERE id = ? AND status = 'queued'",
                [(d, i) for i, d in failed])
        await self.writer.write(op)

    async def finish_outbox(self, answers: list[Answer], now_ms: int, final_at_once: bool) -> None:
        """Record the broker's answers with the evidence that backs them (provisional until the witnesses
        cover it, unless ``final_at_once``)."""
        async def op(tx: Txn) -> None:
            await tx.executemany(
                "UPDATE outbox SET status = ?, response = ?, detail = ?, attempts = attempts + 1"
                " WHERE id = ? AND status = 'pending'", [(a.status, a.response, a.detail, a.outbox_id)
                                                          for a in answers])
            for a in answers:
                await keep_finality_txn(tx, Item.OUTBOX, a.outbox_id, a.leaf, now_ms, final_at_once)
                if a.leaf is not None:
                    await keep_proven_txn(tx, a.leaf, a.outbox_id, a.env)
                if a.aggregated is not None:
                    await keep_aggregated_txn(tx, *a.aggregated, a.env, a.outbox_id)
            # An answered erasure notice, directory change or denial needs its pseudonym no more: keep
            # only what was sent to whom. (An approved disclosure keeps it: a withdrawal may erase it.)
            await tx.executemany("UPDATE outbox SET envelope = NULL, intent = '{}' WHERE id = ?"
                                 " AND (kind IN ('erasure.notice', 'directory.register', 'directory.withdraw')"
                                 " OR (kind = 'disclosure.response'"
                                 " AND json_extract(intent, '$.decision') != 'approved'))"
                                 " AND status IN ('accepted', 'refused')",
                                 [(a.outbox_id,) for a in answers])
        await self.writer.write(op)

    async def replace_outbox_envelope(self, outbox_id: int, sealed: bytes) -> None:
        async def op(tx: Txn) -> None:
            await tx.execute(
                "UPDATE outbox SET envelope = ?, attempts = attempts + 1 WHERE id = ? AND status = 'pending'",
                (sealed, outbox_id))
        await self.writer.write(op)

    async def count_attempts(self, outbox_ids: list[int], detail: str) -> None:
        async def op(tx: Txn) -> None:
            await tx.executemany("UPDATE outbox SET attempts = attempts + 1, detail = ? WHERE id = ?",
                                 [(detail, i) for i in outbox_ids])
        await self.writer.write(op)

    async def mark_undelivered(self, idem_key: str, recipient: str, detail: str, status: str, leaf: int,
                               now_ms: int, final_at_once: bool) -> bool:
        """The broker reports our envelope to ``recipient`` expired or refused by it (status 'expired' or
        'rejected', resting on ``leaf``); False if we sent no such thing."""
        async def op(tx: Txn) -> bool:
            row = await tx.fetchone("SELECT id FROM outbox WHERE idem_key = ? AND recipient = ?", (idem_key, recipient))
            if row is None:
                return False
            await tx.execute("UPDATE outbox SET status = ?, detail = ? WHERE id = ?", (status, detail, row[0]))
            await keep_finality_txn(tx, Item.OUTBOX, int(row[0]), leaf, now_ms, final_at_once)
            return True
        return await self.writer.write(op)

    # -- inbox ----------------------------------------------------------
    async def store_deliveries(self, items: list[NewDelivery], now_ms: int,
                               then: Callable[[Txn], Awaitable[None]] | None = None,
                               final_at_once: bool = True) -> list[bool]:
        """Store a batch in one transaction; per item False when (sender, key) is already there
        or was erased (a redelivery: acknowledged, never applied twice, never resurrected). ``then`` runs in
        the same transaction (the delivery sequence's state)."""
        def step(c: sqlite3.Connection) -> list[bool]:  # one hop to SQLite's thread for the whole batch
            fresh: list[bool] = []
            for d in items:
                seen = c.execute(
                    "SELECT 1 FROM inbox WHERE sender = ? AND idem_key = ?"
                    " UNION ALL SELECT 1 FROM tombstones WHERE sender = ? AND idem_key = ?"
                    " UNION ALL SELECT 1 FROM erased_pseudonyms WHERE sender = ? AND tag = ?"
                    " AND erased_at_ms >= ?",
                    (d.sender, d.idem_key, d.sender, d.idem_key, d.sender, d.pseudonym_tag, d.created_ms)).fetchone()
                if seen is None:
                    inbox_id = c.execute(
                        "INSERT INTO inbox (sender, idem_key, kind, envelope, pseudonym, received_ms, status)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (d.sender, d.idem_key, d.kind, d.envelope, d.pseudonym, now_ms,
                         _INITIAL_STATUS.get(d.kind, InboxStatus.PENDING_IDENTIFICATION))).lastrowid
                    assert inbox_id is not None
                    stored.append((int(inbox_id), d.leaf))
                fresh.append(seen is None)
            return fresh

        stored: list[tuple[int, int | None]] = []

        async def op(tx: Txn) -> list[bool]:
            stored.clear()  # a retried batch runs the step again
            fresh = await tx.run(step)
            for inbox_id, leaf in stored:
                await keep_finality_txn(tx, Item.INBOX, inbox_id, leaf, now_ms, final_at_once)
            if then is not None:
                await then(tx)
            return fresh
        return await self.writer.write(op)

    async def erase_inbox_item(self, item_id: int, now_ms: int) -> bool:
        """Erase one inbox item, keeping only its tombstone (sender, key, when)."""
        async def op(tx: Txn) -> bool:
            return await NodeStore.tombstone_inbox_txn(tx, "item", (item_id,), now_ms) > 0
        return await self.writer.write(op)

    async def refusal_reason(self, seq: int) -> str | None:
        """Why this node refused the delivery with this number, if it did."""
        row = await self.db.fetchone("SELECT reason FROM delivery_refusals WHERE seq = ? ORDER BY id DESC LIMIT 1",
                                     (seq,))
        return str(row[0]) if row else None

    async def asked_for_disclosure(self, holder: str, pseudonym: bytes) -> bool:
        """This node sent (or is sending) a disclosure request to ``holder`` about ``pseudonym``."""
        row = await self.db.fetchone(
            "SELECT 1 FROM outbox WHERE kind = ? AND recipient = ? AND status IN ('pending', 'accepted')"
            " AND json_extract(intent, '$.pseudonym') = ? LIMIT 1",
            (MessageKind.DISCLOSURE_REQUEST, holder, pseudonym.hex()))
        return row is not None

    async def refuse_delivery(self, seq: int, reason: str, detail: str, now_ms: int) -> None:
        async def op(tx: Txn) -> None:
            await tx.execute("INSERT INTO delivery_refusals (seq, reason, detail, at_ms) VALUES (?, ?, ?, ?)",
                             (seq, reason, detail, now_ms))
        await self.writer.write(op)

    async def inbox(self) -> list[InboxRow]:
        rows = await self.db.fetchall(
            "SELECT id, sender, kind, envelope, received_ms, status, subject_id FROM inbox ORDER BY id"
        )
        return [_inbox_row(r) for r in rows]

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
    @staticmethod
    def read_last_head(path: Path) -> bytes | None:
        """``last_head`` of the store at ``path``, read-only and without opening the store (the CLI asks while
        the node runs; a missing file or one without the table holds no head)."""
        if not path.exists():
            return None
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT head FROM tree_head WHERE id = 1").fetchone()
        except sqlite3.OperationalError:
            return None
        finally:
            conn.close()
        return bytes(row[0]) if row else None

    async def last_head(self) -> bytes | None:
        row = await self.db.fetchone("SELECT head FROM tree_head WHERE id = 1")
        return bytes(row[0]) if row else None

    def keep_head_soon(self, head: bytes) -> None:
        """Keep the last accepted head with the next write: what the node records on the strength of a head
        (a receipt, a delivery) commits together with it, or neither does."""
        async def op(tx: Txn) -> None:
            await tx.execute("INSERT OR REPLACE INTO tree_head (id, head) VALUES (1, ?)", (head,))
        self.writer.write_soon(op)

    # -- local request log ---------------------------------------------
    async def log_request(self, uid: int, request: str, outcome: str, now_ms: int) -> None:
        async def op(tx: Txn) -> None:
            await tx.execute("INSERT INTO local_requests (at_ms, uid, request, outcome) VALUES (?, ?, ?, ?)",
                             (now_ms, uid, request, outcome))
        await self.writer.write(op)

    async def close(self) -> None:
        await self.writer.stop()  # flush what was submitted
        await self.db.close()
