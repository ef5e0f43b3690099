"""A refusal flood against a real broker: what it costs a bystander, and what it costs the store.

One organisation (Leuven) sends envelopes the policy refuses as fast as it can, from several concurrent
callers; a bystander (Gent) sends valid alerts at a steady rate and measures each answer. The same
bystander run without the flood is the baseline, in the same run: the ratio of the two p95s is the
figure. The store's growth is the other: leaves and decision rows written per refused input (without
aggregation every refusal is one leaf of about 540 bytes and one decision row, kept forever).

    python bench/abuse_bench.py [--seconds 15] [--flooders 8] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import parse_args, report
from olievlek.cli.federation import Federation, NodeSpec
from olievlek.node.broker_client import BrokerClient

from olievlek import wire
from olievlek.envelope import Signer, seal
from olievlek.transport import TlsFiles
from olievlek.v1 import envelope_pb2, summary_pb2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))


Where = tuple[Path, int]  # the federation's PKI folder and the broker's port (what a child process needs)


def _signer(where: Where, org: str) -> Signer:
    d = where[0] / "orgs" / org
    return Signer.from_pem((d / "sign.key").read_bytes(), (d / "sign.pem").read_bytes())


def _client(where: Where, org: str) -> BrokerClient:
    pki, port = where
    d = pki / "orgs" / org
    return BrokerClient(f"127.0.0.1:{port}", TlsFiles(pki / "ca.pem", d / "tls.pem", d / "tls.key"))


def _alert(sender: str, recipient: str, rule: str, contact: str) -> envelope_pb2.EnvelopeBody:
    return envelope_pb2.EnvelopeBody(
        idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_ALERT_MOVE, sender=sender,
        recipients=[recipient], purpose=envelope_pb2.PURPOSE_CONTINUITY_OF_FOLLOW_UP, rule_id=rule,
        created_at_ms=int(time.time() * 1000),
        move_alert=summary_pb2.MoveAlert(summary=summary_pb2.CaseSummary(
            subject_pseudonym=bytes(range(32)), phase=summary_pb2.PHASE_FOLLOW_UP,
            concerns=[summary_pb2.CONCERN_CATEGORY_RIGHT_WING], risk_level=summary_pb2.RISK_LEVEL_MEDIUM,
            contact_id=contact, month_opened=summary_pb2.YearMonth(year=2026, month=1))))


async def bystander(fed: Where, seconds: float, rate: float) -> list[float]:
    """Latencies (ms) of valid alerts Gent -> Antwerpen sent at ``rate`` per second."""
    client, s = _client(fed, "gent"), _signer(fed, "gent")
    out: list[float] = []
    try:
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            t = time.perf_counter()
            answer = await client.send(seal(_alert("gent", "antwerpen", "move-alert", "gent-livc"), s))
            if answer.WhichOneof("outcome") != "receipt":
                raise SystemExit(f"the bystander was refused: {answer}")
            out.append((time.perf_counter() - t) * 1000)
            i += 1
    finally:
        await client.close()
    return out


async def flood(fed: Where, stop: asyncio.Event) -> tuple[int, int]:
    """(refusals answered, calls held back by the rate limit) from Leuven, as fast as it can."""
    client, s = _client(fed, "leuven"), _signer(fed, "leuven")
    refused = limited = 0
    try:
        while not stop.is_set():
            try:
                answer = await client.send(seal(_alert("leuven", "antwerpen", "no-such-rule", "leuven-livc"), s))
                refused += answer.WhichOneof("outcome") == "refusal"
            except Exception as exc:  # RESOURCE_EXHAUSTED: an abuser that does not wait keeps asking
                limited += "RESOURCE_EXHAUSTED" in str(exc)
    finally:
        await client.close()
    return refused, limited


def _counts(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        leaves = int(conn.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0])
        rows = int(conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
        return leaves, rows
    finally:
        conn.close()


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


async def _flood_for(fed: Where, flooders: int, seconds: float) -> list[tuple[int, int]]:
    stop = asyncio.Event()
    floods = [asyncio.create_task(flood(fed, stop)) for _ in range(flooders)]
    await asyncio.sleep(seconds)
    stop.set()
    return await asyncio.gather(*floods)


def _flood_process(fed: Where, flooders: int, seconds: float, out: Any) -> None:
    """The abuser in its own process (as on its own machine): the bystander's event loop stays its own."""
    out.put(asyncio.run(_flood_for(fed, flooders, seconds)))


async def main_async(args: object) -> None:
    seconds, flooders, rate = args.seconds, args.flooders, args.rate  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="olv-abuse-") as d:
        fed = Federation(Path(d) / "fed", nodes=(NodeSpec("gent"), NodeSpec("antwerpen"), NodeSpec("leuven")))
        fed.create()
        fed.start_broker()
        where = (fed.pki, fed.broker_port)
        try:
            quiet = await bystander(where, seconds, rate)
            db = fed.broker_dir / "broker.sqlite"
            before = _counts(db)
            results_q: Any = multiprocessing.get_context("spawn").Queue()
            abuser = multiprocessing.get_context("spawn").Process(
                target=_flood_process, args=(where, flooders, seconds + 1.0, results_q))
            abuser.start()
            await asyncio.sleep(0.5)  # the flood is running before the bystander measures
            loud = await bystander(where, seconds, rate)
            results = await asyncio.to_thread(results_q.get, True, seconds + 30)
            abuser.join(10)
            after = _counts(db)
        finally:
            fed.stop()
    refused = sum(r for r, _ in results)
    limited = sum(lim for _, lim in results)
    bystander_leaves = len(loud)
    leaves = after[0] - before[0] - bystander_leaves
    rows = after[1] - before[1] - bystander_leaves
    ratio = p95(loud) / p95(quiet)
    print(f"bystander p95 without flood {p95(quiet):.1f} ms (median {statistics.median(quiet):.1f}), "
          f"with flood {p95(loud):.1f} ms (median {statistics.median(loud):.1f}): ratio {ratio:.2f}x")
    print(f"flood: {refused} refusals answered, {limited} calls held back by the rate limit, "
          f"{leaves} leaves and {rows} decision rows written for them "
          f"({leaves / max(1, refused):.3f} leaves per refusal; without aggregation: 1)")
    report("abuse", args.smoke, p95_quiet_ms=round(p95(quiet), 2), p95_flood_ms=round(p95(loud), 2),  # type: ignore[attr-defined]
           ratio=round(ratio, 3), refusals=refused, rate_limited=limited, leaves=leaves, decision_rows=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--flooders", type=int, default=8)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parse_args(parser, {"seconds": 2.0, "flooders": 2, "rate": 10.0})
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
