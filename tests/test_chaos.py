"""Chaos: alerts from several nodes at once while the broker and nodes are kill -9'd and restarted.

The source of truth is the set of outbox rows each sender committed. Afterwards
every recipient's inbox holds exactly that set: nothing lost, nothing applied
twice. ``make test`` runs 2,000 alerts with 3 broker kills and a fixed seed;
``make chaos`` sets CHAOS_ALERTS=10000, CHAOS_KILLS=10 and a random CHAOS_SEED
(printed, to replay a failure). Real processes on loopback; bounded and
self-stopping.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from olievlek.cli.federation import Federation, NodeSpec
from olievlek.cli.local_client import call

from olievlek.errors import OlievlekError
from olievlek.v1 import local_pb2, summary_pb2

ALERTS = int(os.environ.get("CHAOS_ALERTS", "2000"))
BROKER_KILLS = int(os.environ.get("CHAOS_KILLS", "3"))
NODE_KILLS = max(1, BROKER_KILLS // 3)
SEED = int(os.environ.get("CHAOS_SEED", "20261129"))
NIS = {"gent": 44021, "antwerpen": 11002, "leuven": 24062}
CASES_PER_NODE = 4
DRIVERS = 12

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240 + ALERTS // 40)]


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _committed(fed: Federation, org: str) -> list[tuple[object, ...]]:
    return _rows(fed.node_dir(org) / "node.sqlite", "SELECT recipient, idem_key, status FROM outbox"
                 " WHERE kind = 'alert.move' ORDER BY id")


def _received(fed: Federation, org: str) -> list[tuple[object, ...]]:
    return _rows(fed.node_dir(org) / "node.sqlite", "SELECT sender, idem_key FROM inbox ORDER BY id")


class Driver:
    """Sends alerts through the nodes' local API until ``ALERTS`` calls succeeded (at most ``per_s`` a second,
    when given: a load that lasts across a disruption)."""

    def __init__(self, fed: Federation, cases: dict[str, list[int]], rng: random.Random, alerts: int = ALERTS,
                 per_s: float | None = None) -> None:
        self.fed, self.cases, self.rng = fed, cases, rng
        self._pause = DRIVERS / per_s if per_s else 0.0
        self.ok = 0
        self.failed_calls = 0
        self._plan = [rng.choice(list(NIS)) for _ in range(alerts)]

    def _one(self, sender: str, dest: str, case_id: int) -> bool:
        try:
            r = call(self.fed.socket(sender), local_pb2.LocalRequest(alert_move=local_pb2.AlertMoveRequest(
                case_id=case_id, destination_nis=NIS[dest], no_wait=True)))
        except (OlievlekError, OSError):
            return False  # the node is down (or died mid-call): committed or not, its outbox tells
        return r.WhichOneof("response") == "alert_move"

    async def run(self) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for sender in self._plan:
            queue.put_nowait(sender)

        async def worker() -> None:
            while not queue.empty():
                sender = queue.get_nowait()
                dest = self.rng.choice([o for o in NIS if o != sender])
                case_id = self.rng.choice(self.cases[sender])
                if await asyncio.to_thread(self._one, sender, dest, case_id):
                    self.ok += 1
                    await asyncio.sleep(self._pause)
                else:
                    self.failed_calls += 1
                    queue.put_nowait(sender)  # try again (maybe later, maybe after a restart)
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(worker() for _ in range(DRIVERS)))


async def chaos(fed: Federation, rng: random.Random, broker_kills: int = BROKER_KILLS,
                node_kills: int = NODE_KILLS) -> tuple[int, int]:
    """kill -9 the broker ``broker_kills`` times and a random node ``node_kills`` times, at random moments.
    With several broker instances, each kill takes the next instance in turn (the first first: where the
    nodes are), so the nodes move between them."""
    events = ["broker"] * broker_kills + ["node"] * node_kills
    rng.shuffle(events)
    kills = Counter[str]()
    for what in events:
        await asyncio.sleep(rng.uniform(0.3, 1.5))
        if what == "broker":
            name = fed.broker_names[kills["broker"] % len(fed.broker_names)]
            fed.kill(name)
            await asyncio.sleep(rng.uniform(0.1, 1.0))
            await asyncio.to_thread(fed.start_broker, name)
        else:
            org = rng.choice(list(NIS))
            fed.kill(org)
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            await asyncio.to_thread(fed.start_node, fed.spec(org))
        kills[what] += 1  # kills after the driver finished test catch-up and redelivery too
    return kills["broker"], kills["node"]


def _not_final(fed: Federation, org: str) -> list[tuple[object, ...]]:
    """(item, state, count) of the outcomes at a node that the witnesses do not back yet."""
    return _rows(fed.node_dir(org) / "node.sqlite",
                 "SELECT item, state, COUNT(*) FROM finality WHERE state != 'final' GROUP BY item, state")


def _settled(fed: Federation) -> bool:
    for org in NIS:
        if any(status in ("queued", "pending") for _, _, status in _committed(fed, org)):
            return False
        if _not_final(fed, org):  # every outcome ends final: covered by a quorum-cosigned head
            return False
    expected = Counter((s, k) for s in NIS for r, k, _ in _committed(fed, s))
    got = Counter((s, k) for r in NIS for s, k in _received(fed, r))
    return expected == got


async def test_nothing_lost_nothing_applied_twice_through_kill_9(tmp_path: Path) -> None:
    await run_chaos(tmp_path, {}, ALERTS, BROKER_KILLS, NODE_KILLS)


async def run_chaos(tmp_path: Path, broker_settings: dict[str, object], alerts: int, broker_kills_planned: int,
                    node_kills_planned: int, broker_instances: int = 1,
                    disrupt: Callable[[random.Random], Awaitable[None]] | None = None,
                    alerts_per_s: float | None = None) -> Federation:
    """The chaos run, with the broker configured by ``broker_settings`` (its store on PostgreSQL, for one) in
    ``broker_instances`` instances, and ``disrupt`` (the loss of the database's primary, for one) running
    alongside the kills; returns the (stopped) federation, for what a caller checks after."""
    print(f"chaos: {alerts} alerts, {broker_kills_planned} broker kills, {node_kills_planned} node kills, "
          f"seed {SEED}, broker {broker_settings or 'SQLite'} x {broker_instances}")
    rng = random.Random(SEED)
    fed = Federation(tmp_path / "fed", nodes=tuple(NodeSpec(o) for o in NIS), broker_settings=broker_settings,
                     node_settings={"drain_grace_s": 2, "witness_check_interval_s": 1},
                     broker_instances=broker_instances)
    fed.create()
    try:
        await asyncio.to_thread(fed.start)
        cases = {org: [_open_case(fed, org, i) for i in range(CASES_PER_NODE)] for org in NIS}
        driver = Driver(fed, cases, random.Random(rng.random()), alerts, alerts_per_s)
        started = time.monotonic()
        chaos_task = asyncio.create_task(chaos(fed, random.Random(rng.random()), broker_kills_planned,
                                               node_kills_planned))
        disrupting = asyncio.create_task(disrupt(random.Random(rng.random()))) if disrupt is not None else None
        await driver.run()
        broker_kills, node_kills = await chaos_task
        if disrupting is not None:
            await disrupting
        sent_s = time.monotonic() - started
        deadline = time.monotonic() + 120 + alerts / 50
        while not await asyncio.to_thread(_settled, fed):
            assert time.monotonic() < deadline, _diagnose(fed)
            await asyncio.sleep(0.5)
        committed = {org: _committed(fed, org) for org in NIS}
        statuses = Counter(status for rows in committed.values() for _, _, status in rows)
        expected = Counter((s, r, k) for s in NIS for r, k, _ in committed[s])
        got = Counter((s, r, k) for r in NIS for s, k in _received(fed, r))
        lost = expected - got
        twice = Counter({key: n - 1 for key, n in got.items() if n > 1})
        print(f"chaos: {sum(expected.values())} committed alerts ({driver.ok} calls answered, "
              f"{driver.failed_calls} failed calls), {broker_kills} broker and {node_kills} node kills, "
              f"sent in {sent_s:.1f} s, settled in {time.monotonic() - started:.1f} s, statuses {dict(statuses)}")
        assert broker_kills == broker_kills_planned and node_kills == node_kills_planned
        assert sum(expected.values()) >= alerts
        assert statuses == Counter({"accepted": sum(expected.values())})
        assert all(not _not_final(fed, org) for org in NIS)  # every outcome final under the witnesses' quorum
        assert '"witness.alarm"' not in fed.log("witness").read_text()  # the witness saw no fork
        finals = sum(int(n) for org in NIS for (n,) in _rows(fed.node_dir(org) / "node.sqlite",
                                                             "SELECT COUNT(*) FROM finality WHERE state = 'final'"))
        assert finals >= 2 * sum(expected.values())  # each alert: the sender's receipt and the recipient's item
        assert not lost, f"{sum(lost.values())} lost"
        assert not twice, f"{sum(twice.values())} applied twice"
        assert got == expected
        for r in NIS:  # and in order: each sender's alerts reach each recipient in the order it committed them
            arrived = [(sndr, k) for sndr, k in _received(fed, r)]
            for sndr in NIS:
                sent = [k for rcpt, k, _ in committed[sndr] if rcpt == r]
                assert [k for s_, k in arrived if s_ == sndr] == sent, f"{sndr} -> {r} out of order"
        if not broker_settings:  # (on PostgreSQL the broker's acks are in its database there)
            stored_acks = _rows(fed.broker_dir / "broker.sqlite",
                                "SELECT COUNT(*) FROM acks WHERE outcome = 'stored'")
            assert int(stored_acks[0][0]) <= sum(expected.values())  # a 'stored' ack means applied: never more
    finally:
        await asyncio.to_thread(fed.stop)
    return fed


def _open_case(fed: Federation, org: str, i: int) -> int:
    serial = 33 + 2 * i
    ident = local_pb2.Identity(national_number=f"85.07.30-{serial:03d}.{_check(850730, serial):02d}",
                               given_names="A", family_name="B")
    r = call(fed.socket(org), local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
        identity=ident, phase=summary_pb2.PHASE_FOLLOW_UP)))
    assert r.WhichOneof("response") == "case_open", r
    return int(r.case_open.case_id)


def _check(birth: int, serial: int) -> int:
    """The national register number's check digits (97 - base mod 97), for a born-before-2000 person."""
    return 97 - (birth * 1000 + serial) % 97


def _diagnose(fed: Federation) -> str:
    lines = []
    for org in NIS:
        statuses = Counter(status for _, _, status in _committed(fed, org))
        lines.append(f"{org}: outbox {dict(statuses)}, inbox {len(_received(fed, org))}, "
                     f"not final {_not_final(fed, org)}")
    return "not settled in time: " + "; ".join(lines)
