"""The broker's store: idempotency records, per-recipient queues, decisions, the directory, on SQLite or
PostgreSQL.

Accepting an envelope is one transaction: the decision row, the idempotency record and one queue row per
recipient commit together or not at all, with the batch's audit leaves; the receipt is answered only after
that commit. Writes are typed operations (``operations.py``) that ``execute`` runs in the group committer's
transaction - each a synchronous step on the writer connection's thread (SQLite's, or the PostgreSQL
connection's), one hop per operation; reads go to the reader connection. The statements are the SQL both
engines read (docs/storage.md).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from olievlek import faults, timing
from olievlek.audit.log import Batch
from olievlek.audit.refusal_chain import CHAIN_START, extend_chain
from olievlek.clock import now_ms as clock_now
from olievlek.envelope import env_of
from olievlek.kinds import BY_KIND
from olievlek.statuses import Decision
from olievlek.storage.migrations import load
from olievlek.storage.sqlite import Database, Txn
from olievlek.v1 import broker_pb2, envelope_pb2

from . import directory
from .directory import OverBudget, OverLimit
from .operations import (
    Accept,
    Accepted,
    Acked,
    Acknowledge,
    AggregateRefusal,
    AppendLeaves,
    BindQueueLeaves,
    ChargeBudget,
    CloseRequestsBefore,
    Conflict,
    DatabaseState,
    DecisionRecord,
    DirectoryChange,
    Due,
    Expire,
    FlushAggregates,
    Leaf,
    LoadPolicy,
    NoteRequest,
    NotQueued,
    Operation,
    Queued,
    QueueFull,
    Record,
    Recorded,
    Register,
    Seed,
    ViewerOf,
    Withdraw,
)

R = TypeVar("R")

# The schema is broker/storage/migrations/sqlite/*.sql (olievlek.storage.migrations); a file from before them
# carries its version in PRAGMA user_version: 7 (commit 395f065) is migration 1, 8 is 2, 9 is 3.
MIGRATIONS = load("olievlek.broker.storage", "broker", legacy_user_version={7: 1, 8: 2, 9: 3})
MIGRATIONS_POSTGRESQL = load("olievlek.broker.storage", "broker", "postgresql")
# Every table of the broker, in the order an export writes them (olievlek/storage/copy.py); identity columns
# continue after the imported ids on PostgreSQL.
TABLES = ["idempotency", "queue", "recipients", "queue_shares", "decisions", "acks", "policy_loads",
          "evaluation_reports", "tree_nodes", "audit_events", "audit_visibility", "tree_heads", "cosignatures",
          "refusal_aggregates", "bundles", "directory", "coverage", "open_requests", "query_usage", "register_usage"]
IDENTITY_COLUMNS = {"decisions": "id", "policy_loads": "id"}

STREAM_LEASE = "stream:"  # a recipient's delivery stream in the leases table
LEGACY_VIEWER = "legacy:"  # a viewer written by org id before exact identities, until the bundle names its kind


def _viewers(viewer_of: ViewerOf, *org_ids: str) -> list[str]:
    """Who may read an event about these organisations: their exact identities (an id the enforced bundle
    no longer knows reads nothing; the data-protection officers read everything)."""
    return [v for v in map(viewer_of, org_ids) if v is not None]


_INSERT_DECISION = (
    "INSERT INTO decisions (at_ms, sender, kind, rule_id, decision, reason, field, recipients)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _decision_params(r: DecisionRecord) -> tuple[object, ...]:
    return (r.at_ms, r.sender, r.kind, r.rule_id, r.decision, r.reason, r.field, ",".join(r.recipients))


# Queued envelopes whose leaf carries no env (queued before leaves did, or seeded without a leaf).
_UNBOUND = ("SELECT q.recipient, q.seq, q.sender, q.payload, q.enqueued_ms, q.leaf_index, e.meta FROM queue q"
            " LEFT JOIN audit_events e ON e.idx = q.leaf_index WHERE q.item = 'envelope'"
            " AND (e.meta IS NULL OR instr(CAST(e.meta AS TEXT), '\"env\":') = 0)")
NEVER = 1 << 62  # the deadline of items that do not expire (expiry notices)
# Delivery stops at the deadline; expiry waits this much longer, for acks already on their way.
EXPIRY_GRACE_MS = timing.EXPIRY_GRACE_MS


def _enqueue(c: sqlite3.Connection, recipient: str, item: str, sender: str, key: str, rule_id: str,
             payload: bytes, at_ms: int, expires_ms: int, leaf_index: int) -> int:
    """Append to a recipient's queue under its next sequence number; returns that number.

    Synchronous: runs in SQLite's thread as part of a ``Txn.run`` step."""
    c.execute("INSERT INTO recipients (recipient, next_seq, depth) VALUES (?, 1, 0) ON CONFLICT DO NOTHING",
              (recipient,))
    c.execute("INSERT INTO queue_shares (recipient, sender, depth) VALUES (?, ?, 1)"
              " ON CONFLICT (recipient, sender) DO UPDATE SET depth = queue_shares.depth + 1", (recipient, sender))
    seq = int(c.execute("UPDATE recipients SET next_seq = next_seq + 1, depth = depth + 1 WHERE recipient = ?"
                        " RETURNING next_seq - 1", (recipient,)).fetchone()[0])
    c.execute("INSERT INTO queue (recipient, seq, item, sender, idem_key, rule_id, payload, enqueued_ms, expires_ms,"
              " leaf_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (recipient, seq, item, sender, key, rule_id, payload, at_ms, expires_ms, leaf_index))
    return seq


def _dequeue(c: sqlite3.Connection, recipient: str, seq: int, sender: str) -> None:
    c.execute("DELETE FROM queue WHERE recipient = ? AND seq = ?", (recipient, seq))
    c.execute("UPDATE recipients SET depth = depth - 1 WHERE recipient = ?", (recipient,))
    c.execute("UPDATE queue_shares SET depth = depth - 1 WHERE recipient = ? AND sender = ?", (recipient, sender))


class BrokerStore:
    """The broker's store: SQLite (the embedded default, ``open``) or PostgreSQL (``open_postgres``); the
    statements are the SQL both read (docs/storage.md)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> BrokerStore:
        return cls(await Database.open(path, MIGRATIONS))

    @classmethod
    async def for_engine(cls, database: Path, postgres_dsn: str | None, call_timeout_s: float = 35.0) -> BrokerStore:
        """The store a broker's configuration names: PostgreSQL when it gives a DSN, else SQLite in ``database``."""
        return await (cls.open_postgres(postgres_dsn, call_timeout_s) if postgres_dsn else cls.open(database))

    @classmethod
    async def open_postgres(cls, dsn: str, call_timeout_s: float = 35.0) -> BrokerStore:
        from olievlek.storage.postgres import PgDatabase  # psycopg loads only for a PostgreSQL broker

        return cls(await PgDatabase.connect(dsn, MIGRATIONS_POSTGRESQL, call_timeout_s=call_timeout_s))

    @property
    def db(self) -> Database:
        return self._db

    async def execute(self, tx: Txn, batch: Batch, op: Operation[R]) -> R:
        """Run ``op`` in ``tx`` (the group committer's transaction), its leaves into ``batch``."""
        handler = _HANDLERS.get(type(op))
        if handler is None:
            raise TypeError(f"the broker's store has no handler for {type(op).__name__}")
        return cast(R, await handler(tx, batch, op))

    async def idempotency(self, sender: str, key: str) -> tuple[bytes, bytes, int] | None:
        row = await self._db.fetchone(
            "SELECT body_digest, response, leaf_index FROM idempotency WHERE sender = ? AND key = ?", (sender, key)
        )
        return (bytes(row[0]), bytes(row[1]), int(row[2])) if row else None

    async def pending(self, recipient: str, after_seq: int, limit: int, now_ms: int | None = None) -> list[Queued]:
        """Undelivered items in sequence order; an envelope past its deadline is not delivered any more
        (it waits for the expiry sweep), so an expiry never races a delivery still in flight."""
        rows = await self._db.fetchall(
            "SELECT seq, item, payload, leaf_index FROM queue WHERE recipient = ? AND seq > ? AND expires_ms > ?"
            " ORDER BY seq LIMIT ?",
            (recipient, after_seq, clock_now() if now_ms is None else now_ms, limit),
        )
        return [Queued(int(r[0]), r[1], bytes(r[2]), int(r[3])) for r in rows]

    async def due(self, now_ms: int, limit: int) -> list[Due]:
        """Envelopes past their delivery deadline by more than the grace an in-flight ack may need."""
        rows = await self._db.fetchall(
            "SELECT recipient, seq, sender, idem_key, rule_id, enqueued_ms FROM queue"
            " WHERE item = 'envelope' AND expires_ms <= ? ORDER BY expires_ms LIMIT ?",
            (now_ms - EXPIRY_GRACE_MS, limit),
        )
        return [Due(r[0], int(r[1]), r[2], r[3], r[4], int(r[5])) for r in rows]

    async def has_aggregates_before(self, before_ms: int) -> bool:
        row = await self._db.fetchone("SELECT 1 FROM refusal_aggregates WHERE interval_start_ms < ? LIMIT 1",
                                      (before_ms,))
        return row is not None

    async def queue_stats(self) -> list[tuple[str, int, int]]:
        """(recipient, undelivered count, oldest enqueued ms) per recipient with anything queued."""
        rows = await self._db.fetchall(
            "SELECT r.recipient, r.depth, (SELECT q.enqueued_ms FROM queue q WHERE q.recipient = r.recipient"
            " ORDER BY q.seq LIMIT 1) FROM recipients r WHERE r.depth > 0")
        return [(r[0], int(r[1]), int(r[2] or 0)) for r in rows]

    async def decisions(self) -> list[DecisionRecord]:
        rows = await self._db.fetchall(
            "SELECT at_ms, sender, kind, rule_id, decision, reason, field, recipients FROM decisions ORDER BY id"
        )
        return [
            DecisionRecord(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], tuple(filter(None, r[7].split(","))))
            for r in rows
        ]

    async def keep_bundle(self, digest: str, archive: bytes) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("INSERT INTO bundles (digest, archive) VALUES (?, ?) ON CONFLICT DO NOTHING",
                             (digest, archive))

    async def bundle_archive(self, digest: str) -> bytes | None:
        row = await self._db.fetchone("SELECT archive FROM bundles WHERE digest = ?", (digest,))
        return bytes(row[0]) if row else None

    async def enforced_policy_version(self) -> int:
        """The highest bundle version this broker ever enforced (0 if none)."""
        row = await self._db.fetchone("SELECT MAX(version) FROM policy_loads WHERE outcome = 'enforced'")
        return int(row[0]) if row and row[0] is not None else 0

    async def evaluations_since(self, since_ms: int, domain: int) -> dict[str, int]:
        """Evaluations per organisation in ``domain`` reported for periods ending after ``since_ms``: the higher
        of the two shares' sums (both operators count the same evaluations; one may lag)."""
        rows = await self.db.fetchall(
            "SELECT org_id, share, SUM(evaluations) FROM evaluation_reports WHERE period_end_ms > ? AND domain = ?"
            " GROUP BY org_id, share", (since_ms, domain))
        out: dict[str, int] = {}
        for org, _share, n in rows:
            out[str(org)] = max(out.get(str(org), 0), int(n))
        return out

    async def store_evaluation_counts(self, operator: str, counts: object, received_ms: int) -> None:
        """Keep an operator's signed counts; a resent report of the same period is not counted twice."""
        from olievlek.v1 import pseudonymiser_pb2

        assert isinstance(counts, pseudonymiser_pb2.EvaluationCounts)
        async with self._db.transaction() as tx:
            for c in counts.counts:
                await tx.execute(
                    "INSERT INTO evaluation_reports (operator, share, period_start_ms, period_end_ms, "
                    "org_id, org_kind, domain, requests, evaluations, received_ms) VALUES (?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT DO NOTHING",
                    (operator, counts.share, counts.period_start_ms, counts.period_end_ms, c.org_id, c.org_kind,
                     c.domain, c.requests, c.evaluations, received_ms),
                )

    async def store_cosignature(self, size: int, witness: str, cosignature: bytes) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("INSERT INTO cosignatures (size, witness, cosignature) VALUES (?, ?, ?)"
                             " ON CONFLICT (size, witness) DO UPDATE SET cosignature = excluded.cosignature",
                             (size, witness, cosignature))

    async def latest_cosigned_size(self) -> int | None:
        row = await self._db.fetchone("SELECT MAX(size) FROM cosignatures")
        return int(row[0]) if row and row[0] is not None else None

    async def cosignatures(self, size: int) -> list[bytes]:
        rows = await self._db.fetchall("SELECT cosignature FROM cosignatures WHERE size = ? ORDER BY witness", (size,))
        return [bytes(r[0]) for r in rows]

    # -- the directory (reads on the reader connection; writes are Accept's changes) ----------------------
    async def lookup(self, pseudonyms: list[bytes]) -> dict[bytes, list[directory.Entry]]:
        return await directory.lookup(self._db, pseudonyms)

    async def entry_of(self, pseudonym: bytes, holder: str) -> str | None:
        return await directory.entry_of(self._db, pseudonym, holder)

    async def open_request(self, requester: str, holder: str, pseudonym: bytes) -> bool:
        return await directory.open_request(self._db, requester, holder, pseudonym)

    async def has_requests_before(self, cutoff_ms: int) -> bool:
        return await directory.has_requests_before(self._db, cutoff_ms)

    async def own_entries(self, holder: str, after: bytes, limit: int) -> list[directory.OwnEntry]:
        return await directory.own_entries(self._db, holder, after, limit)

    async def holder_counts(self, since_day: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        return await directory.holder_counts(self._db, since_day)

    # -- several instances over one database --------------------------------------------------------------
    async def take_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Take or renew ``name`` for ``holder`` until ``now_ms + ttl_ms``; False while another holder's lease
        lasts. One statement, so two instances asking at once cannot both win."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                "INSERT INTO leases (name, holder, epoch, expires_ms) VALUES (?, ?, 1, ?) ON CONFLICT (name) DO UPDATE"
                " SET holder = excluded.holder, expires_ms = excluded.expires_ms,"
                " epoch = leases.epoch + (CASE WHEN leases.holder = excluded.holder THEN 0 ELSE 1 END)"
                " WHERE leases.holder = excluded.holder OR leases.expires_ms <= ? RETURNING holder",
                (name, holder, now_ms + ttl_ms, now_ms))
        return row is not None

    async def claim_stream(self, recipient: str, holder: str) -> int:
        """Make ``holder`` the owner of ``recipient``'s delivery stream (the newest claim wins); its epoch."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                "INSERT INTO leases (name, holder, epoch, expires_ms) VALUES (?, ?, 1, ?) ON CONFLICT (name) DO UPDATE"
                " SET holder = excluded.holder, epoch = leases.epoch + 1, expires_ms = excluded.expires_ms"
                " RETURNING epoch", (STREAM_LEASE + recipient, holder, NEVER))
        assert row is not None
        return int(row[0])

    async def release_stream(self, recipient: str, holder: str, epoch: int) -> None:
        """Give up ``recipient``'s stream, unless a newer claim took it already."""
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM leases WHERE name = ? AND holder = ? AND epoch = ?",
                             (STREAM_LEASE + recipient, holder, epoch))

    async def stream_owners(self, recipients: Sequence[str]) -> dict[str, tuple[str, int]]:
        """(holder, epoch) of each of these recipients' streams that someone owns."""
        if not recipients:
            return {}
        marks = ",".join("?" * len(recipients))
        rows = await self._db.fetchall(f"SELECT name, holder, epoch FROM leases WHERE name IN ({marks})",  # noqa: S608
                                       [STREAM_LEASE + r for r in recipients])
        return {str(n).removeprefix(STREAM_LEASE): (str(h), int(e)) for n, h, e in rows}

    async def queue_marks(self, recipients: Sequence[str]) -> dict[str, int]:
        """The next sequence number of each recipient's queue: it moves whenever anything is queued for it."""
        if not recipients:
            return {}
        marks = ",".join("?" * len(recipients))
        rows = await self._db.fetchall(
            f"SELECT recipient, next_seq FROM recipients WHERE recipient IN ({marks})", list(recipients))  # noqa: S608
        return {str(r): int(n) for r, n in rows}

    async def database_state(self) -> DatabaseState:
        """A probe of the database (readiness): raises what the engine raises when it does not answer."""
        if self._db.engine == "sqlite":
            await self._db.fetchone("SELECT 1")
            return DatabaseState(True, ("", 0), None)
        row = await self._db.fetchone("SELECT pg_is_in_recovery(), COALESCE(inet_server_addr()::text, ''),"
                                      " COALESCE(inet_server_port(), 0)")
        assert row is not None
        lag = await self._db.fetchone("SELECT EXTRACT(EPOCH FROM MAX(replay_lag)) FROM pg_stat_replication")
        return DatabaseState(not bool(row[0]), (str(row[1]), int(row[2])),
                             float(lag[0]) if lag is not None and lag[0] is not None else None)

    async def has_unbound_queue_rows(self) -> bool:
        """Any queued envelope whose leaf does not bind it (checked before committing anything at start). A
        PostgreSQL broker never had a queue from before leaves bound their envelope."""
        if self._db.engine != "sqlite":
            return False
        return await self._db.fetchone(_UNBOUND + " LIMIT 1") is not None

    async def resolve_legacy_viewers(self, identities: dict[str, str]) -> int:
        """Give viewers written by org id (before exact identities) the full identity the bundle names for that
        id; returns how many rows changed. An id the bundle no longer knows stays legacy: only the
        data-protection officers read those events."""
        if await self._db.fetchone("SELECT 1 FROM audit_visibility WHERE viewer >= ? AND viewer < ? LIMIT 1",
                                   (LEGACY_VIEWER, LEGACY_VIEWER[:-1] + ";")) is None:
            return 0
        changed = 0
        async with self._db.transaction() as tx:
            for org_id, identity in identities.items():
                before = await tx.fetchone("SELECT COUNT(*) FROM audit_visibility WHERE viewer = ?",
                                           (LEGACY_VIEWER + org_id,))
                await tx.execute("UPDATE audit_visibility SET viewer = ? WHERE viewer = ?",
                                 (identity, LEGACY_VIEWER + org_id))
                changed += int(before[0]) if before else 0
        return changed

    async def close(self) -> None:
        await self._db.close()


# -- the operations' handlers: each runs inside the batch's transaction, appends the batch's leaves -------------
def _append(batch: Batch, leaf: Leaf) -> Recorded:
    index, salt, data = batch.append(leaf.meta, leaf.viewers, leaf.at_ms)
    return Recorded(index, (salt, data))


def _apply_change(c: sqlite3.Connection, change: DirectoryChange) -> None:
    match change:
        case Register():
            directory.register_step(c, change.entry, change.at_ms)
        case Withdraw():
            directory.withdraw_step(c, change.holder, change.pseudonym)
        case NoteRequest():
            directory.request_step(c, change.requester, change.holder, change.pseudonym, change.at_ms, change.asking)


async def _accept(tx: Txn, batch: Batch, op: Accept) -> Accepted | Conflict | QueueFull | OverLimit:
    """If a concurrent call with the same key committed first, its answer and leaf are returned and nothing is
    queued twice; with another body, a Conflict. A recipient's queue at its limit returns (not raises: a raising
    operation would make the group committer redo the whole batch) a QueueFull before anything is written; so
    does the holder's directory limit its OverLimit."""
    record = op.record
    blocked = op.full.intersection(record.recipients)
    if blocked:
        return QueueFull(min(blocked), op.queue_limit, op.queue_limit)

    def step(c: sqlite3.Connection) -> Accepted | Conflict | QueueFull | OverLimit:
        prior = c.execute("SELECT body_digest, response, leaf_index FROM idempotency WHERE sender = ? AND key = ?",
                          (record.sender, op.key)).fetchone()
        if prior is not None:
            return Accepted(bytes(prior[1]), int(prior[2]), None) if bytes(prior[0]) == op.digest else Conflict(op.key)
        for recipient in record.recipients:
            row = c.execute("SELECT depth FROM recipients WHERE recipient = ?", (recipient,)).fetchone()
            if row is not None and int(row[0]) >= op.queue_limit:
                return QueueFull(recipient, int(row[0]), op.queue_limit)
            row = c.execute("SELECT depth FROM queue_shares WHERE recipient = ? AND sender = ?",
                            (recipient, record.sender)).fetchone()
            if row is not None and int(row[0]) >= op.share_limit:
                return QueueFull(recipient, int(row[0]), op.share_limit, sender_share=True)
        if op.admit is not None:
            a = op.admit
            over = directory.admit_step(c, a.holder, a.pseudonym, a.limit, a.periods)
            if over is not None:
                return over
        index, salt, data = batch.append(op.meta, op.viewers, record.at_ms)
        faults.point("broker.after_leaf_append")
        c.execute("INSERT INTO idempotency (sender, key, body_digest, response, at_ms, leaf_index)"
                  " VALUES (?, ?, ?, ?, ?, ?)", (record.sender, op.key, op.digest, op.response, record.at_ms, index))
        for recipient in record.recipients:
            _enqueue(c, recipient, "envelope", record.sender, op.key, record.rule_id, op.envelope, record.at_ms,
                     op.expires_ms, index)
        if op.change is not None:
            _apply_change(c, op.change)
        c.execute(_INSERT_DECISION, _decision_params(record))
        return Accepted(op.response, index, (salt, data))

    result = await tx.run(step)
    if isinstance(result, QueueFull):
        op.full.add(result.recipient)
    return result


async def _record(tx: Txn, batch: Batch, op: Record) -> Recorded:
    recorded = _append(batch, Leaf(op.meta, op.viewers, op.record.at_ms))
    await tx.execute(_INSERT_DECISION, _decision_params(op.record))
    return recorded


async def _append_leaves(tx: Txn, batch: Batch, op: AppendLeaves) -> list[Recorded]:
    return [_append(batch, leaf) for leaf in op.leaves]


async def _charge_budget(tx: Txn, batch: Batch, op: ChargeBudget) -> OverBudget | list[Recorded]:
    over = await tx.run(lambda c: directory.use_budget_step(c, op.org, op.periods, op.rows, op.limits))
    if over is not None:
        return over
    appended = [_append(batch, leaf) for leaf in op.leaves]
    if op.record is not None:
        appended.append(await _record(tx, batch, op.record))
    return appended


async def _acknowledge(tx: Txn, batch: Batch, op: Acknowledge) -> list[Acked | NotQueued]:
    """Remove each acknowledged item and log it (a notice's ack is bookkeeping, not an event of its own); a
    rejection queues a notice for the sender, whose outbox says accepted otherwise."""
    recipient, at_ms = op.recipient, op.at_ms

    def step(c: sqlite3.Connection) -> list[Acked | NotQueued]:
        out: list[Acked | NotQueued] = []
        for ack in op.acks:
            row = c.execute("SELECT sender, item, idem_key, rule_id, enqueued_ms, payload FROM queue"
                            " WHERE recipient = ? AND seq = ?", (recipient, ack.seq)).fetchone()
            if row is None:
                out.append(NotQueued(ack.seq))
                continue
            sender, item, key, rule_id, enqueued, payload = row
            out.append(Acked(str(sender)))
            _dequeue(c, recipient, ack.seq, sender)
            c.execute("INSERT INTO acks (seq, recipient, outcome, reason, at_ms) VALUES (?, ?, ?, ?, ?)",
                      (ack.seq, recipient, ack.outcome, ack.reason, at_ms))
            if item != "envelope":
                continue
            index, _salt, _meta = batch.append(
                {"event": "delivery.ack", "recipient": recipient, "sender": sender, "outcome": ack.outcome,
                 "reason": ack.reason, "key": key, "seq": ack.seq, "env": env_of(bytes(payload)).hex()},
                _viewers(op.viewer_of, recipient, sender), at_ms)
            if ack.outcome == "rejected":
                notice = broker_pb2.DeliveryNotice(
                    idempotency_key=key, recipient=recipient, rule_id=rule_id, enqueued_at_ms=int(enqueued),
                    expired_at_ms=at_ms, reason=broker_pb2.NOTICE_REASON_REJECTED, reason_code=ack.reason)
                _enqueue(c, sender, "expiry", sender, key, rule_id, notice.SerializeToString(deterministic=True),
                         at_ms, NEVER, index)
        return out

    return await tx.run(step)


async def _expire(tx: Txn, batch: Batch, op: Expire) -> int | None:
    due = op.due

    def step(c: sqlite3.Connection) -> int | None:
        row = c.execute("SELECT payload FROM queue WHERE recipient = ? AND seq = ?",
                        (due.recipient, due.seq)).fetchone()
        if row is None:
            return None
        _dequeue(c, due.recipient, due.seq, due.sender)
        bound = {**op.meta, "env": env_of(bytes(row[0])).hex(), "seq": due.seq}  # which envelope, which gap
        index, _salt, _meta = batch.append(bound, _viewers(op.viewer_of, due.sender, due.recipient), op.at_ms)
        _enqueue(c, due.sender, "expiry", due.sender, due.idem_key, due.rule_id, op.notice, op.at_ms, NEVER, index)
        return index

    return await tx.run(step)


async def _aggregate_refusal(tx: Txn, batch: Batch, op: AggregateRefusal) -> int:
    def step(c: sqlite3.Connection) -> int:
        row = c.execute("SELECT count, codes, chain FROM refusal_aggregates WHERE viewer = ? AND"
                        " interval_start_ms = ?", (op.viewer, op.interval_start_ms)).fetchone()
        count, codes, chain = (int(row[0]), json.loads(row[1]), bytes(row[2])) if row else (0, {}, CHAIN_START)
        codes[op.code] = codes.get(op.code, 0) + 1
        chain = extend_chain(chain, op.env)
        c.execute("INSERT INTO refusal_aggregates (viewer, interval_start_ms, count, codes, first_ms, last_ms,"
                  " chain) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (viewer, interval_start_ms) DO UPDATE SET"
                  " count = excluded.count, codes = excluded.codes, last_ms = excluded.last_ms,"
                  " chain = excluded.chain",
                  (op.viewer, op.interval_start_ms, count + 1, json.dumps(codes, sort_keys=True), op.at_ms, op.at_ms,
                   chain))
        return count + 1

    return int(await tx.run(step))


async def _flush_aggregates(tx: Txn, batch: Batch, op: FlushAggregates) -> int:
    """Each aggregate's leaf is visible to the refused identity; a decision row goes with it."""
    rows = await tx.fetchall("SELECT viewer, interval_start_ms, count, codes, first_ms, last_ms, chain FROM"
                             " refusal_aggregates WHERE interval_start_ms < ? ORDER BY interval_start_ms, viewer",
                             (op.before_ms,))
    for viewer, start, count, codes, first, last, chain in rows:
        sender = str(viewer).partition("/")[2]
        batch.append({"event": "refusals.aggregated", "sender": sender, "identity": viewer,
                      "interval_start_ms": int(start), "interval_ms": op.interval_ms, "count": int(count),
                      "codes": json.loads(codes), "first_ms": int(first), "last_ms": int(last),
                      "chain": bytes(chain).hex()}, (str(viewer),), op.at_ms)
        await tx.execute(_INSERT_DECISION, _decision_params(DecisionRecord(
            op.at_ms, sender, "refusals.aggregated", "", Decision.REFUSED, f"{int(count)} refusals in one interval",
            "", ())))
        await tx.execute("DELETE FROM refusal_aggregates WHERE viewer = ? AND interval_start_ms = ?",
                         (viewer, start))
    return len(rows)


async def _close_requests(tx: Txn, batch: Batch, op: CloseRequestsBefore) -> int:
    return int(await tx.run(lambda c: directory.close_requests_before(c, op.cutoff_ms)))


async def _load_policy(tx: Txn, batch: Batch, op: LoadPolicy) -> None:
    await tx.execute(
        "INSERT INTO policy_loads (at_ms, name, version, digest, outcome, reason) VALUES (?, ?, ?, ?, ?, ?)",
        (op.at_ms, op.name, op.version, op.digest, op.outcome, op.reason),
    )
    batch.append({"event": "policy.load", "bundle": op.name, "version": op.version, "digest": op.digest,
                  "outcome": op.outcome}, (), op.at_ms)


async def _seed(tx: Txn, batch: Batch, op: Seed) -> None:
    """An envelope this broker accepted before keeps its original leaf (a redelivery); any other gets a leaf of
    its own, written as an accepted send of that envelope."""
    leaves: dict[bytes, int] = {}
    rules: dict[bytes, str] = {}
    recipient, sender, at_ms = op.recipient, op.sender, op.at_ms
    for key, raw in op.items:
        if raw in leaves:
            continue
        body = envelope_pb2.EnvelopeBody.FromString(envelope_pb2.Envelope.FromString(raw).body)
        rules[raw] = body.rule_id
        prior = await tx.fetchone("SELECT leaf_index FROM idempotency WHERE sender = ? AND key = ?", (sender, key))
        if prior is not None:
            leaves[raw] = int(prior[0])
            continue
        kind = BY_KIND[body.kind].name if body.kind in BY_KIND else "unknown"
        leaves[raw] = batch.append({"event": "send", "sender": sender, "kind": kind, "rule": body.rule_id,
                                    "decision": Decision.ACCEPTED, "reason": "", "field": "",
                                    "recipients": list(body.recipients), "env": env_of(raw).hex(),
                                    "at": at_ms, "bundle": op.bundle, "seeded": True}, op.viewers, at_ms)[0]
    await tx.execute("INSERT INTO recipients (recipient, next_seq, depth) VALUES (?, 1, 0) ON CONFLICT DO NOTHING",
                     (recipient,))
    row = await tx.fetchone("SELECT next_seq FROM recipients WHERE recipient = ?", (recipient,))
    assert row is not None
    first, n = int(row[0]), len(op.items)
    await tx.executemany(
        "INSERT INTO queue (recipient, seq, item, sender, idem_key, rule_id, payload, enqueued_ms, expires_ms,"
        " leaf_index) VALUES (?, ?, 'envelope', ?, ?, ?, ?, ?, ?, ?)",
        [(recipient, first + i, sender, key, rules[raw], raw, at_ms, op.expires_ms, leaves[raw])
         for i, (key, raw) in enumerate(op.items)],
    )
    await tx.execute("UPDATE recipients SET next_seq = next_seq + ?, depth = depth + ? WHERE recipient = ?",
                     (n, n, recipient))
    await tx.execute("INSERT INTO queue_shares (recipient, sender, depth) VALUES (?, ?, ?)"
                     " ON CONFLICT (recipient, sender) DO UPDATE SET depth = queue_shares.depth + ?",
                     (recipient, sender, n, n))


async def _bind_queue_leaves(tx: Txn, batch: Batch, op: BindQueueLeaves) -> int:
    """Envelopes queued before decision leaves carried ``env`` and ``at`` (and seeded rows without a leaf): each
    gets a leaf that says so, pointing at the leaf it replaces, and is delivered with that one - a recipient
    takes nothing the log does not bind to the bytes."""
    rows = await tx.fetchall(_UNBOUND)
    for recipient, seq, sender, payload, enqueued, old, meta in rows:
        raw = bytes(payload)
        body = envelope_pb2.EnvelopeBody.FromString(envelope_pb2.Envelope.FromString(raw).body)
        before = json.loads(meta) if meta else {}
        bound = {"event": "send", "sender": sender, "kind": BY_KIND[body.kind].name if body.kind in BY_KIND
                 else "unknown", "rule": before.get("rule", body.rule_id), "decision": Decision.ACCEPTED,
                 "reason": "", "field": "", "recipients": list(body.recipients), "env": env_of(raw).hex(),
                 "at": int(enqueued), "bundle": before.get("bundle", ""), "rebinds": int(old)}
        index = batch.append(bound, op.viewers_of(sender, list(body.recipients)), op.at_ms)[0]
        await tx.execute("UPDATE queue SET leaf_index = ? WHERE recipient = ? AND seq = ?", (index, recipient, seq))
    return len(rows)


_Handler = Callable[[Txn, Batch, Any], Awaitable[Any]]
_HANDLERS: dict[type[Operation[Any]], _Handler] = {
    Accept: _accept, Record: _record, AppendLeaves: _append_leaves, ChargeBudget: _charge_budget,
    Acknowledge: _acknowledge, Expire: _expire, AggregateRefusal: _aggregate_refusal,
    FlushAggregates: _flush_aggregates, CloseRequestsBefore: _close_requests, LoadPolicy: _load_policy,
    Seed: _seed, BindQueueLeaves: _bind_queue_leaves,
}
