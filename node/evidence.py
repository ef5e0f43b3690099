"""What a node keeps to hold its broker to the log: storage only (tables of the node's own file).

- ``proven_leaves``: the leaf that proved the broker's answer to an outbox row, with the ``env`` it bound.
  One leaf never proves two rows; a later notice about the row (expired, rejected) is checked against
  the ``env``, which outlives the envelope (some kinds drop their bytes once answered).
- ``aggregated_refusals`` / ``refusal_intervals``: refusals the broker counted into an interval's one
  aggregated leaf, each with its place in the chain. Provisional until that leaf is proven and its chain
  recomputed from these ``env``s.
- ``finality``: which outbox and inbox outcomes a quorum-cosigned head covers (final), which still wait for
  one (provisional), and which were not covered in time (unconfirmed).
- ``delivery_seqs`` / ``delivery_held`` / ``delivery_gaps`` / ``expired_seqs``: per log origin, the highest
  delivery sequence number handled, the ones seen but left unacknowledged (redelivered later), the runs
  of numbers the stream skipped, and the proven expiries of deliveries to this node that explain them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from olievlek.envelope import env_of
from olievlek.statuses import Confirmation, RefusalProof
from olievlek.storage.sqlite import Database, Txn

# Its tables: node/migrations/sqlite/0002_evidence.sql and 0003_finality_roles.sql.


@dataclass(frozen=True, slots=True)
class Gap:
    origin: str
    first: int
    last: int
    seen_ms: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


async def leaf_owners(db: Database, leaf_indices: list[int]) -> dict[int, int]:
    """The outbox rows these leaves already proved (leaf index -> outbox id), for those that proved one."""
    if not leaf_indices:
        return {}
    marks = ",".join("?" * len(leaf_indices))
    rows = await db.fetchall(f"SELECT leaf_index, outbox_id FROM proven_leaves WHERE leaf_index IN ({marks})",  # noqa: S608
                             leaf_indices)
    return {int(r[0]): int(r[1]) for r in rows}


async def keep_proven_txn(tx: Txn, leaf_index: int, outbox_id: int, env: bytes) -> None:
    await tx.execute("INSERT OR IGNORE INTO proven_leaves (leaf_index, outbox_id, env) VALUES (?, ?, ?)",
                     (leaf_index, outbox_id, env))


async def keep_aggregated_txn(tx: Txn, interval_start_ms: int, position: int, env: bytes,
                              outbox_id: int | None) -> None:
    await tx.execute("INSERT OR IGNORE INTO refusal_intervals (interval_start_ms, state) VALUES (?, ?)",
                     (interval_start_ms, RefusalProof.PROVISIONAL))
    await tx.execute("INSERT OR IGNORE INTO aggregated_refusals (interval_start_ms, position, env, outbox_id)"
                     " VALUES (?, ?, ?, ?)", (interval_start_ms, position, env, outbox_id))


async def sent_env(db: Database, idem_key: str, recipient: str) -> bytes | None:
    """The ``env`` of what this node sent under a key to a recipient: the one its receipt proved, else its
    envelope's (None when it sent no such thing)."""
    row = await db.fetchone(
        "SELECT o.envelope, p.env FROM outbox o LEFT JOIN proven_leaves p ON p.outbox_id = o.id"
        " WHERE o.idem_key = ? AND o.recipient = ?", (idem_key, recipient))
    if row is None:
        return None
    if row[1] is not None:
        return bytes(row[1])
    # A row answered before envs were kept still has its envelope (unless its kind drops the bytes).
    return env_of(bytes(row[0])) if row[0] is not None else None


async def provisional_intervals(db: Database) -> list[tuple[int, bool]]:
    """(interval start, alarm raised) of intervals whose leaf is not proven yet."""
    rows = await db.fetchall("SELECT interval_start_ms, alarmed FROM refusal_intervals WHERE state = ?"
                             " ORDER BY interval_start_ms", (RefusalProof.PROVISIONAL,))
    return [(int(r[0]), bool(r[1])) for r in rows]


async def interval_envs(db: Database, interval_start_ms: int) -> list[tuple[int, bytes]]:
    rows = await db.fetchall("SELECT position, env FROM aggregated_refusals WHERE interval_start_ms = ?"
                             " ORDER BY position", (interval_start_ms,))
    return [(int(r[0]), bytes(r[1])) for r in rows]


async def interval_state(db: Database, interval_start_ms: int) -> RefusalProof | None:
    row = await db.fetchone("SELECT state FROM refusal_intervals WHERE interval_start_ms = ?", (interval_start_ms,))
    return RefusalProof(row[0]) if row else None


async def settle_interval_txn(tx: Txn, interval_start_ms: int, state: RefusalProof, leaf_index: int | None) -> None:
    await tx.execute("UPDATE refusal_intervals SET state = ?, leaf_index = ? WHERE interval_start_ms = ?",
                     (state, leaf_index, interval_start_ms))


async def mark_interval_alarmed_txn(tx: Txn, interval_start_ms: int) -> None:
    await tx.execute("UPDATE refusal_intervals SET alarmed = 1 WHERE interval_start_ms = ?", (interval_start_ms,))


async def delivery_seqs(db: Database, origin: str) -> tuple[int | None, set[int]]:
    """(highest sequence number handled, or None before the first; numbers seen but not acknowledged)."""
    row = await db.fetchone("SELECT top FROM delivery_seqs WHERE origin = ?", (origin,))
    held = await db.fetchall("SELECT seq FROM delivery_held WHERE origin = ?", (origin,))
    return (int(row[0]) if row else None), {int(r[0]) for r in held}


async def keep_delivery_seqs_txn(tx: Txn, origin: str, top: int, held: set[int], released: set[int],
                                 gaps: list[tuple[int, int]], now_ms: int) -> None:
    await tx.execute("INSERT INTO delivery_seqs (origin, top) VALUES (?, ?) ON CONFLICT (origin) DO UPDATE SET"
                     " top = MAX(top, excluded.top)", (origin, top))
    await tx.executemany("INSERT OR IGNORE INTO delivery_held (origin, seq) VALUES (?, ?)",
                         [(origin, s) for s in held])
    await tx.executemany("DELETE FROM delivery_held WHERE origin = ? AND seq = ?", [(origin, s) for s in released])
    await tx.executemany("INSERT OR IGNORE INTO delivery_gaps (origin, first_seq, last_seq, seen_ms)"
                         " VALUES (?, ?, ?, ?)", [(origin, a, b, now_ms) for a, b in gaps])


async def open_gaps(db: Database, origin: str) -> list[Gap]:
    rows = await db.fetchall("SELECT first_seq, last_seq, seen_ms FROM delivery_gaps WHERE origin = ? AND settled = 0"
                             " ORDER BY first_seq", (origin,))
    return [Gap(origin, int(r[0]), int(r[1]), int(r[2])) for r in rows]


async def explained_in(db: Database, gap: Gap) -> int:
    """How many numbers of a gap a proven expiry explains."""
    row = await db.fetchone("SELECT COUNT(*) FROM expired_seqs WHERE origin = ? AND seq BETWEEN ? AND ?",
                            (gap.origin, gap.first, gap.last))
    return int(row[0]) if row else 0


async def keep_expired_txn(tx: Txn, origin: str, seq: int, leaf_index: int) -> None:
    await tx.execute("INSERT OR IGNORE INTO expired_seqs (origin, seq, leaf_index) VALUES (?, ?, ?)",
                     (origin, seq, leaf_index))


async def settle_gap_txn(tx: Txn, gap: Gap) -> None:
    await tx.execute("UPDATE delivery_gaps SET settled = 1 WHERE origin = ? AND first_seq = ?", (gap.origin, gap.first))


async def watch_cursor(db: Database) -> int:
    """Where the log watch continues reading the events this node may see."""
    row = await db.fetchone("SELECT value FROM node_meta WHERE name = 'log_watch_from'")
    return int(bytes(row[0]).decode()) if row else 0


async def set_watch_cursor_txn(tx: Txn, index: int) -> None:
    await tx.execute("INSERT INTO node_meta (name, value) VALUES ('log_watch_from', ?) ON CONFLICT (name) DO UPDATE"
                     " SET value = excluded.value", (str(index).encode(),))


class Item(StrEnum):
    """What a finality row is about."""

    OUTBOX = "outbox"
    INBOX = "inbox"


async def keep_finality_txn(tx: Txn, item: Item, row_id: int, leaf_index: int | None, now_ms: int,
                            at_once: bool) -> None:
    """A new outcome of a row, resting on a leaf: provisional (final at once when no witness quorum applies)."""
    state = Confirmation.FINAL if at_once else Confirmation.PROVISIONAL
    await tx.execute("INSERT OR REPLACE INTO finality (item, row_id, leaf_index, since_ms, state)"
                     " VALUES (?, ?, ?, ?, ?)", (item, row_id, leaf_index, now_ms, state))


async def place_interval_txn(tx: Txn, interval_start_ms: int, leaf_index: int) -> None:
    """The aggregated refusals of an interval rest on its proven leaf from now on."""
    await tx.execute("UPDATE finality SET leaf_index = ? WHERE item = 'outbox' AND leaf_index IS NULL AND row_id IN"
                     " (SELECT outbox_id FROM aggregated_refusals WHERE interval_start_ms = ?)",
                     (leaf_index, interval_start_ms))


async def finalise_txn(tx: Txn, covered_size: int) -> int:
    """Outcomes whose leaf a quorum-cosigned head of ``covered_size`` covers become final; returns how many."""
    await tx.execute("UPDATE finality SET state = ? WHERE state != ? AND leaf_index IS NOT NULL AND leaf_index < ?",
                     (Confirmation.FINAL, Confirmation.FINAL, covered_size))
    row = await tx.fetchone("SELECT changes()")
    return int(row[0]) if row else 0


async def unconfirm_txn(tx: Txn, before_ms: int) -> int:
    """Provisional outcomes older than ``before_ms`` become unconfirmed; returns how many."""
    await tx.execute("UPDATE finality SET state = ? WHERE state = ? AND since_ms < ?",
                     (Confirmation.UNCONFIRMED, Confirmation.PROVISIONAL, before_ms))
    row = await tx.fetchone("SELECT changes()")
    return int(row[0]) if row else 0


async def confirmations(db: Database, item: Item) -> dict[int, Confirmation]:
    """Row id -> confirmation of the rows of one kind that have an outcome."""
    rows = await db.fetchall("SELECT row_id, state FROM finality WHERE item = ?", (item,))
    return {int(r[0]): Confirmation(r[1]) for r in rows}


async def confirmation(db: Database, item: Item, row_id: int) -> Confirmation | None:
    row = await db.fetchone("SELECT state FROM finality WHERE item = ? AND row_id = ?", (item, row_id))
    return Confirmation(row[0]) if row else None
