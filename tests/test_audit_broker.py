"""The broker's audit log as its operator would attack it, and as a sender sees it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from olievlek.broker.server import BrokerServer
from olievlek.node.broker_client import BrokerClient

from olievlek import wire
from olievlek.audit import tree
from olievlek.audit.log import canonical, leaf_of
from olievlek.audit.receipts import verify_receipt
from olievlek.policy.signing import load_public_key
from olievlek.v1 import broker_pb2, local_pb2, summary_pb2

from .conftest import NodeFactory, Pki, broker_config
from .envelopes import body, open_and_alert, seal_bytes, send_envelope, signer, summary

pytestmark = pytest.mark.timeout(90)


async def test_a_refusal_carries_a_proven_leaf_with_the_same_reason(pki: Pki, broker: BrokerServer,
                                                                    policy_dir: Path) -> None:
    s = summary()
    s.agencies.append(summary_pb2.AGENCY_ROLE_CAW)
    resp = await send_envelope(pki, broker.port, seal_bytes(wire.encode(body(summary_msg=s)), signer(pki, "gent")))
    refusal = resp.refusal
    assert refusal.code == broker_pb2.REFUSAL_CODE_POLICY_DENIED
    meta = verify_receipt(refusal.audit, load_public_key(policy_dir / "log.pub"),
                          {"decision": "refused", "sender": "gent"})
    assert meta["reason"] == "policy_denied" and meta["field"] == "summary.agencies" and meta["rule"] == "move-alert"
    assert "summary.agencies" in meta["fields"] and meta["phase"] == "follow_up"
    ok = await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
    meta = verify_receipt(ok.receipt.audit, load_public_key(policy_dir / "log.pub"),
                          {"decision": "accepted", "sender": "gent"})
    assert meta["recipients"] == ["antwerpen"] and ok.receipt.audit.head.size > refusal.audit.head.size


async def test_leaves_hold_no_pseudonym_or_contact(pki: Pki, broker: BrokerServer) -> None:
    canary = bytes(range(100, 132))
    await send_envelope(pki, broker.port, seal_bytes(wire.encode(body(summary_msg=summary(subject_pseudonym=canary))),
                                            signer(pki, "gent")))
    assert broker._store is not None
    rows = await broker._store.db.fetchall("SELECT salt, meta FROM audit_events")
    nodes = await broker._store.db.fetchall("SELECT hash FROM tree_nodes")
    blob = b"".join(bytes(r[0]) + bytes(r[1] or b"") for r in rows) + b"".join(bytes(n[0]) for n in nodes)
    assert canary not in blob and canary.hex().encode() not in blob and b"gent-livc" not in blob
    assert b"send" in blob  # positive control: the scan looks at real metadata


def _rebuild_forged_tree(db_path: Path, how: str) -> None:
    """What a broker operator would do: rewrite the leaves, then recompute every stored node."""
    import sqlite3

    conn = sqlite3.connect(db_path)
    forge(conn, how, "?")
    conn.commit()
    conn.close()


def forge(conn: Any, how: str, mark: str) -> None:
    """The forgery on any DB-API connection whose placeholder is ``mark`` (SQLite ``?``, psycopg ``%s``)."""
    import os

    rows = [tuple(r) for r in conn.execute("SELECT idx, salt, meta, orgs, at_ms FROM audit_events ORDER BY idx")
            .fetchall()]
    if how == "change":
        forged = json.loads(rows[1][2])
        forged["decision"] = "refused" if forged.get("decision") == "accepted" else "accepted"
        rows[1] = (rows[1][0], rows[1][1], canonical(forged), rows[1][3], rows[1][4])
    elif how == "delete":
        rows = [rows[0], *[(r[0] - 1, *r[1:]) for r in rows[2:]]]
    elif how == "reorder":
        rows = [(0, *rows[1][1:]), (1, *rows[0][1:]), *rows[2:]]
    elif how == "truncate-and-re-extend":
        rows = [*rows[:1], (1, os.urandom(16), canonical({"event": "send", "sender": "gent"}), "gent", 0)]
    marks5, marks3 = ", ".join([mark] * 5), ", ".join([mark] * 3)
    conn.execute("DELETE FROM audit_events")
    conn.cursor().executemany(f"INSERT INTO audit_events (idx, salt, meta, orgs, at_ms) VALUES ({marks5})",
                              [(i, bytes(s), bytes(m), o, a) for i, s, m, o, a in rows])
    conn.execute("DELETE FROM tree_nodes")
    nodes: dict[tree.NodeId, bytes] = {}
    for idx, s, m, _orgs, _at in rows:
        for node, h in tree.new_nodes(idx, leaf_of(bytes(s), bytes(m)), nodes.__getitem__):
            nodes[node] = h
    conn.cursor().executemany(f"INSERT INTO tree_nodes (level, idx, hash) VALUES ({marks3})",
                              [(lv, i, h) for (lv, i), h in nodes.items()])


@pytest.mark.parametrize("how", ["change", "delete", "reorder", "truncate-and-re-extend"])
async def test_a_rewritten_history_is_caught_by_the_node(how: str, pki: Pki, tmp_path: Path, policy_dir: Path,
                                                         nodes: NodeFactory, monkeypatch: pytest.MonkeyPatch,
                                                         log_file: Path) -> None:
    from olievlek.node import handlers

    monkeypatch.setattr(handlers, "ALERT_WAIT_S", 3.0)
    broker = BrokerServer(broker_config(pki, tmp_path))
    port = await broker.start()
    gent = await nodes.start("gent", port)
    first = await open_and_alert(gent, "85.07.30-033.28")
    assert first.status == local_pb2.OUTBOX_STATUS_ACCEPTED  # the node now holds a verified head
    await broker.stop(0)
    _rebuild_forged_tree(tmp_path / "broker" / "broker.sqlite", how)
    # The operator restarts on the forged file; new heads are signed with the real log key.
    broker = BrokerServer(broker_config(pki, tmp_path, listen=f"127.0.0.1:{port}"))
    await broker.start()
    try:
        second = await open_and_alert(gent, "93.05.18-223.61")
        assert second.status == local_pb2.OUTBOX_STATUS_PENDING  # not accepted on a forged log
        assert gent._store is not None
        [row] = [r for r in await gent._store.outbox_rows("pending") if r.kind == "alert.move"]
        assert row.id == second.outbox_id
    finally:
        await nodes.stop(gent)
        await broker.stop(0)
    logged = log_file.read_text()
    assert "audit.alarm" in logged
    assert "not append-only" in logged or "forked log" in logged


async def test_a_data_protection_officer_sees_all_and_others_their_own(pki: Pki, broker: BrokerServer) -> None:
    from olievlek.identity import OrgId, OrgIdentity, OrgKind
    from olievlek.transport import TlsFiles

    await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
    await send_envelope(pki, broker.port, seal_bytes(wire.encode(body(sender="leuven", summary_msg=summary(
        contact_id="leuven-livc"))), signer(pki, "leuven")), org="leuven")
    dpo = pki.ca.issue_org(OrgIdentity(OrgKind.MONITOR, OrgId("vvsg")))  # the bundle names vvsg as DPO
    seen = {}
    for org, tls in (("gent", pki.tls("gent")), ("leuven", pki.tls("leuven")),
                     ("vvsg", TlsFiles(pki.root / "ca.pem", dpo.tls_cert, dpo.tls_key))):
        client = BrokerClient(f"127.0.0.1:{broker.port}", tls)
        try:
            seen[org] = [json.loads(e.metadata) for e in (await client.audit_events(0, 100)).events]
        finally:
            await client.close()
    assert [m["sender"] for m in seen["gent"]] == ["gent"]
    assert [m["sender"] for m in seen["leuven"]] == ["leuven"]
    assert {m.get("event") for m in seen["vvsg"]} == {"policy.load", "send"} and len(seen["vvsg"]) == 3


async def test_metadata_retention_keeps_the_tree_verifiable(pki: Pki, broker: BrokerServer, policy_dir: Path) -> None:
    from olievlek.audit.verify import full_root

    await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
    assert broker.service is not None
    audit = broker.service.committer.audit
    head = await audit.head()
    assert head is not None
    erased = await audit.erase_metadata_before(2**62)
    assert erased == head.size
    assert broker._store is not None
    assert await broker._store.db.fetchall("SELECT meta FROM audit_events WHERE meta IS NOT NULL") == []
    assert full_root(await audit.leaf_hashes(0, head.size)) == head.root  # the tree still verifies
    client = BrokerClient(f"127.0.0.1:{broker.port}", pki.tls("gent"))
    try:
        events = (await client.audit_events(0, 100)).events
    finally:
        await client.close()
    assert events and all(e.metadata == b"" for e in events)
