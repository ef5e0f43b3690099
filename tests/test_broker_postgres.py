"""The broker's own tests, again with the broker's store on PostgreSQL (a real, throwaway PostgreSQL 15).

Each test below is the same function its own module runs on SQLite; here the ``broker`` fixture is a broker
whose ``storage`` is ``{engine: postgresql}``, one fresh database per test. Delivery guarantees, the audit
log and the directory with its queries and disclosures run on both engines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519
from olievlek.broker.committer import Committer
from olievlek.broker.server import BrokerServer
from olievlek.broker.storage.operations import AppendLeaves, Leaf
from olievlek.broker.storage.store import MIGRATIONS_POSTGRESQL, BrokerStore

from olievlek.audit import tree
from olievlek.audit.log import AuditLog
from olievlek.storage.postgres import PgDatabase
from olievlek.v1 import local_pb2

from .conftest import NodeFactory, Pki, broker_config
from .envelopes import open_and_alert, valid_nrn
from .federations import cli
from .postgres import Cluster
from .test_audit_broker import (  # noqa: F401 - collected here again, on PostgreSQL
    forge,
    test_a_data_protection_officer_sees_all_and_others_their_own,
    test_a_refusal_carries_a_proven_leaf_with_the_same_reason,
    test_leaves_hold_no_pseudonym_or_contact,
    test_metadata_retention_keeps_the_tree_verifiable,
)
from .test_chaos import run_chaos
from .test_delivery_guarantees import (  # noqa: F401
    test_a_batch_is_answered_per_envelope_in_order_and_shares_one_commit,
    test_a_full_queue_is_refused_clearly_and_nothing_is_dropped,
    test_a_sender_learns_when_the_recipient_refuses_its_alert,
    test_an_erasure_notice_never_overtakes_or_lets_in_the_alert_it_erases,
    test_an_undelivered_alert_expires_and_the_sender_node_shows_it,
    test_sequence_numbers_are_per_recipient,
    test_the_same_envelope_sent_three_times_is_delivered_once_with_three_identical_receipts,
)
from .test_liaison import (  # noqa: F401
    federation,
    test_a_coverage_flag_with_a_bad_signature_is_ignored_and_logged,
    test_a_response_must_answer_a_request,
    test_budgets_bound_each_query_and_each_day,
    test_disclosure_approved_with_fewer_fields_denied_and_expired,
    test_three_outcomes_from_the_directory_alone_with_every_holder_offline,
)

pytestmark = [pytest.mark.serial, pytest.mark.timeout(150)]


@pytest.fixture
async def broker(pki: Pki, tmp_path: Path, policy_dir: Path, postgres_cluster: Cluster) -> AsyncIterator[BrokerServer]:
    config = dataclasses.replace(broker_config(pki, tmp_path), postgres_dsn=postgres_cluster.new_database())
    server = BrokerServer(config)
    await server.start()
    assert server._store is not None and server._store.db.engine == "postgresql"
    yield server
    await server.stop(0)


async def test_postgresql_crashed_and_restarted_mid_load_loses_and_repeats_nothing(
        broker: BrokerServer, nodes: NodeFactory, postgres_cluster: Cluster) -> None:
    gent = await nodes.start("gent", broker.port)
    antwerpen = await nodes.start("antwerpen", broker.port)
    sent = 40
    for i in range(sent):
        await open_and_alert(gent, valid_nrn(f"850730{i + 100:03d}"), no_wait=True)
        if i == sent // 2:  # mid-load: gent's outbox is still sending what it queued without waiting
            postgres_cluster.crash()  # power cut: the broker's open transaction and connections are gone
            await asyncio.sleep(1.0)
            postgres_cluster.start()
    assert gent._store is not None and antwerpen._store is not None
    deadline = time.monotonic() + 60
    while True:
        received = [r[0] for r in await antwerpen._store.db.fetchall(
            "SELECT idem_key FROM inbox WHERE kind = 'alert.move' ORDER BY id")]
        if len(received) >= sent:
            break
        assert time.monotonic() < deadline, f"{len(received)} of {sent} delivered"
        await asyncio.sleep(0.2)
    assert len(received) == len(set(received)) == sent  # none lost, none applied twice
    ordered = [r[0] for r in await gent._store.db.fetchall(
        "SELECT idem_key FROM outbox WHERE kind = 'alert.move' ORDER BY id")]
    assert received == ordered  # in the order gent sent them
    assert broker.service is not None
    decisions = [d for d in await broker.service.store.decisions() if d.kind == "alert.move"]
    assert len(decisions) == sent  # each accepted once, whatever the retries


FIXTURE = Path(__file__).resolve().parent / "fixtures" / "broker-395f065"


def _config(tmp: Path, name: str, storage: dict[str, str] | None) -> Path:
    """A broker configuration naming only what export and import read."""
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "database": str(tmp / name / "broker.sqlite"), "log_key": str(tmp / "old" / "log.key"), "tls_cert": "x",
        "tls_key": "x", "ca": "x", "crl": "x", "bundle": "x", "roots": "x",
        **({"storage": storage} if storage else {})}))
    return path


def test_a_live_sqlite_broker_moves_to_postgresql_with_the_same_rows_and_log(
        tmp_path: Path, postgres_cluster: Cluster) -> None:
    shutil.copytree(FIXTURE, tmp_path / "old")
    (tmp_path / "src").mkdir()
    shutil.copyfile(tmp_path / "old" / "broker.sqlite", tmp_path / "src" / "broker.sqlite")
    source = _config(tmp_path, "src", None)
    target = _config(tmp_path, "dst", {"engine": "postgresql", "dsn": postgres_cluster.new_database()})
    dump = tmp_path / "broker.jsonl"
    exported = cli("broker", "export", "--config", str(source), "--out", str(dump))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    imported = cli("broker", "import", "--config", str(target), "--from", str(dump))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "as the exported signed head" in imported.stdout and "DIFFERS" not in imported.stdout
    rows = {line.split()[0]: line.split()[1:3] for line in exported.stdout.splitlines() if line[:1].isalpha()}
    assert int(rows["audit_events"][0]) > 0 and int(rows["queue"][0]) > 0
    for line in imported.stdout.splitlines():  # the same count and SHA-256 for every table, on PostgreSQL
        if line.split()[0] in rows:
            assert line.split()[1:3] == rows[line.split()[0]], line
    again = cli("broker", "import", "--config", str(target), "--from", str(dump))
    assert again.returncode != 0 and "import only into a new, empty store" in again.stdout + again.stderr


def test_an_import_that_does_not_match_its_export_imports_nothing(tmp_path: Path, postgres_cluster: Cluster) -> None:
    shutil.copytree(FIXTURE, tmp_path / "old")
    (tmp_path / "src").mkdir()
    shutil.copyfile(tmp_path / "old" / "broker.sqlite", tmp_path / "src" / "broker.sqlite")
    dump = tmp_path / "broker.jsonl"
    r = cli("broker", "export", "--config", str(_config(tmp_path, "src", None)), "--out", str(dump))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = dump.read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith('{"t": "decisions"'))
    lines[i] = lines[i].replace('"alert.move"', '"handover"', 1)  # one row changed in transit
    dump.write_text("\n".join(lines) + "\n")
    dsn = postgres_cluster.new_database()
    r = cli("broker", "import", "--config", str(_config(tmp_path, "dst", {"engine": "postgresql", "dsn": dsn})),
            "--from", str(dump))
    assert r.returncode != 0 and "differ from the export in ['decisions']" in r.stdout + r.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT COUNT(*) FROM audit_events").fetchone() == (0,)  # nothing of it imported


async def test_two_writers_appending_at_once_never_fork_or_gap_the_log(postgres_cluster: Cluster) -> None:
    """Two brokers' worth of writers (each its own connections, log and group commit) on one database."""
    dsn = postgres_cluster.new_database()
    key = ed25519.Ed25519PrivateKey.generate()
    per_writer = 60

    async def writer(name: str) -> list[int]:
        db = await PgDatabase.connect(dsn, MIGRATIONS_POSTGRESQL)
        audit = AuditLog(db, key, "olievlek.test/audit/1")
        await audit.load()
        committer = Committer(BrokerStore(db), audit, lambda: "00" * 32)
        committer.start()
        indices = []
        try:
            for i in range(per_writer):
                op = AppendLeaves((Leaf({"writer": name, "i": i}, (), int(time.time() * 1000)),))
                while True:  # a batch built on a stale log fails whole; the caller sends again
                    try:
                        [recorded], _head = await committer.submit(op)
                        index = recorded.index
                        break
                    except Exception:
                        await asyncio.sleep(0.005)
                indices.append(index)
        finally:
            await committer.stop()
            await db.close()
        return indices

    a, b = await asyncio.gather(writer("a"), writer("b"))
    assert sorted(a + b) == list(range(2 * per_writer))  # every leaf once: no gap, no index twice
    with psycopg.connect(dsn) as conn:
        events = conn.execute("SELECT idx, meta FROM audit_events ORDER BY idx").fetchall()
        assert [e[0] for e in events] == list(range(2 * per_writer))
        written = sorted((m["writer"], m["i"]) for m in (json.loads(bytes(e[1])) for e in events))
        assert written == sorted([("a", i) for i in range(per_writer)] + [("b", i) for i in range(per_writer)])
    assert _one_log(dsn) == 2 * per_writer


def _one_log(dsn: str) -> int:
    """The log in the database at ``dsn`` is one sequence - leaves 0..n-1, each once - and every signed head is
    a prefix of it (no fork); returns n."""
    with psycopg.connect(dsn) as conn:
        indices = [int(i) for (i,) in conn.execute("SELECT idx FROM audit_events ORDER BY idx").fetchall()]
        nodes = {(int(lv), int(ix)): bytes(h) for lv, ix, h in conn.execute("SELECT level, idx, hash FROM tree_nodes")}
        heads = conn.execute("SELECT size, root FROM tree_heads ORDER BY size").fetchall()
    assert indices == list(range(len(indices)))
    assert heads and int(heads[-1][0]) == len(indices)
    for size, root in heads:
        assert tree.fold([nodes[n] for n in tree.range_nodes(0, int(size))]) == bytes(root), size
    return len(indices)


async def test_kill_9_of_a_postgresql_broker_loses_and_repeats_nothing(tmp_path: Path,
                                                                       postgres_cluster: Cluster) -> None:
    """The chaos run of ``tests/test_chaos.py`` (kill -9 of the broker and a node at random moments, seeded),
    smaller, with the broker's store on PostgreSQL."""
    dsn = postgres_cluster.new_database()
    await run_chaos(tmp_path, {"storage": {"engine": "postgresql", "dsn": dsn}}, 300, 2, 1)


async def test_two_broker_instances_over_one_postgresql_serve_at_once_and_lose_nothing_to_kill_9(
        tmp_path: Path, postgres_cluster: Cluster) -> None:
    """Two broker instances over one database, the nodes given both addresses; each instance in turn is
    kill -9'd under load (and a node once): the nodes move to the other instance, which serves their streams
    and sends; afterwards nothing is lost, applied twice or reordered (``run_chaos``'s checks), both instances
    accepted sends and served streams, and the database holds one log that every signed head is a prefix of."""
    dsn = postgres_cluster.new_database()
    fed = await run_chaos(tmp_path, {"storage": {"engine": "postgresql", "dsn": dsn}, "instance_poll_ms": 100},
                          200, 3, 1, broker_instances=2)
    for name in fed.broker_names:
        log = fed.log(name).read_text()
        assert '"send.accepted"' in log and '"stream.open"' in log, name
    assert _one_log(dsn) > 200


@pytest.mark.parametrize("how", ["change", "delete", "reorder", "truncate-and-re-extend"])
async def test_a_rewritten_history_on_postgresql_is_caught_by_the_node(
        how: str, pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory, monkeypatch: pytest.MonkeyPatch,
        log_file: Path, postgres_cluster: Cluster) -> None:
    """The operator rewrites the log in its PostgreSQL database and recomputes every node (as
    ``tests/test_audit_broker.py`` does to the SQLite file); the node holding a verified head refuses it."""
    from olievlek.node import handlers

    monkeypatch.setattr(handlers, "ALERT_WAIT_S", 3.0)
    dsn = postgres_cluster.new_database()
    server = BrokerServer(dataclasses.replace(broker_config(pki, tmp_path), postgres_dsn=dsn))
    port = await server.start()
    gent = await nodes.start("gent", port)
    first = await open_and_alert(gent, "85.07.30-033.28")
    assert first.status == local_pb2.OUTBOX_STATUS_ACCEPTED
    await server.stop(0)
    with psycopg.connect(dsn) as conn:
        forge(conn, how, "%s")
        conn.commit()
    server = BrokerServer(dataclasses.replace(broker_config(pki, tmp_path, listen=f"127.0.0.1:{port}"),
                                              postgres_dsn=dsn))
    await server.start()
    try:
        second = await open_and_alert(gent, "93.05.18-223.61")
        assert second.status == local_pb2.OUTBOX_STATUS_PENDING  # not accepted on a forged log
    finally:
        await nodes.stop(gent)
        await server.stop(0)
    logged = log_file.read_text()
    assert "audit.alarm" in logged and ("not append-only" in logged or "forked log" in logged)
