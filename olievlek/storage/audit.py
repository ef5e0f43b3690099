"""The audit log's tables, on SQLite or PostgreSQL: leaves' metadata, who may read them, the tree's nodes, and
the signed heads (the log itself, its batches and its signing are ``olievlek/audit/log.py``).

Who may read an event is decided by exact identity: each event lists its *viewers* ("kind/id", e.g.
``municipality/gent``) in ``audit_visibility``, and a read joins on the caller's identity by equality - never by
a pattern (an org id may contain ``_``, a LIKE wildcard; security advisory 2026-12-01).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from olievlek.v1 import broker_pb2

from .sqlite import Database, Txn

NodeId = tuple[int, int]  # (level, index) of a complete subtree
EventRow = tuple[int, bytes, bytes, str, int]  # (index, salt, canonical metadata, viewers joined by ",", when)

# The tables as plain statements, for benches and tests that hold only a log (the stores' migrations create them).
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS tree_nodes (
        level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS audit_events (
        idx INTEGER PRIMARY KEY, salt BLOB NOT NULL, meta BLOB, orgs TEXT NOT NULL, at_ms INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS audit_visibility (
        viewer TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (viewer, idx)) WITHOUT ROWID""",
    # checkpoint: the signed C2SP checkpoint note; NULL for heads signed before checkpoints (their
    # signature still verifies, and the first checkpoint is consistent with them: the tree is the same).
    """CREATE TABLE IF NOT EXISTS tree_heads (
        size INTEGER PRIMARY KEY, root BLOB NOT NULL, timestamp_ms INTEGER NOT NULL, bundle_digest BLOB NOT NULL,
        signature BLOB NOT NULL, checkpoint BLOB)""",
]

LOG_LOCK = 0x6F6C6C67  # "ollg": the advisory lock that makes one transaction at a time the log's writer
_HEAD_SELECT = "SELECT size, root, timestamp_ms, bundle_digest, signature, checkpoint FROM tree_heads "
_SIZE = "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_events"


def _head(row: tuple[Any, ...]) -> broker_pb2.TreeHead:
    return broker_pb2.TreeHead(size=int(row[0]), root=bytes(row[1]), timestamp_ms=int(row[2]),
                               bundle_digest=bytes(row[3]), signature=bytes(row[4]),
                               checkpoint=bytes(row[5]) if row[5] is not None else b"")


class AuditStorage:
    """Reads of the log (outside any transaction) and the writes of one batch (inside the caller's)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- inside the batch's transaction -------------------------------------
    async def lock_and_size(self, tx: Txn) -> int:
        """Make this transaction the log's only writer, then read how many leaves the log holds: a size read
        under the lock, never one trusted from memory (another writer may have appended since)."""
        if self._db.engine != "sqlite":  # SQLite's BEGIN IMMEDIATE already makes this transaction the only writer
            await tx.execute(f"SELECT pg_advisory_xact_lock({LOG_LOCK})")
        row = await tx.fetchone(_SIZE)
        return int(row[0]) if row else 0

    @staticmethod
    async def head_txn(tx: Txn, size: int) -> broker_pb2.TreeHead | None:
        row = await tx.fetchone(_HEAD_SELECT + "WHERE size = ?", (size,))
        return _head(row) if row is not None else None

    @staticmethod
    async def append_txn(tx: Txn, events: Sequence[EventRow], visibility: Sequence[tuple[str, int]],
                         nodes: Iterable[tuple[NodeId, bytes]]) -> None:
        await tx.executemany("INSERT INTO audit_events (idx, salt, meta, orgs, at_ms) VALUES (?, ?, ?, ?, ?)", events)
        await tx.executemany("INSERT INTO audit_visibility (viewer, idx) VALUES (?, ?)", visibility)
        await tx.executemany("INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)",
                             [(level, idx, h) for (level, idx), h in nodes])

    @staticmethod
    async def store_head_txn(tx: Txn, head: broker_pb2.TreeHead) -> None:
        await tx.execute(
            "INSERT INTO tree_heads (size, root, timestamp_ms, bundle_digest, signature, checkpoint)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (size) DO UPDATE SET root = excluded.root,"
            " timestamp_ms = excluded.timestamp_ms, bundle_digest = excluded.bundle_digest,"
            " signature = excluded.signature, checkpoint = excluded.checkpoint",
            (head.size, head.root, head.timestamp_ms, head.bundle_digest, head.signature, head.checkpoint))

    # -- reads -----------------------------------------------------------------
    async def size(self) -> int:
        row = await self._db.fetchone(_SIZE)
        return int(row[0]) if row else 0

    async def nodes(self, ids: Sequence[NodeId]) -> list[bytes]:
        """The hashes of ``ids``, in their order (each must be stored)."""
        return await self._nodes(self._db.fetchall, ids)

    async def nodes_txn(self, tx: Txn, ids: Sequence[NodeId]) -> list[bytes]:
        """``nodes``, read in the caller's transaction (under the writer lock)."""
        return await self._nodes(tx.fetchall, ids)

    @staticmethod
    async def _nodes(fetchall: Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]],
                     ids: Sequence[NodeId]) -> list[bytes]:
        if not ids:
            return []
        by_level: dict[int, list[int]] = {}
        for level, idx in set(ids):
            by_level.setdefault(level, []).append(idx)
        # One statement; per level "level = ? AND idx IN (...)" so SQLite uses the primary key.
        parts, params = [], []
        for level, idxs in by_level.items():
            marks = ",".join("?" * len(idxs))
            parts.append(f"SELECT level, idx, hash FROM tree_nodes WHERE level = ? AND idx IN ({marks})")  # noqa: S608
            params += [level, *idxs]
        rows = await fetchall(" UNION ALL ".join(parts), params)
        found = {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}
        return [found[i] for i in ids]

    async def events(self, indices: Sequence[int]) -> dict[int, tuple[bytes, bytes | None]]:
        """(salt, metadata or None once erased) of each index, in one read."""
        if not indices:
            return {}
        marks = ",".join("?" * len(indices))
        rows = await self._db.fetchall(f"SELECT idx, salt, meta FROM audit_events WHERE idx IN ({marks})",  # noqa: S608
                                       list(indices))
        return {int(r[0]): (bytes(r[1]), bytes(r[2]) if r[2] is not None else None) for r in rows}

    async def head(self, size: int | None = None) -> broker_pb2.TreeHead | None:
        """The head of ``size``, or the latest one."""
        row = await (self._db.fetchone(_HEAD_SELECT + "WHERE size = ?", (size,)) if size is not None
                     else self._db.fetchone(_HEAD_SELECT + "ORDER BY size DESC LIMIT 1"))
        return _head(row) if row is not None else None

    async def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = await self._db.fetchall(
            "SELECT hash FROM tree_nodes WHERE level = 0 AND idx >= ? AND idx < ? ORDER BY idx", (start, end))
        return [bytes(r[0]) for r in rows]

    async def visible_events(self, viewer: str | None, start: int,
                             limit: int) -> list[tuple[int, bytes, bytes | None, int]]:
        """Up to ``limit`` events from ``start`` that ``viewer`` (an exact identity "kind/id") may read, or
        every event when ``viewer`` is None (a data-protection officer), in order:
        (index, salt, metadata or None once erased, when)."""
        if viewer is None:
            rows = await self._db.fetchall(
                "SELECT idx, salt, meta, at_ms FROM audit_events WHERE idx >= ? ORDER BY idx LIMIT ?", (start, limit))
        else:
            rows = await self._db.fetchall(
                "SELECT e.idx, e.salt, e.meta, e.at_ms FROM audit_visibility v JOIN audit_events e ON e.idx = v.idx"
                " WHERE v.viewer = ? AND v.idx >= ? ORDER BY v.idx LIMIT ?", (viewer, start, limit))
        return [(int(r[0]), bytes(r[1]), bytes(r[2]) if r[2] is not None else None, int(r[3])) for r in rows]

    async def erase_metadata_before(self, cutoff_ms: int) -> int:
        """Drop the metadata of events older than ``cutoff_ms`` (leaves and nodes stay); returns how many."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone("SELECT COUNT(*) FROM audit_events WHERE at_ms < ? AND meta IS NOT NULL",
                                    (cutoff_ms,))
            await tx.execute("UPDATE audit_events SET meta = NULL WHERE at_ms < ? AND meta IS NOT NULL", (cutoff_ms,))
        return int(row[0]) if row else 0
