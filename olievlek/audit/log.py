"""The broker's audit log: batches of leaves, appended in the caller's transaction, one signed head each.

Every append happens inside the caller's transaction (the same one that
queues an envelope), so a crash leaves both or neither. A *batch* collects the
leaves of one group commit in memory; ``write_txn`` stores leaves, completed
subtree nodes and one signed tree head for the whole batch; ``commit`` makes
the batch the new in-memory state only after the transaction committed.

A leaf is RFC 9162's leaf hash of SHA-256(context ‖ random salt ‖ canonical
metadata). The metadata lives in ``audit_events`` next to the tree; erasing it
(``meta = NULL``) keeps the tree verifiable.

Its tables and statements are ``olievlek/storage/audit.py`` (on either engine).
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

from olievlek.storage.audit import AuditStorage
from olievlek.storage.sqlite import Database, Txn
from olievlek.v1 import broker_pb2

from . import checkpoint, tree
from .checkpoint import Checkpoint
from .hashing import leaf_hash

LEAF_CONTEXT = b"olievlek/v1/audit-leaf\x00"
HEAD_CONTEXT = b"olievlek/v1/tree-head\x00"

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


class AuditLog:
    """The broker's Merkle log: appends in transactions, proofs from stored nodes."""

    def __init__(self, db: Database, key: ed25519.Ed25519PrivateKey, origin: str) -> None:
        self.storage = AuditStorage(db)
        self._key = key
        self.origin = origin  # the checkpoints' origin line and the log signature's key name
        self.size = 0
        self._frontier: dict[tree.NodeId, bytes] = {}

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._key.public_key()

    async def load(self) -> None:
        self.size = await self.storage.size()
        ids = tree.range_nodes(0, self.size)
        self._frontier = dict(zip(ids, await self.nodes(ids), strict=True))

    def begin(self) -> Batch:
        """A batch on the log as this process last committed it (a single writer: benches and tests)."""
        return Batch(self.size, dict(self._frontier))

    async def begin_txn(self, tx: Txn) -> Batch:
        """A batch on the log as stored, first thing in its transaction: this transaction becomes the log's only
        writer (the sequencer lock - ``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite)
        until it ends, and the size is read under that lock. When another writer (a second broker instance on
        the same database) appended since this one's last batch, the frontier is read again in the transaction;
        memory is trusted for nothing another instance can change."""
        stored = await self.storage.lock_and_size(tx)
        if stored == self.size:
            return self.begin()
        ids = tree.range_nodes(0, stored)
        return Batch(stored, dict(zip(ids, await self.storage.nodes_txn(tx, ids), strict=True)))

    async def write_txn(self, tx: Txn, batch: Batch, bundle_digest: str, now_ms: int) -> broker_pb2.TreeHead:
        """Store the batch's leaves and sign a head for its size. A batch without leaves signs nothing new:
        a second head of the same size (another timestamp) would look like a fork to every witness."""
        if not batch.events:
            signed = await self.storage.head_txn(tx, batch.size)
            if signed is not None:
                return signed
        await self.storage.append_txn(tx, batch.events, batch.visibility, batch.nodes.items())
        root = tree.fold([batch._get(n) for n in tree.range_nodes(0, batch.size)])
        cp = Checkpoint(self.origin, batch.size, root, bytes.fromhex(bundle_digest), now_ms)
        head = broker_pb2.TreeHead(size=batch.size, root=root, timestamp_ms=now_ms, bundle_digest=cp.bundle_digest,
                                   checkpoint=checkpoint.sign(cp, self._key).encode())
        await self.storage.store_head_txn(tx, head)
        return head

    def commit(self, batch: Batch) -> None:
        self.size = batch.size
        self._frontier = {n: batch._get(n) for n in tree.range_nodes(0, batch.size)}

    async def nodes(self, ids: Sequence[tree.NodeId]) -> list[bytes]:
        return await self.storage.nodes(ids)

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
        return await self.storage.events(indices)

    async def consistency(self, m: int, n: int) -> list[bytes]:
        ranges = tree.consistency_ranges(m, n)
        return tree.fold_ranges(await self.nodes(_flat(ranges)), ranges)

    async def head(self, size: int | None = None) -> broker_pb2.TreeHead | None:
        return await self.storage.head(size)

    async def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        return await self.storage.leaf_hashes(start, end)

    async def visible_events(self, viewer: str | None, start: int,
                             limit: int) -> list[tuple[int, bytes, bytes | None, int]]:
        """Up to ``limit`` events from ``start`` that ``viewer`` (an exact identity "kind/id") may read, or
        every event when ``viewer`` is None (a data-protection officer), in order:
        (index, salt, metadata or None once erased, when)."""
        return await self.storage.visible_events(viewer, start, limit)

    async def erase_metadata_before(self, cutoff_ms: int) -> int:
        """Metadata retention: drop the metadata of events older than ``cutoff_ms``; leaves and the
        tree stay, so every head still verifies. Returns how many events were erased."""
        return await self.storage.erase_metadata_before(cutoff_ms)

    async def event(self, index: int) -> tuple[bytes, bytes | None]:
        found = (await self.storage.events([index])).get(index)
        if found is None:
            raise KeyError(index)
        return found


def _flat(ranges: list[tuple[int, int]]) -> list[tree.NodeId]:
    return [n for a, b in ranges for n in tree.range_nodes(a, b)]
