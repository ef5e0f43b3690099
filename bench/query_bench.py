"""Hit/no-hit query bench: batches of 1,000 pseudonyms against a directory of 1,000,000 entries.

End to end at the broker, pseudonymisation excluded: the liaison's client signs a query.hit envelope
and calls ``Query`` over mTLS on a broker in its own process, which verifies the signer and signature,
decides the policy, checks the file reference, the legal basis and the budget, reads the directory
once for the batch, checks coverage per row, encodes the fixed-width rows, appends the query's and the
holders' leaves in one group commit (fsync), and answers with the leaf's inclusion proof.

Then the same queries with the broker's store on a throwaway PostgreSQL cluster holding the same entries
(``--no-postgresql`` skips it): the median end to end, and its ratio to SQLite's (goal: at most 2x).

The floor, in the same run on the same file: a plain indexed SQLite lookup of the same keys
(``SELECT ... WHERE pseudonym IN (...)`` on the directory's primary key) from this process. Half of each
batch are registered pseudonyms, half unknown; every entry carries two coverage flags. Goal: <= 1.5x.

    python bench/query_bench.py [--entries 1000000] [--batches 100] [--batch 1000] [--seed 20261129]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

from common import edit_bundle, parse_args, report, throwaway_postgres  # noqa: E402
from olievlek.broker.storage.store import BrokerStore  # noqa: E402
from olievlek.cli.federation import DEFAULT_BUNDLE, Federation, NodeSpec  # noqa: E402
from olievlek.node.broker_client import BrokerClient  # noqa: E402

from olievlek import wire  # noqa: E402
from olievlek.directory import Cover, covers_string  # noqa: E402
from olievlek.envelope import Signer, seal  # noqa: E402
from olievlek.identity import OrgKind  # noqa: E402
from olievlek.transport import TlsFiles  # noqa: E402
from olievlek.v1 import envelope_pb2, summary_pb2  # noqa: E402

HOLDERS = [("gent", "gent-livc"), ("antwerpen", "antwerpen-livc"), ("leuven", "leuven-livc"),
           ("mechelen", "mechelen-livc")]
FAR = 4_102_444_800_000  # 2100-01-01


def _bundle(workdir: Path) -> Path:
    """The default bundle with a liaison budget large enough for the bench."""

    def unlimited(bundle: dict[str, Any]) -> None:
        bundle["directory"]["query_budgets"]["federal_liaison"] = {"per_day": 100_000_000,
                                                                   "per_month": 1_000_000_000, "batch": 1000}

    return edit_bundle(DEFAULT_BUNDLE, workdir / "bundle-src", unlimited)


def _fill(db: Path, entries: int, rng: random.Random) -> list[bytes]:
    """``entries`` directory rows (bulk, one transaction); returns their pseudonyms."""
    asyncio.run(_create_schema(db))
    covers = covers_string([Cover("federal_liaison", "hit_no_hit_check", "hit-query", FAR),
                            Cover("justice_house", "hit_no_hit_check", "hit-query", FAR)])
    keys = [bytes([1]) + rng.randbytes(31) for _ in range(entries)]
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        with conn:
            conn.executemany("INSERT INTO directory (pseudonym, holder, contact_id, registered_ms, covers)"
                             " VALUES (?, ?, ?, ?, ?)",
                             ((k, *HOLDERS[i % len(HOLDERS)], 0, covers) for i, k in enumerate(keys)))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return keys


async def _create_schema(db: Path) -> None:
    store = await BrokerStore.open(db)
    await store.db.close()


def _batches(keys: list[bytes], n: int, size: int, rng: random.Random) -> list[list[bytes]]:
    """Half registered pseudonyms, half unknown ones, shuffled."""
    out = []
    for _ in range(n):
        batch = rng.sample(keys, size // 2) + [bytes([1]) + rng.randbytes(31) for _ in range(size - size // 2)]
        rng.shuffle(batch)
        out.append(batch)
    return out


def _plain(db: Path, batches: list[list[bytes]]) -> tuple[list[float], int]:
    """The floor: the same keys, the same indexed read, no broker around it."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    times, found = [], 0
    try:
        for batch in batches:
            t = time.perf_counter()
            marks = ",".join("?" * len(batch))
            rows = conn.execute(f"SELECT pseudonym, holder, contact_id, covers FROM directory"
                                f" WHERE pseudonym IN ({marks})", batch).fetchall()
            times.append(time.perf_counter() - t)
            found += len(rows)
    finally:
        conn.close()
    return times, found


async def _end_to_end(fed: Federation, batches: list[list[bytes]]) -> tuple[list[float], int]:
    org = fed.pki / "orgs" / "fed-liaison"
    me = Signer.from_pem((org / "sign.key").read_bytes(), (org / "sign.pem").read_bytes())
    client = BrokerClient(f"127.0.0.1:{fed.broker_port}",
                          TlsFiles(fed.pki / "ca.pem", org / "tls.pem", org / "tls.key"))
    times, hits = [], 0
    try:
        for batch in batches:
            t = time.perf_counter()
            body = envelope_pb2.EnvelopeBody(
                idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_QUERY_HIT, sender="fed-liaison",
                purpose=envelope_pb2.PURPOSE_HIT_NO_HIT_CHECK, rule_id="hit-query",
                created_at_ms=int(time.time() * 1000),
                hit_query=summary_pb2.HitQuery(subject_pseudonyms=batch, file_ref="fed-2026-1",
                                               legal_basis="law-30-07-2018-art5"))
            response = await client.query(seal(body, me))
            times.append(time.perf_counter() - t)
            if response.WhichOneof("outcome") != "answer":
                raise SystemExit(f"query refused: {response.refusal.detail}")
            hits += sum(1 for r in response.answer.result.rows if r[0] == 1)
    finally:
        await client.close()
    return times, hits


def _summary(name: str, times: list[float]) -> float:
    ms = sorted(t * 1000 for t in times)
    median = statistics.median(ms)
    print(f"{name:<34} median {median:8.2f} ms   p95 {ms[int(len(ms) * 0.95) - 1]:8.2f} ms   "
          f"total {sum(ms) / 1000:6.2f} s")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-postgresql", action="store_true", help="SQLite only")
    args = parse_args(parser, {"entries": 2000, "batches": 5, "batch": 100, "warmup": 1})
    print(f"query bench: {args.entries:,} entries, {args.batches} batches of {args.batch}, seed {args.seed}")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="olv-qbench-") as tmp:
        wd = Path(tmp)
        fed = Federation(wd / "fed", nodes=(NodeSpec("fed-liaison", OrgKind.FEDERAL_LIAISON),),
                         bundle_src=_bundle(wd))
        fed.create()
        t = time.perf_counter()
        keys = _fill(fed.broker_dir / "broker.sqlite", args.entries, rng)
        print(f"directory filled in {time.perf_counter() - t:.1f} s "
              f"({(fed.broker_dir / 'broker.sqlite').stat().st_size / 1e6:.0f} MB)")
        warm = _batches(keys, args.warmup, args.batch, rng)
        batches = _batches(keys, args.batches, args.batch, rng)
        fed.start_broker()
        try:
            asyncio.run(_end_to_end(fed, warm))
            e2e, hits = asyncio.run(_end_to_end(fed, batches))
            _plain(fed.broker_dir / "broker.sqlite", warm)
            plain, found = _plain(fed.broker_dir / "broker.sqlite", batches)
        finally:
            fed.stop()
        pg = None if args.no_postgresql else _on_postgresql(fed, keys, warm, batches)
    expected = args.batches * (args.batch // 2)
    if hits != expected or found != expected:
        sys.exit(f"wrong answers: {hits} hits, {found} rows found, expected {expected}")
    base = _summary("plain indexed SQLite lookup", plain)
    full = _summary("end to end at the broker (Query)", e2e)
    print(f"ratio end-to-end / plain: {full / base:.2f}x (goal <= 1.5x); "
          f"{args.batch / (full / 1000):,.0f} pseudonyms/s end to end")
    extra: dict[str, object] = {}
    if pg is not None:
        pg_times, pg_hits = pg
        if pg_hits != expected:
            sys.exit(f"wrong answers on PostgreSQL: {pg_hits} hits, expected {expected}")
        pg_full = _summary("end to end, store on PostgreSQL", pg_times)
        print(f"PostgreSQL / SQLite end to end: {pg_full / full:.2f}x (goal <= 2x)")
        extra = {"pg_end_to_end_median_ms": round(pg_full, 3), "pg_ratio": round(pg_full / full, 3)}
    report("query", args.smoke, entries=args.entries, batch=args.batch, plain_median_ms=round(base, 3),
           end_to_end_median_ms=round(full, 3), ratio=round(full / base, 3), **extra)


def _on_postgresql(fed: Federation, keys: list[bytes], warm: list[list[bytes]], batches: list[list[bytes]]
                   ) -> tuple[list[float], int]:
    """The same entries in a PostgreSQL store (COPY, after the broker's migrations made the tables), the same
    queries end to end."""
    import psycopg
    import yaml

    with throwaway_postgres() as cluster:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "query"')
        config = fed.broker_dir / "broker.yaml"
        doc = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**doc, "storage": {"engine": "postgresql",
                                                             "dsn": cluster.conninfo("query")}}, sort_keys=False))
        fed.start_broker()
        try:
            covers = covers_string([Cover("federal_liaison", "hit_no_hit_check", "hit-query", FAR),
                                    Cover("justice_house", "hit_no_hit_check", "hit-query", FAR)])
            t = time.perf_counter()
            with psycopg.connect(cluster.conninfo("query")) as conn, conn.cursor() as cur:
                with cur.copy("COPY directory (pseudonym, holder, contact_id, registered_ms, covers) FROM STDIN") as cp:
                    for i, k in enumerate(keys):
                        cp.write_row((k, *HOLDERS[i % len(HOLDERS)], 0, covers))
                conn.commit()
                conn.execute("ANALYZE directory")
            print(f"PostgreSQL directory filled in {time.perf_counter() - t:.1f} s")
            asyncio.run(_end_to_end(fed, warm))
            return asyncio.run(_end_to_end(fed, batches))
        finally:
            fed.stop()


if __name__ == "__main__":
    main()
