"""The audit log inside the broker's single SQLite database.

Every append happens inside the caller's transaction (the same one that
queues an envelope), so a crash leaves both or neither. A *batch* collects the
leaves of one group commit in memory; ``write_txn`` stores leaves, completed
subtree nodes and one signed tree head for the whole batch; ``commit`` makes
the batch the new in-memory state only after the transaction committed.

A leaf is RFC 9162's leaf hash of SHA-256(context ‖ random salt ‖ canonical
metadata). The metadata lives in ``audit_events`` next to the tree; erasing it
(``meta = NULL``) keeps the tree verifiable.

Who may read an event is decided by exact identity: each event lists its *viewers*
("kind/id", e.g. ``municipality/gent``) in ``audit_visibility``, and a read joins on
the caller's identity by equality - never by a pattern (an org id may contain ``_``,
a LIKE wildcard; security advisory 2026-12-01).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek.store import Database, Txn
from olievlek.v1 import broker_pb2

from . import checkpoint, tree
from .checkpoint import Checkpoint
from .hashing import leaf_hash

LEAF_CONTEXT = b"olievlek/v1/audit-leaf\x00"
HEAD_CONTEXT = b"olievlek/v1/tree-head\x00"

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


# One encoder for all leaves: json.dumps with non-default options would build a new one per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical(meta: dict[str, Any]) -> bytes:
    return _CANONICAL.encode(meta).encode()


def leaf_of(salt: bytes, meta: bytes) -> bytes:
    return leaf_hash(hashlib.sha256(LEAF_CONTEXT + salt + meta).digest())


def leaf_hashes_of(events: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
    """``leaf_of`` for many (salt, metadata) pairs at once: the full-verification hot loop."""
    sha, ctx = hashlib.sha256, LEAF_CONTEXT
    return [sha(b"\x00" + sha(ctx + salt + meta).digest()).digest() for salt, meta in events]


def head_message(head: broker_pb2.TreeHead) -> bytes:
    """What the log key signed in heads from before checkpoints (kept to verify them)."""
    return HEAD_CONTEXT + struct.pack(">QQ", head.size, head.timestamp_ms) + head.root + head.bundle_digest


@dataclass
class Batch:
    """Leaves of one group commit, not yet written."""

    size: int
    frontier: dict[tree.NodeId, bytes]
    nodes: dict[tree.NodeId, bytes] = field(default_factory=dict)
    events: list[tuple[int, bytes, bytes, str, int]] = field(default_factory=list)
    visibility: list[tuple[str, int]] = field(default_factory=list)

    def _get(self, node: tree.NodeId) -> bytes:
        h = self.nodes.get(node)
        return h if h is not None else self.frontier[node]

    def append(self, meta: dict[str, Any], viewers: Sequence[str], at_ms: int) -> tuple[int, bytes, bytes]:
        """Add a leaf readable by ``viewers`` (full identities "kind/id"; the federation's data-protection
        officers read every leaf); returns (index, salt, canonical metadata)."""
        index, salt, data = self.size, os.urandom(16), canonical(meta)
        for node, h in tree.new_nodes(index, leaf_of(salt, data), self._get):
            self.nodes[node] = h
        unique = sorted(set(viewers))
        self.events.append((index, salt, data, ",".join(unique), at_ms))
        self.visibility += [(v, index) for v in unique]
        self.size += 1
        return index, salt, data


LOG_LOCK = 0x6F6C6C67  # "ollg": the advisory lock that makes one transaction at a time the log's writer


class StaleFrontier(Exception):
    """A batch built on a log that is no longer the stored one (another writer appended)."""


class AuditLog:
    """The broker's Merkle log: appends in transactions, proofs from stored nodes."""

    def __init__(self, db: Database, key: ed25519.Ed25519PrivateKey, origin: str) -> None:
        self._db = db
        self._key = key
        self.origin = origin  # the checkpoints' origin line and the log signature's key name
        self.size = 0
        self._frontier: dict[tree.NodeId, bytes] = {}

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._key.public_key()

    async def load(self) -> None:
        row = await self._db.fetchone("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_events")
        self.size = int(row[0]) if row else 0
        ids = tree.range_nodes(0, self.size)
        self._frontier = dict(zip(ids, await self.nodes(ids), strict=True))

    def begin(self) -> Batch:
        return Batch(self.size, dict(self._frontier))

    async def write_txn(self, tx: Txn, batch: Batch, bundle_digest: str, now_ms: int) -> broker_pb2.TreeHead:
        """Store the batch's leaves and sign a head for its size. A batch without leaves signs nothing new:
        a second head of the same size (another timestamp) would look like a fork to every witness."""
        await self._check_frontier(tx, batch.events[0][0] if batch.events else batch.size)
        if not batch.events:
            row = await tx.fetchone(_HEAD_SELECT + "WHERE size = ?", (batch.size,))
            if row is not None:
                return _head(row)
        await tx.executemany("INSERT INTO audit_events (idx, salt, meta, orgs, at_ms) VALUES (?, ?, ?, ?, ?)",
                             batch.events)
        await tx.executemany("INSERT INTO audit_visibility (viewer, idx) VALUES (?, ?)", batch.visibility)
        await tx.executemany("INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)",
                             [(level, idx, h) for (level, idx), h in batch.nodes.items()])
        root = tree.fold([batch._get(n) for n in tree.range_nodes(0, batch.size)])
        cp = Checkpoint(self.origin, batch.size, root, bytes.fromhex(bundle_digest), now_ms)
        head = broker_pb2.TreeHead(size=batch.size, root=root, timestamp_ms=now_ms, bundle_digest=cp.bundle_digest,
                                   checkpoint=checkpoint.sign(cp, self._key).encode())
        await tx.execute(
            "INSERT INTO tree_heads (size, root, timestamp_ms, bundle_digest, signature, checkpoint)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (size) DO UPDATE SET root = excluded.root,"
            " timestamp_ms = excluded.timestamp_ms, bundle_digest = excluded.bundle_digest,"
            " signature = excluded.signature, checkpoint = excluded.checkpoint",
            (head.size, head.root, head.timestamp_ms, head.bundle_digest, b"", head.checkpoint))
        return head

    async def _check_frontier(self, tx: Txn, start: int) -> None:
        """The batch starts where the stored log ends - read under the single-writer lock, never trusted from
        memory: another writer (a second broker on the same PostgreSQL) may have appended since.

        Raises:
            StaleFrontier: the log grew (or shrank) under us; the batch fails and its callers retry.
        """
        if self._db.engine != "sqlite":  # SQLite's BEGIN IMMEDIATE already makes this transaction the only writer
            await tx.execute(f"SELECT pg_advisory_xact_lock({LOG_LOCK})")
        row = await tx.fetchone("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_events")
        stored = int(row[0]) if row else 0
        if stored != start:
            raise StaleFrontier(f"the log holds {stored} leaves, this batch would start at {start}")

    def commit(self, batch: Batch) -> None:
        self.size = batch.size
        self._frontier = {n: batch._get(n) for n in tree.range_nodes(0, batch.size)}

    async def nodes(self, ids: Sequence[tree.NodeId]) -> list[bytes]:
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
        rows = await self._db.fetchall(" UNION ALL ".join(parts), params)
        found = {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}
        return [found[i] for i in ids]

    async def inclusion(self, index: int, size: int) -> list[bytes]:
        return tree.fold_ranges(await self.nodes(_flat(tree.inclusion_ranges(index, size))),
                                            tree.inclusion_ranges(index, size))

    async def inclusions(self, indices: Sequence[int], size: int) -> list[list[bytes]]:
        """``inclusion`` for many leaves to one size: one read for all their nodes (a delivery batch)."""
        ranges = [tree.inclusion_ranges(i, size) for i in indices]
        found = dict(zip((ids := sorted({n for r in ranges for n in _flat(r)})), await self.nodes(ids), strict=True))
        return [tree.fold_ranges([found[n] for n in _flat(r)], r) for r in ranges]

    async def events(self, indices: Sequence[int]) -> dict[int, tuple[bytes, bytes | None]]:
        """``event`` for many indices in one read."""
        if not indices:
            return {}
        marks = ",".join("?" * len(indices))
        rows = await self._db.fetchall(f"SELECT idx, salt, meta FROM audit_events WHERE idx IN ({marks})",  # noqa: S608
                                       list(indices))
        return {int(r[0]): (bytes(r[1]), bytes(r[2]) if r[2] is not None else None) for r in rows}

    async def consistency(self, m: int, n: int) -> list[bytes]:
        ranges = tree.consistency_ranges(m, n)
        return tree.fold_ranges(await self.nodes(_flat(ranges)), ranges)

    async def head(self, size: int | None = None) -> broker_pb2.TreeHead | None:
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
        """Metadata retention: drop the metadata of events older than ``cutoff_ms``; leaves and the
        tree stay, so every head still verifies. Returns how many events were erased."""
        async with self._db.transaction() as tx:
            row = await tx.fetchone("SELECT COUNT(*) FROM audit_events WHERE at_ms < ? AND meta IS NOT NULL",
                                    (cutoff_ms,))
            await tx.execute("UPDATE audit_events SET meta = NULL WHERE at_ms < ? AND meta IS NOT NULL", (cutoff_ms,))
        return int(row[0]) if row else 0

    async def event(self, index: int) -> tuple[bytes, bytes | None]:
        row = await self._db.fetchone("SELECT salt, meta FROM audit_events WHERE idx = ?", (index,))
        if row is None:
            raise KeyError(index)
        return bytes(row[0]), (bytes(row[1]) if row[1] is not None else None)


_HEAD_SELECT = "SELECT size, root, timestamp_ms, bundle_digest, signature, checkpoint FROM tree_heads "


def _head(row: tuple[Any, ...]) -> broker_pb2.TreeHead:
    return broker_pb2.TreeHead(size=int(row[0]), root=bytes(row[1]), timestamp_ms=int(row[2]),
                               bundle_digest=bytes(row[3]), signature=bytes(row[4]),
                               checkpoint=bytes(row[5]) if row[5] is not None else b"")


def _flat(ranges: list[tuple[int, int]]) -> list[tree.NodeId]:
    return [n for a, b in ranges for n in tree.range_nodes(a, b)]
