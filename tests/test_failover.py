"""Replicated PostgreSQL under the brokers (docs/high-availability.md): Patroni with etcd, a primary and a
synchronous standby, two broker instances over it.

- The failover chaos: alerts from three nodes through two broker instances while, at a seeded random moment,
  the primary's host is lost (its Patroni and PostgreSQL killed together: the leader key expires and Patroni
  promotes the synchronous standby) and a broker instance is kill -9'd; the old primary then rejoins as a
  replica. Afterwards ``run_chaos``'s checks hold: every recipient holds exactly the committed sends, once, in
  order per sender; every outcome is final under the witness quorum; the witness raised no alarm. The time from
  the host's loss to the first envelope accepted after it is printed (``CHAOS_SEED`` replays a run).
- kill -9 of the postmaster alone: Patroni starts it again in place, and the brokers go on.

Real processes on loopback, bounded and self-stopping; serial (the whole machine's attention).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from olievlek.broker.server import BrokerServer
from olievlek.node.server import NodeServer

from olievlek.v1 import broker_pb2, local_pb2

from .conftest import NodeFactory, Pki, broker_config
from .envelopes import open_and_alert, valid_nrn
from .patroni import PatroniCluster, _postmaster, patroni_cluster, wait_until
from .postgres import Cluster
from .proxy import PartitionProxy
from .test_broker_postgres import _one_log
from .test_chaos import run_chaos
from .test_metrics import ready_status

pytestmark = [pytest.mark.serial, pytest.mark.slow, pytest.mark.timeout(240)]
ALERTS = int(os.environ.get("FAILOVER_ALERTS", "200"))  # make chaos: 1000, three seeds in a row


@pytest.fixture(scope="module")
def patroni() -> Iterator[PatroniCluster]:
    """One cluster for this module's tests (bringing one up takes ~13 s)."""
    with patroni_cluster() as cluster:
        yield cluster


def _routing_resumed(logs: list[Path], lost_s: float) -> float:
    """When routing resumed after the loss at ``lost_s`` (wall time): the end of the longest pause between two
    envelopes accepted (by any broker instance) that spans the loss - accepts logged just after the loss were
    committed before it."""
    accepted = sorted(
        dt.datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00")).timestamp()
        for path in logs for line in path.read_text(errors="replace").splitlines() if '"send.accepted"' in line)
    pauses = [(b - a, b) for a, b in itertools.pairwise(accepted) if b > lost_s and a < lost_s + 60]
    assert pauses, "nothing accepted after the loss"
    return max(pauses)[1]


async def test_the_primary_host_lost_and_a_broker_killed_under_load_lose_and_repeat_nothing(
        tmp_path: Path, patroni: PatroniCluster) -> None:
    dsn = patroni.new_database()
    measured: dict[str, float] = {}

    async def lose_the_primary(rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(1.5, 3.0))  # mid-load: the driver sends for about 15 s
        primary = patroni.primary()
        standby = next(m for m in patroni.members if m is not primary)
        measured["lost_at"] = time.time()
        started = time.monotonic()
        await asyncio.to_thread(patroni.lose_host, primary)
        await asyncio.to_thread(wait_until, standby.is_primary, 60, "the standby promoted")
        measured["promoted_s"] = time.monotonic() - started
        await asyncio.to_thread(patroni.start, primary)
        await asyncio.to_thread(wait_until, primary.is_replica, 90, "the old primary back as a replica")
        measured["rejoined_s"] = time.monotonic() - started

    fed = await run_chaos(tmp_path, {"storage": {"engine": "postgresql", "dsn": dsn}, "instance_poll_ms": 100},
                          ALERTS, 1, 0, broker_instances=2, disrupt=lose_the_primary, alerts_per_s=ALERTS / 15)
    resumed = _routing_resumed([fed.log(n) for n in fed.broker_names], measured["lost_at"])
    print(f"failover: standby promoted {measured['promoted_s']:.1f} s after the primary's host was lost, routing "
          f"resumed after {resumed - measured['lost_at']:.1f} s, old primary a replica again after "
          f"{measured['rejoined_s']:.1f} s")
    assert patroni.primary() is not None and any(m.is_replica() for m in patroni.members)
    assert _one_log(dsn) > ALERTS


async def test_a_killed_postmaster_is_restarted_in_place_by_patroni(patroni: PatroniCluster) -> None:
    primary = patroni.primary()
    before = _postmaster(primary)
    await asyncio.to_thread(patroni.kill_postmaster, primary)
    await asyncio.to_thread(wait_until, lambda: _postmaster(primary) not in (None, before) and primary.is_primary(),
                            60, "the postmaster started again by Patroni")
    assert patroni.primary() is primary  # restarted in place: no failover


def _alarms(node: NodeServer) -> float:
    """Every audit alarm the node raised, whatever its reason."""
    return sum(s.value for metric in node.metrics.registry.collect() if metric.name == "olievlek_node_audit_alarms"
               for s in metric.samples if s.name.endswith("_total"))


async def test_an_instance_cut_off_from_the_database_signs_nothing_and_its_nodes_move_on(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory, postgres_cluster: Cluster) -> None:
    """Split brain cannot fork the log: instance b reaches the database through a proxy that goes silent (no
    answer, no reset). Whatever b had started - a batch, its head signed - never commits, so no node holds a
    head of b's that the log does not have; gent, which used b, moves to a by itself and everything it sends
    arrives once, in order; no node raises an audit alarm; once the network is back, b serves again from the
    same log."""
    dsn = postgres_cluster.new_database()
    proxy = PartitionProxy("", 0, target_unix=f"{postgres_cluster.socket_dir}/.s.PGSQL.{postgres_cluster.port}")
    through_proxy = f"host=127.0.0.1 port={await proxy.start()} user=postgres dbname={dsn.rsplit('dbname=', 1)[1]}"
    base = broker_config(pki, tmp_path)
    a = BrokerServer(dataclasses.replace(base, database=tmp_path / "a" / "broker.sqlite", postgres_dsn=dsn,
                                         instance_name="a"))
    b = BrokerServer(dataclasses.replace(base, database=tmp_path / "b" / "broker.sqlite", postgres_dsn=through_proxy,
                                         instance_name="b", postgres_call_timeout_s=2.0, ready_listen="127.0.0.1:0"))
    await a.start()
    await b.start()
    try:
        gent = await nodes.start("gent", b.port, broker=(f"127.0.0.1:{b.port}", f"127.0.0.1:{a.port}"))
        antwerpen = await nodes.start("antwerpen", a.port)
        for i in range(3):
            answer = await open_and_alert(gent, valid_nrn(f"850730{i + 200:03d}"))
            assert answer.status == local_pb2.OUTBOX_STATUS_ACCEPTED  # through b
        assert await asyncio.to_thread(ready_status, b.ready_port) == 200
        proxy.partition()
        for i in range(3, 8):
            await open_and_alert(gent, valid_nrn(f"850730{i + 200:03d}"), no_wait=True)
        # What a load balancer sees: b out of service.
        await asyncio.to_thread(wait_until, lambda: ready_status(b.ready_port) == 503, 30, "b not ready")
        assert gent._store is not None and antwerpen._store is not None
        deadline = time.monotonic() + 100
        while len(received := [r[0] for r in await antwerpen._store.db.fetchall(
                "SELECT idem_key FROM inbox WHERE kind = 'alert.move' ORDER BY id")]) < 8:
            assert time.monotonic() < deadline, f"{len(received)} of 8 delivered"
            await asyncio.sleep(0.2)
        sent = [r[0] for r in await gent._store.db.fetchall(
            "SELECT idem_key FROM outbox WHERE kind = 'alert.move' ORDER BY id")]
        assert received == sent  # each once, in order, the last five through a
        proxy.heal()
        await asyncio.to_thread(wait_until, lambda: ready_status(b.ready_port) == 200, 60, "b ready again")
        size = _one_log(dsn)
        for node in (gent, antwerpen):  # every head a node holds is one of the log's
            raw = await node._store.last_head()
            assert raw is not None
            held = broker_pb2.TreeHead.FromString(raw)
            assert held.size <= size
            with psycopg.connect(dsn) as conn:
                root = conn.execute("SELECT root FROM tree_heads WHERE size = %s", (held.size,)).fetchone()
            assert root is not None and bytes(root[0]) == held.root
            assert _alarms(node) == 0
        leuven = await nodes.start("leuven", b.port)  # b, back on the network, serves from the same log
        answer = await open_and_alert(leuven, valid_nrn("850730209"))
        assert answer.status == local_pb2.OUTBOX_STATUS_ACCEPTED
        assert _one_log(dsn) > size
    finally:
        await proxy.close()
        await b.stop(0)
        await a.stop(0)


def _write(dsn: str, value: int) -> None:
    """An insert, committed (a synchronous commit waits for its standby: no statement timeout ends that wait, and
    a cancelled wait would commit locally anyway - so the callers time it from outside)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS probe (v int)")
        conn.execute("INSERT INTO probe VALUES (%s)", (value,))


def _patronictl(cluster: PatroniCluster, *args: str) -> None:
    r = subprocess.run(["runuser", "-u", "postgres", "--", "patronictl", "-c", str(cluster.members[0].config),
                        *args], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


async def test_with_the_standby_down_writes_go_on_unless_the_operator_chose_strict(patroni: PatroniCluster) -> None:
    """``synchronous_mode``: when the synchronous standby's host is lost, Patroni lets the primary commit without
    a synchronous copy (and there is no failover candidate until the standby is back). With
    ``synchronous_mode_strict`` - for operators who would rather stop writes than keep one copy - commits wait
    until a standby is back."""
    dsn = patroni.new_database()
    primary = patroni.primary()
    standby = next(m for m in patroni.members if m is not primary)
    await asyncio.to_thread(patroni.lose_host, standby)
    # Patroni lifts the wait for a synchronous copy within a loop or two.
    await asyncio.wait_for(asyncio.to_thread(_write, dsn, 1), 30)
    await asyncio.to_thread(patroni.start, standby)
    await asyncio.to_thread(patroni.synchronous, 90)
    await asyncio.to_thread(_patronictl, patroni, "edit-config", "--force", "--set", "synchronous_mode_strict=true")
    try:
        await asyncio.wait_for(asyncio.to_thread(_write, dsn, 2), 30)
        await asyncio.to_thread(patroni.lose_host, standby)
        waiting = asyncio.ensure_future(asyncio.to_thread(_write, dsn, 3))
        await asyncio.sleep(6)  # three of Patroni's loops: it would have lifted the wait by now, were it allowed to
        assert not waiting.done()  # strict: no commit with one copy
        await asyncio.to_thread(patroni.start, standby)
        await asyncio.wait_for(waiting, 90)  # committed once a standby is back
    finally:
        await asyncio.to_thread(_patronictl, patroni, "edit-config", "--force", "--set",
                                "synchronous_mode_strict=false")
    await asyncio.to_thread(patroni.synchronous, 90)
