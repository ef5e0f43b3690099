"""End-to-end routing bench: delivered alerts per second, latency at half load, restart with a deep queue.

What one alert costs here: the local API call and the intent commit at the sender, building and signing
the envelope, SendBatch, the broker's verification, policy decision, audit leaf and queue row (group
commit), the stream, the recipient's verification, inbox commit and ack, and the receipt's audit check
at the sender. Four municipal nodes in separate processes, each sending to one other (several
concurrent senders, one recipient each), with the broker, two pseudonymisers and a witness.

Side by side, in the same run: a bare grpc.aio unary echo over the same mTLS in separate processes
(``echo_baseline.py``), the limit of this machine for one request/response. Goal: >= 40 % of the echo
rate, p99 < 50 ms at half load, a broker with 100,000 queued envelopes serving in < 2 s.

Then the same peak and half-load latency with the broker's store on PostgreSQL (a throwaway PostgreSQL 15
cluster, as the tests start one; ``--no-postgresql`` skips it), printed with the ratio PostgreSQL/SQLite
(goal: at least 60 % of SQLite's delivered alerts/s).

    python bench/route_bench.py [--alerts 4000] [--seconds 10] [--no-postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import echo_baseline  # noqa: E402
from common import parse_args, report, throwaway_postgres  # noqa: E402
from olievlek.broker.seeding import seed_offline  # noqa: E402
from olievlek.broker.storage.store import NEVER  # noqa: E402
from olievlek.cli.federation import Federation, NodeSpec  # noqa: E402
from olievlek.cli.local_client import call  # noqa: E402
from olievlek.node.broker_client import BrokerClient  # noqa: E402

from olievlek import wire  # noqa: E402
from olievlek.audit.checkpoint import origin_for  # noqa: E402
from olievlek.envelope import Signer, seal  # noqa: E402
from olievlek.policy import bundle_name, digest_of  # noqa: E402
from olievlek.transport import TlsFiles  # noqa: E402
from olievlek.v1 import envelope_pb2, local_pb2, summary_pb2  # noqa: E402

PAIRS = {"gent": "antwerpen", "antwerpen": "gent", "leuven": "mechelen", "mechelen": "leuven"}
NIS = {"gent": 44021, "antwerpen": 11002, "leuven": 24062, "mechelen": 12025}
NRNS = {"gent": "85.07.30-033.28", "antwerpen": "93.05.18-223.61", "leuven": "85.07.30-035.26",
        "mechelen": "85.07.30-037.24"}


def _count(fed: Federation, org: str, sql: str) -> list[tuple[int, ...]]:
    conn = sqlite3.connect(f"file:{fed.node_dir(org) / 'node.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _delivered(fed: Federation) -> int:
    return sum(int(_count(fed, org, "SELECT COUNT(*) FROM inbox")[0][0]) for org in PAIRS)


def _alert(fed: Federation, sender: str, case_id: int) -> None:
    r = call(fed.socket(sender), local_pb2.LocalRequest(alert_move=local_pb2.AlertMoveRequest(
        case_id=case_id, destination_nis=NIS[PAIRS[sender]], no_wait=True)))
    assert r.WhichOneof("response") == "alert_move", r


def _open(fed: Federation, org: str) -> int:
    ident = local_pb2.Identity(national_number=NRNS[org], given_names="A", family_name="B")
    r = call(fed.socket(org), local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
        identity=ident, phase=summary_pb2.PHASE_FOLLOW_UP)))
    assert r.WhichOneof("response") == "case_open", r
    return int(r.case_open.case_id)


def _wait_delivered(fed: Federation, target: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while _delivered(fed) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {_delivered(fed)} of {target} delivered in {timeout:.0f} s")
        time.sleep(0.02)
    return time.monotonic()


def peak(fed: Federation, cases: dict[str, int], alerts: int) -> float:
    """Alerts delivered per second with every sender pushing as fast as its local API takes them."""
    before = _delivered(fed)
    plan = [org for _ in range(alerts // len(PAIRS)) for org in PAIRS]
    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda org: _alert(fed, org, cases[org]), plan))
    end = _wait_delivered(fed, before + len(plan), 120)
    return len(plan) / (end - start)


def latency_at(fed: Federation, cases: dict[str, int], rate: float, seconds: float) -> tuple[float, float]:
    """p50 and p99 (ms) from intent commit at the sender to inbox commit at the recipient."""
    marks = {org: int(_count(fed, org, "SELECT COALESCE(MAX(id), 0) FROM outbox")[0][0]) for org in PAIRS}
    before = _delivered(fed)
    n = int(rate * seconds)
    plan = [org for _ in range(n // len(PAIRS) + 1) for org in PAIRS][:n]
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        futures = []
        for i, org in enumerate(plan):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            futures.append(pool.submit(_alert, fed, org, cases[org]))
        for f in futures:
            f.result()
    _wait_delivered(fed, before + n, 60)
    sent: dict[tuple[str, str], int] = {}
    for org, mark in marks.items():
        sql = f"SELECT idem_key, created_ms FROM outbox WHERE id > {mark} AND kind = 'alert.move'"
        for key, created in _count(fed, org, sql):
            sent[(org, str(key))] = int(created)
    lat: list[int] = []
    for org in PAIRS:
        for sender, key, received in _count(fed, org, "SELECT sender, idem_key, received_ms FROM inbox"):
            if (str(sender), str(key)) in sent:
                lat.append(int(received) - sent[(str(sender), str(key))])
    lat.sort()
    return float(lat[len(lat) // 2]), float(lat[min(len(lat) - 1, int(len(lat) * 0.99))])


def restart_deep_queue(fed: Federation, depth: int) -> tuple[float, float]:
    """Seconds until a broker holding ``depth`` queued envelopes is serving, and until its first delivery."""
    fed.stop_process("broker")
    org = fed.pki / "orgs" / "gent"
    signer = Signer.from_pem((org / "sign.key").read_bytes(), (org / "sign.pem").read_bytes())
    body = envelope_pb2.EnvelopeBody(
        idempotency_key="deepqueuetemplate", kind=envelope_pb2.MESSAGE_KIND_ALERT_MOVE, sender="gent",
        recipients=["livc-zennevallei"], purpose=envelope_pb2.PURPOSE_CONTINUITY_OF_FOLLOW_UP, rule_id="move-alert",
        created_at_ms=int(time.time() * 1000),
        move_alert=summary_pb2.MoveAlert(summary=summary_pb2.CaseSummary(
            subject_pseudonym=bytes(range(32)), phase=summary_pb2.PHASE_FOLLOW_UP,
            concerns=[summary_pb2.CONCERN_CATEGORY_RIGHT_WING], risk_level=summary_pb2.RISK_LEVEL_MEDIUM,
            contact_id="gent-livc", month_opened=summary_pb2.YearMonth(year=2026, month=1))))
    template = seal(body, signer)
    wire.validate(body)

    # Through the storage interface, not Send; with a real decision leaf, as every delivery's proof needs.
    asyncio.run(seed_offline(fed.broker_dir / "broker.sqlite", fed.broker_dir / "log.key",
                             origin_for(bundle_name(fed.bundle_src)), digest_of(fed.workdir / "federation" / "bundle"),
                             "livc-zennevallei", "gent", [(f"deep{i}", template) for i in range(depth)],
                             int(time.time() * 1000), NEVER))
    start = time.monotonic()
    fed.start_broker()
    serving = time.monotonic() - start

    async def first_delivery() -> float:
        org_dir = fed.pki / "orgs" / "livc-zennevallei"
        client = BrokerClient(f"127.0.0.1:{fed.broker_port}",
                              TlsFiles(fed.pki / "ca.pem", org_dir / "tls.pem", org_dir / "tls.key"))
        try:
            stream = client.subscribe()
            down = await asyncio.wait_for(stream.read(), 30)
            assert down.delivery.seq >= 1
            stream.cancel()
            return time.monotonic() - start
        finally:
            await client.close()

    return serving, asyncio.run(first_delivery())


def _federation(folder: Path, broker_settings: dict[str, object] | None = None) -> Federation:
    """The bench's federation (its pairs, and a second municipality certificate for the intermunicipal rules)."""
    from olievlek.identity import OrgId, OrgIdentity, OrgKind
    from olievlek.pki import CertificateAuthority

    fed = Federation(folder, nodes=tuple(NodeSpec(o) for o in PAIRS), broker_settings=broker_settings or {})
    fed.create()
    CertificateAuthority.load(fed.pki).issue_org(OrgIdentity(OrgKind.MUNICIPALITY, OrgId("livc-zennevallei")))
    return fed


def _measure(fed: Federation, args: argparse.Namespace) -> tuple[float, float, float]:
    """Start ``fed``; its peak delivered alerts/s and the p50 and p99 at half that load (ms)."""
    fed.start()
    cases = {org: _open(fed, org) for org in PAIRS}
    peak(fed, cases, args.warmup)
    rate = peak(fed, cases, args.alerts)
    p50, p99 = latency_at(fed, cases, rate / 2, args.seconds)
    return rate, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--depth", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--no-postgresql", action="store_true", help="SQLite only")
    args = parse_args(parser, {"alerts": 40, "seconds": 1.0, "depth": 200, "warmup": 8})
    work = Path(tempfile.mkdtemp(prefix="olievlek-route-"))
    echo = echo_baseline.measure_echo(work / "echo", seconds=args.seconds, concurrency=16)
    print(f"echo baseline: {echo['requests_per_s']:.0f} requests/s, p50 {echo['p50_ms']:.1f} ms, "
          f"p99 {echo['p99_ms']:.1f} ms (bare grpc.aio unary over mTLS, separate processes)")
    fed = _federation(work / "fed")
    try:
        rate, p50, p99 = _measure(fed, args)
        print(f"route: {rate:.0f} delivered alerts/s with {len(PAIRS)} concurrent senders "
              f"({rate / echo['requests_per_s']:.0%} of the echo rate; goal >= 40 %)")
        print(f"latency at half load ({rate / 2:.0f}/s): p50 {p50:.0f} ms, p99 {p99:.0f} ms (goal p99 < 50 ms)")
        serving, first = restart_deep_queue(fed, args.depth)
        print(f"restart with {args.depth:,} queued: serving after {serving:.2f} s, first delivery after "
              f"{first:.2f} s (goal < 2 s)")
    finally:
        fed.stop()
    try:
        pg = {} if args.no_postgresql else on_postgresql(work, args, rate)
        report("route", args.smoke, echo_rps=round(echo["requests_per_s"]), route_rps=round(rate),
               ratio=round(rate / echo["requests_per_s"], 3), p50_ms=p50, p99_ms=p99,
               restart_serving_s=round(serving, 3), restart_first_delivery_s=round(first, 3), cpus=os.cpu_count(),
               **pg)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


def on_postgresql(work: Path, args: argparse.Namespace, sqlite_rate: float) -> dict[str, object]:
    """Peak and half-load latency with the broker's store on a throwaway PostgreSQL cluster."""
    import psycopg

    with throwaway_postgres() as cluster:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "route"')
        fed = _federation(work / "fed-pg", {"storage": {"engine": "postgresql", "dsn": cluster.conninfo("route")}})
        try:
            rate, p50, p99 = _measure(fed, args)
        finally:
            fed.stop()
    print(f"route on PostgreSQL: {rate:.0f} delivered alerts/s ({rate / sqlite_rate:.0%} of SQLite's; "
          f"goal >= 60 %), latency at half load p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    return {"pg_route_rps": round(rate), "pg_ratio": round(rate / sqlite_rate, 3), "pg_p50_ms": p50,
            "pg_p99_ms": p99}


if __name__ == "__main__":
    main()
