"""Audit log: durable appends per second with group commit, proof time at 1M leaves, full verification.

Usage: python bench/audit_bench.py [--leaves N] [--appends N] [--seed S]

1. Durable appends: N leaves submitted by --callers concurrent callers through the broker's
   group committer (WAL, synchronous=FULL: one fsync per batch), next to one
   transaction per leaf measured in the same run.
2. Proof generation: inclusion and consistency proofs at the full size, read from the
   stored subtree nodes (one SQL query per proof).
3. Full verification: recompute every leaf hash from (salt, metadata) and the root,
   as a ratio to the raw cost of one SHA-256 call per leaf and per interior node over
   the same data, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import tempfile
import time
from pathlib import Path

from common import parse_args, report
from cryptography.hazmat.primitives.asymmetric import ed25519
from olievlek.broker.committer import Committer
from olievlek.broker.storage.operations import AppendLeaves, Leaf
from olievlek.broker.storage.store import BrokerStore

from olievlek.audit import tree
from olievlek.audit.log import AuditLog, leaf_hashes_of, leaf_of
from olievlek.audit.verify import full_root, verify_consistency, verify_inclusion
from olievlek.storage.audit import SCHEMA
from olievlek.storage.sqlite import Database

META = {"event": "send", "sender": "gent", "kind": "alert.move", "rule": "move-alert", "decision": "accepted"}


async def open_log(path: Path) -> tuple[Database, AuditLog, Committer]:
    db = await Database.open(path, SCHEMA)
    log = AuditLog(db, ed25519.Ed25519PrivateKey.generate(), "olievlek.bench/audit/1")
    await log.load()
    committer = Committer(BrokerStore(db), log, lambda: "0" * 64)
    committer.start()
    return db, log, committer


async def appends(path: Path, n: int, callers: int = 256) -> tuple[float, int]:
    db, _log, committer = await open_log(path)

    one = AppendLeaves((Leaf(META, ("gent",), 0),))

    async def worker(k: int) -> None:
        for _ in range(k):
            await committer.submit(one)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(n // callers) for _ in range(callers)))
    rate = (n // callers) * callers / (time.perf_counter() - t0)
    batches = committer.batches
    await committer.stop()
    await db.close()
    return rate, batches


async def single_txn_appends(path: Path, n: int) -> float:
    db = await Database.open(path, SCHEMA)
    log = AuditLog(db, ed25519.Ed25519PrivateKey.generate(), "olievlek.bench/audit/1")
    await log.load()
    t0 = time.perf_counter()
    for _ in range(n):
        async with db.transaction() as tx:
            batch = log.begin()
            batch.append(META, ("gent",), 0)
            await log.write_txn(tx, batch, "0" * 64, 0)
        log.commit(batch)
    rate = n / (time.perf_counter() - t0)
    await db.close()
    return rate


async def build(path: Path, n: int) -> tuple[Database, AuditLog, Committer]:
    db, log, committer = await open_log(path)

    chunk = AppendLeaves(tuple(Leaf(META, ("gent",), 0) for _ in range(1000)))

    for _ in range(n // 1000):
        await committer.submit(chunk)
    return db, log, committer


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--appends", type=int, default=102_400)
    ap.add_argument("--callers", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--single-appends", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=1000)
    args = parse_args(ap, {"leaves": 5000, "appends": 1024, "callers": 64, "single_appends": 100, "samples": 50})
    rng = random.Random(args.seed)
    print(f"seed {args.seed}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        grouped, batches = await appends(tmp / "a.sqlite", args.appends, args.callers)
        single = await single_txn_appends(tmp / "b.sqlite", args.single_appends)
        print(f"durable appends, group commit: {grouped:>10,.0f} leaves/s ({batches} batches, "
              f"{args.appends / batches:.0f} leaves per fsync)")
        print(f"durable appends, one txn each: {single:>10,.0f} leaves/s   group/single {grouped / single:.1f}x")

        t0 = time.perf_counter()
        db, log, committer = await build(tmp / "big.sqlite", args.leaves)
        print(f"built {log.size:,} leaves in {time.perf_counter() - t0:.1f} s")
        head = await log.head()
        assert head is not None and head.size == log.size
        n = log.size
        t0 = time.perf_counter()
        samples = args.samples
        for _ in range(samples):
            i = rng.randrange(n)
            p = await log.inclusion(i, n)
        incl_ms = (time.perf_counter() - t0) / samples * 1000
        salt, meta = await log.event(i)
        assert meta is not None
        verify_inclusion(leaf_of(salt, meta), i, n, p, head.root)
        t0 = time.perf_counter()
        for _ in range(samples):
            m = rng.randrange(1, n)
            c = await log.consistency(m, n)
        cons_ms = (time.perf_counter() - t0) / samples * 1000
        old = tree.fold(await log.nodes(tree.range_nodes(0, m)))
        verify_consistency(m, n, c, old, head.root)
        print(f"inclusion proof at {n:,} leaves:   {incl_ms:.3f} ms   (goal < 1 ms)")
        print(f"consistency proof at {n:,} leaves: {cons_ms:.3f} ms")

        rows = await db.fetchall("SELECT salt, meta FROM audit_events ORDER BY idx")
        await committer.stop()
        await db.close()
    data = [(bytes(s), bytes(m)) for s, m in rows]

    t0 = time.perf_counter()
    root = full_root(leaf_hashes_of(data))
    verify_s = time.perf_counter() - t0
    assert root == head.root, "full recomputation disagrees with the signed root"

    sha = hashlib.sha256
    node_input = b"\x01" + bytes(64)
    t0 = time.perf_counter()
    for s, m in data:
        sha(s + m).digest()
    for _ in range(len(data) - 1):
        sha(node_input).digest()
    raw_s = time.perf_counter() - t0
    # Our leaves are salted commitments: two SHA-256 per leaf (commitment, then RFC 9162 leaf hash),
    # so the ideal ratio is 1.5x, not 1x.
    print(f"full verification of {n:,} leaves: {verify_s:.2f} s; raw SHA-256 per leaf and node {raw_s:.2f} s; "
          f"ratio {verify_s / raw_s:.2f}x (goal <= 2x)")
    report("audit", args.smoke, leaves=n, grouped_per_s=round(grouped), single_per_s=round(single),
           group_over_single=round(grouped / single, 2), inclusion_ms=round(incl_ms, 4),
           consistency_ms=round(cons_ms, 4), verify_s=round(verify_s, 3), ratio=round(verify_s / raw_s, 3))


if __name__ == "__main__":
    asyncio.run(main())
