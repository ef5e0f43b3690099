"""The broker's storage: idempotency records, per-recipient queues, decisions.

Everything lives in one SQLite file so that accepting an envelope is one
transaction: the decision row, the idempotency record and one queue row per
recipient commit together or not at all. The receipt is answered only after
that commit. Transaction functions (``*_txn``) take the caller's transaction
so the group committer can batch them; a PostgreSQL backend will implement the
same methods (the interface is extracted when that second backend exists).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from olievlek import faults, timing
from olievlek.audit.log import Batch
from olievlek.audit.refusal_chain import CHAIN_START, extend_chain
from olievlek.clock import now_ms as clock_now
from olievlek.envelope import env_of
from olievlek.errors import Refused
from olievlek.kinds import BY_KIND
from olievlek.statuses import Decision, LoadOutcome
from olievlek.storage.migrations import load
from olievlek.storage.sqlite import Database, Txn
from olievlek.v1 import broker_pb2, envelope_pb2

# The schema is broker/migrations/sqlite/*.sql (olievlek.storage.migrations); a file from before them carries its
# version in PRAGMA user_version: 7 (commit 395f065) is migration 1, 8 is 2, 9 is 3.
MIGRATIONS = load("olievlek.broker", "broker", legacy_user_version={7: 1, 8: 2, 9: 3})
MIGRATIONS_POSTGRESQL = load("olievlek.broker", "broker", "postgresql")
# Every table of the broker, in the order an export writes them (olievlek/storage/copy.py); identity columns
# continue after the imported ids on PostgreSQL.
TABLES = ["idempotency", "queue", "recipients", "queue_shares", "decisions", "acks", "policy_loads",
          "evaluation_reports", "tree_nodes", "audit_events", "audit_visibility", "tree_heads", "cosignatures",
          "refusal_aggregates", "bundles", "directory", "coverage", "open_requests", "query_usage", "register_usage"]
IDENTITY_COLUMNS = {"decisions": "id", "policy_loads": "id"}

LEGACY_VIEWER = "legacy:"  # a viewer written by org id before exact identities, until the bundle names its kind




@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One broker decision as the audit trail keeps it (no payload values)."""

    at_ms: int
    sender: str
    kind: str
    rule_id: str
    decision: Decision
    reason: str
    field: str
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Queued:
    """One item of a recipient's queue, in sequence order."""

    seq: int
    item: str  # "envelope" | "expiry"
    payload: bytes
    leaf_index: int


@dataclass(frozen=True, slots=True)
class Due:
    """An envelope past its delivery deadline, still unacknowledged."""

    recipient: str
    seq: int
    sender: str
    idem_key: str
    rule_id: str
    enqueued_ms: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """An envelope accepted: the stored answer, its leaf, and the leaf's (salt, metadata) when this call
    appended it (None: an earlier call with the same key and body did)."""

    response: bytes
    leaf_index: int
    leaf: tuple[bytes, bytes] | None


@dataclass(frozen=True, slots=True)
class Conflict:
    """The sender used the idempotency key before, for another body."""

    key: str


ViewerOf = Callable[[str], str | None]  # an org id -> its full identity under the enforced bundle


def _viewers(viewer_of: ViewerOf, *org_ids: str) -> list[str]:
    """Who may read an event about these organisations: their exact identities (an id the enforced bundle
    no longer knows reads nothing; the data-protection officers read everything)."""
    return [v for v in map(viewer_of, org_ids) if v is not None]


class QueueFull(Exception):
    """A recipient's queue, or one sender's share of it, is at its limit (a QUEUE_FULL refusal)."""

    def __init__(self, recipient: str, depth: int, limit: int, sender_share: bool = False) -> None:
        super().__init__(recipient)
        self.recipient, self.depth, self.limit, self.sender_share = recipient, depth, limit, sender_share


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
    async def for_engine(cls, database: Path, postgres_dsn: str | None) -> BrokerStore:
        """The store a broker's configuration names: PostgreSQL when it gives a DSN, else SQLite in ``database``."""
        return await (cls.open_postgres(postgres_dsn) if postgres_dsn else cls.open(database))

    @classmethod
    async def open_postgres(cls, dsn: str) -> BrokerStore:
        from olievlek.storage.postgres import PgDatabase  # psycopg loads only for a PostgreSQL broker

        return cls(await PgDatabase.connect(dsn, MIGRATIONS_POSTGRESQL))

    @property
    def db(self) -> Database:
        return self._db

    async def idempotency(self, sender: str, key: str) -> tuple[bytes, bytes, int] | None:
        row = await self._db.fetchone(
            "SELECT body_digest, response, leaf_index FROM idempotency WHERE sender = ? AND key = ?", (sender, key)
        )
        return (bytes(row[0]), bytes(row[1]), int(row[2])) if row else None

    @staticmethod
    async def accept_txn(tx: Txn, batch: Batch, key: str, digest: bytes, response: bytes, envelope: bytes,
                         record: DecisionRecord, meta: dict[str, object], expires_ms: int,
                         queue_limit: int, share_limit: int, viewers: Sequence[str],
                         apply: Callable[[sqlite3.Connection], None] | None = None,
                         admit: Callable[[sqlite3.Connection], Refused | None] | None = None,
                         ) -> Accepted | Conflict | QueueFull | Refused:
        """Queue an accepted envelope, record its idempotency key and decision, append its leaf.

        If a concurrent call with the same key committed first, its answer and leaf are returned and
        nothing is queued twice; with another body, a Conflict. ``apply`` (a directory change) runs in the
        same step, once, only for a new key. A recipient's queue at ``queue_limit`` returns
        (not raises: a raising op would make the group committer redo the whole batch) a QueueFull,
        before anything is written; so does ``admit`` (a directory limit) its refusal.
        """
        def step(c: sqlite3.Connection) -> Accepted | Conflict | QueueFull | Refused:
            prior = c.execute("SELECT body_digest, response, leaf_index FROM idempotency WHERE sender = ? AND key = ?",
                              (record.sender, key)).fetchone()
            if prior is not None:
                return Accepted(bytes(prior[1]), int(prior[2]), None) if bytes(prior[0]) == digest else Conflict(key)
            for recipient in record.recipients:
                row = c.execute("SELECT depth FROM recipients WHERE recipient = ?", (recipient,)).fetchone()
                if row is not None and int(row[0]) >= queue_limit:
                    return QueueFull(recipient, int(row[0]), queue_limit)
                row = c.execute("SELECT depth FROM queue_shares WHERE recipient = ? AND sender = ?",
                                (recipient, record.sender)).fetchone()
                if row is not None and int(row[0]) >= share_limit:
                    return QueueFull(recipient, int(row[0]), share_limit, sender_share=True)
            refused = admit(c) if admit is not None else None
            if refused is not None:
                return refused
            index, salt, data = batch.append(meta, viewers, record.at_ms)
            faults.point("broker.after_leaf_append")
            c.execute("INSERT INTO idempotency (sender, key, body_digest, response, at_ms, leaf_index)"
                      " VALUES (?, ?, ?, ?, ?, ?)", (record.sender, key, digest, response, record.at_ms, index))
            for recipient in record.recipients:
                _enqueue(c, recipient, "envelope", record.sender, key, record.rule_id, envelope, record.at_ms,
                         expires_ms, index)
            if apply is not None:
                apply(c)
            c.execute(_INSERT_DECISION, _decision_params(record))
            return Accepted(response, index, (salt, data))

        return await tx.run(step)

    @staticmethod
    async def record_txn(tx: Txn, batch: Batch, record: DecisionRecord, meta: dict[str, object],
                         viewers: Sequence[str]) -> tuple[int, tuple[bytes, bytes]]:
        """Record a refusal (or any decision without a queue row); its leaf's index, salt and metadata."""
        index, salt, data = batch.append(meta, viewers, record.at_ms)
        await tx.execute(_INSERT_DECISION, _decision_params(record))
        return index, (salt, data)

    async def pending(self, recipient: str, after_seq: int, limit: int, now_ms: int | None = None) -> list[Queued]:
        """Undelivered items in sequence order; an envelope past its deadline is not delivered any more
        (it waits for the expiry sweep), so an expiry never races a delivery still in flight."""
        rows = await self._db.fetchall(
            "SELECT seq, item, payload, leaf_index FROM queue WHERE recipient = ? AND seq > ? AND expires_ms > ?"
            " ORDER BY seq LIMIT ?",
            (recipient, after_seq, clock_now() if now_ms is None else now_ms, limit),
        )
        return [Queued(int(r[0]), r[1], bytes(r[2]), int(r[3])) for r in rows]

    @staticmethod
    async def ack_txn(tx: Txn, batch: Batch, recipient: str, seq: int, outcome: str, reason: str,
                      at_ms: int, viewer_of: ViewerOf) -> str | None:
        """Remove an acknowledged item and log it; its sender, or None if it was not queued for this recipient."""
        def step(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT sender, item, idem_key, rule_id, enqueued_ms, payload FROM queue"
                            " WHERE recipient = ? AND seq = ?", (recipient, seq)).fetchone()
            if row is None:
                return None
            sender, item, key, rule_id, enqueued, payload = row
            _dequeue(c, recipient, seq, sender)
            c.execute("INSERT INTO acks (seq, recipient, outcome, reason, at_ms) VALUES (?, ?, ?, ?, ?)",
                      (seq, recipient, outcome, reason, at_ms))
            if item != "envelope":  # a notice's ack is bookkeeping, not an event of its own
                return str(sender)
            index, _salt, _meta = batch.append(
                {"event": "delivery.ack", "recipient": recipient, "sender": sender, "outcome": outcome,
                 "reason": reason, "key": key, "seq": seq, "env": env_of(bytes(payload)).hex()},
                _viewers(viewer_of, recipient, sender), at_ms)
            if outcome == "rejected":  # the sender must learn it: its outbox says accepted otherwise
                notice = broker_pb2.DeliveryNotice(
                    idempotency_key=key, recipient=recipient, rule_id=rule_id, enqueued_at_ms=int(enqueued),
                    expired_at_ms=at_ms, reason=broker_pb2.NOTICE_REASON_REJECTED, reason_code=reason)
                _enqueue(c, sender, "expiry", sender, key, rule_id, notice.SerializeToString(deterministic=True),
                         at_ms, NEVER, index)
            return str(sender)

        return await tx.run(step)

    async def due(self, now_ms: int, limit: int) -> list[Due]:
        """Envelopes past their delivery deadline by more than the grace an in-flight ack may need."""
        rows = await self._db.fetchall(
            "SELECT recipient, seq, sender, idem_key, rule_id, enqueued_ms FROM queue"
            " WHERE item = 'envelope' AND expires_ms <= ? ORDER BY expires_ms LIMIT ?",
            (now_ms - EXPIRY_GRACE_MS, limit),
        )
        return [Due(r[0], int(r[1]), r[2], r[3], r[4], int(r[5])) for r in rows]

    @staticmethod
    async def expire_txn(tx: Txn, batch: Batch, due: Due, notice: bytes, meta: dict[str, object],
                         at_ms: int, viewer_of: ViewerOf) -> int | None:
        """Remove an expired envelope from its recipient's queue and queue a notice for its sender.

        Returns the expiry's leaf index, or None when it was acknowledged meanwhile.
        """
        def step(c: sqlite3.Connection) -> int | None:
            row = c.execute("SELECT payload FROM queue WHERE recipient = ? AND seq = ?",
                            (due.recipient, due.seq)).fetchone()
            if row is None:
                return None
            _dequeue(c, due.recipient, due.seq, due.sender)
            bound = {**meta, "env": env_of(bytes(row[0])).hex(), "seq": due.seq}  # which envelope, which gap
            index, _salt, _meta = batch.append(bound, _viewers(viewer_of, due.sender, due.recipient), at_ms)
            _enqueue(c, due.sender, "expiry", due.sender, due.idem_key, due.rule_id, notice, at_ms, NEVER, index)
            return index

        return await tx.run(step)

    @staticmethod
    async def aggregate_refusal_txn(tx: Txn, viewer: str, interval_start_ms: int, code: str, env: bytes,
                                    at_ms: int) -> int:
        """Count one more refusal of ``viewer`` in its interval's aggregate (no leaf of its own); returns its
        place in the interval's chain."""
        def step(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT count, codes, chain FROM refusal_aggregates WHERE viewer = ? AND"
                            " interval_start_ms = ?", (viewer, interval_start_ms)).fetchone()
            count, codes, chain = (int(row[0]), json.loads(row[1]), bytes(row[2])) if row else (0, {}, CHAIN_START)
            codes[code] = codes.get(code, 0) + 1
            chain = extend_chain(chain, env)
            c.execute("INSERT INTO refusal_aggregates (viewer, interval_start_ms, count, codes, first_ms, last_ms,"
                      " chain) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (viewer, interval_start_ms) DO UPDATE SET"
                      " count = excluded.count, codes = excluded.codes, last_ms = excluded.last_ms,"
                      " chain = excluded.chain",
                      (viewer, interval_start_ms, count + 1, json.dumps(codes, sort_keys=True), at_ms, at_ms, chain))
            return count + 1

        return int(await tx.run(step))

    @staticmethod
    async def flush_aggregates_txn(tx: Txn, batch: Batch, before_ms: int, interval_ms: int, at_ms: int) -> int:
        """Turn every aggregate of an interval that started before ``before_ms`` into its one leaf (visible to
        the refused identity) and decision row; returns how many."""
        rows = await tx.fetchall("SELECT viewer, interval_start_ms, count, codes, first_ms, last_ms, chain FROM"
                                 " refusal_aggregates WHERE interval_start_ms < ? ORDER BY interval_start_ms, viewer",
                                 (before_ms,))
        for viewer, start, count, codes, first, last, chain in rows:
            sender = str(viewer).partition("/")[2]
            batch.append({"event": "refusals.aggregated", "sender": sender, "identity": viewer,
                          "interval_start_ms": int(start), "interval_ms": interval_ms, "count": int(count),
                          "codes": json.loads(codes), "first_ms": int(first), "last_ms": int(last),
                          "chain": bytes(chain).hex()}, (str(viewer),), at_ms)
            await tx.execute(_INSERT_DECISION, _decision_params(DecisionRecord(
                at_ms, sender, "refusals.aggregated", "", Decision.REFUSED, f"{int(count)} refusals in one interval",
                "", ())))
            await tx.execute("DELETE FROM refusal_aggregates WHERE viewer = ? AND interval_start_ms = ?",
                             (viewer, start))
        return len(rows)

    async def has_aggregates_before(self, before_ms: int) -> bool:
        row = await self._db.fetchone("SELECT 1 FROM refusal_aggregates WHERE interval_start_ms < ? LIMIT 1",
                                      (before_ms,))
        return row is not None

    @staticmethod
    async def seed_txn(tx: Txn, batch: Batch, recipient: str, sender: str, items: list[tuple[str, bytes]],
                       at_ms: int, expires_ms: int, bundle: str, viewers: Sequence[str] = ()) -> None:
        """Queue envelopes directly, in bulk, skipping the checks (restart benches, and tests that redeliver).

        Every queue row still has a real decision leaf, as a delivery's proof needs: an envelope this broker
        accepted before keeps its original leaf (a redelivery); any other gets a leaf of its own, written as
        an accepted send of that envelope."""
        leaves: dict[bytes, int] = {}
        rules: dict[bytes, str] = {}
        for key, raw in items:
            if raw in leaves:
                continue
            body = envelope_pb2.EnvelopeBody.FromString(envelope_pb2.Envelope.FromString(raw).body)
            rules[raw] = body.rule_id
            prior = await tx.fetchone("SELECT leaf_index FROM idempotency WHERE sender = ? AND key = ?",
                                      (sender, key))
            if prior is not None:
                leaves[raw] = int(prior[0])
                continue
            kind = BY_KIND[body.kind].name if body.kind in BY_KIND else "unknown"
            leaves[raw] = batch.append({"event": "send", "sender": sender, "kind": kind, "rule": body.rule_id,
                                        "decision": Decision.ACCEPTED, "reason": "", "field": "",
                                        "recipients": list(body.recipients), "env": env_of(raw).hex(),
                                        "at": at_ms, "bundle": bundle, "seeded": True}, viewers, at_ms)[0]
        await tx.execute("INSERT INTO recipients (recipient, next_seq, depth) VALUES (?, 1, 0) ON CONFLICT DO NOTHING",
                         (recipient,))
        row = await tx.fetchone("SELECT next_seq FROM recipients WHERE recipient = ?", (recipient,))
        assert row is not None
        first = int(row[0])
        await tx.executemany(
            "INSERT INTO queue (recipient, seq, item, sender, idem_key, rule_id, payload, enqueued_ms, expires_ms,"
            " leaf_index) VALUES (?, ?, 'envelope', ?, ?, ?, ?, ?, ?, ?)",
            [(recipient, first + i, sender, key, rules[raw], raw, at_ms, expires_ms, leaves[raw])
             for i, (key, raw) in enumerate(items)],
        )
        await tx.execute("UPDATE recipients SET next_seq = next_seq + ?, depth = depth + ? WHERE recipient = ?",
                         (len(items), len(items), recipient))
        await tx.execute("INSERT INTO queue_shares (recipient, sender, depth) VALUES (?, ?, ?)"
                         " ON CONFLICT (recipient, sender) DO UPDATE SET depth = queue_shares.depth + ?",
                         (recipient, sender, len(items), len(items)))

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

    @staticmethod
    async def policy_load_txn(tx: Txn, batch: Batch, at_ms: int, name: str, version: int, digest: str,
                              outcome: LoadOutcome, reason: str) -> None:
        await tx.execute(
            "INSERT INTO policy_loads (at_ms, name, version, digest, outcome, reason) VALUES (?, ?, ?, ?, ?, ?)",
            (at_ms, name, version, digest, outcome, reason),
        )
        batch.append({"event": "policy.load", "bundle": name, "version": version, "digest": digest,
                      "outcome": outcome}, (), at_ms)

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

    @staticmethod
    async def bind_queue_leaves_txn(tx: Txn, batch: Batch, viewers_of: Callable[[str, Sequence[str]], list[str]],
                                    at_ms: int) -> int:
        """Envelopes queued before decision leaves carried ``env`` and ``at`` (and seeded rows without a leaf):
        each gets a leaf that says so, pointing at the leaf it replaces, and is delivered with that one - a
        recipient takes nothing the log does not bind to the bytes. Returns how many."""
        rows = await tx.fetchall(_UNBOUND)
        for recipient, seq, sender, payload, enqueued, old, meta in rows:
            raw = bytes(payload)
            body = envelope_pb2.EnvelopeBody.FromString(envelope_pb2.Envelope.FromString(raw).body)
            before = json.loads(meta) if meta else {}
            bound = {"event": "send", "sender": sender, "kind": BY_KIND[body.kind].name if body.kind in BY_KIND
                     else "unknown", "rule": before.get("rule", body.rule_id), "decision": Decision.ACCEPTED,
                     "reason": "", "field": "", "recipients": list(body.recipients), "env": env_of(raw).hex(),
                     "at": int(enqueued), "bundle": before.get("bundle", ""), "rebinds": int(old)}
            index = batch.append(bound, viewers_of(sender, list(body.recipients)), at_ms)[0]
            await tx.execute("UPDATE queue SET leaf_index = ? WHERE recipient = ? AND seq = ?", (index, recipient, seq))
        return len(rows)

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
