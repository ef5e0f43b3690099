"""A broker database written by commit 395f065 (schema 7, heads signed before checkpoints) migrates and verifies.

The fixture (``tests/fixtures/broker-395f065/``, made by ``make_broker_395f065.py`` with that commit's own
code) holds three accepted move alerts Gent -> Antwerpen and one refusal, and the log key that signed them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from olievlek.broker.server import BrokerServer
from olievlek.node.broker_client import BrokerClient

from olievlek import wire
from olievlek.audit.receipts import check_extends, verify_head
from olievlek.audit.verify import full_root
from olievlek.envelope import env_of
from olievlek.policy.signing import load_public_key

from .conftest import Pki, broker_config
from .envelopes import body, seal_bytes, send_envelope, signer

pytestmark = pytest.mark.timeout(60)
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "broker-395f065"


def sqlite_rows(path: Path, sql: str) -> list[tuple[bytes, bytes]]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_an_old_log_migrates_and_its_first_checkpoint_extends_its_last_old_head(
        pki: Pki, tmp_path: Path, policy_dir: Path) -> None:
    cfg = broker_config(pki, tmp_path)
    cfg.database.parent.mkdir(parents=True)
    shutil.copy(FIXTURE / "broker.sqlite", cfg.database)
    for name in ("log.key", "log.pub"):  # the key that signed the old heads
        shutil.copy(FIXTURE / name, policy_dir / name)
    key = load_public_key(policy_dir / "log.pub")
    server = BrokerServer(dataclasses.replace(cfg))
    await server.start()
    try:
        assert server.service is not None
        audit = server.service.committer.audit
        old = [await audit.head(size) for size in range(1, 6)]
        for head in old:  # every old head still verifies, by its old signature
            assert head is not None and not head.checkpoint
            verify_head(head, key)
        last_old = old[-1]
        assert last_old is not None
        answer = await send_envelope(pki, server.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        assert answer.WhichOneof("outcome") == "receipt"
        client = BrokerClient(f"127.0.0.1:{server.port}", pki.tls("gent"))
        try:
            head = (await client.head()).head
            assert head.checkpoint and head.size > last_old.size
            verify_head(head, key, "olievlek.flanders/audit/1")
            check_extends(last_old, head, list((await client.consistency(last_old.size, head.size)).proof))
            leaves = list((await client.audit_leaves(0, 10_000)).leaf_hashes)
            assert full_root(leaves[: head.size]) == head.root
            events = [json.loads(e.metadata) for e in (await client.audit_events(0, 1000)).events]
        finally:
            await client.close()
        # The old events' readers, written by org id, now have Gent's exact identity: Gent reads its four old
        # decisions and its new one - and, for each of the three envelopes still queued, the leaf written at
        # start that binds it to its bytes (old leaves had no env): what Antwerpen is delivered is proven.
        rebinds = [e for e in events if "rebinds" in e]
        assert [e["rebinds"] for e in rebinds] == [1, 2, 3]
        assert all(e["decision"] == "accepted" and len(e["env"]) == 64 and e["at"] > 0 for e in rebinds)
        assert [e["event"] for e in events].count("send") == 5 + 3
        antwerpen = BrokerClient(f"127.0.0.1:{server.port}", pki.tls("antwerpen"))
        try:
            theirs = [json.loads(e.metadata) for e in (await antwerpen.audit_events(0, 1000)).events]
        finally:
            await antwerpen.close()
        assert len(theirs) == 4 + 3 and all(e["recipients"] == ["antwerpen"] for e in theirs)
        queued = sqlite_rows(cfg.database, "SELECT q.payload, e.meta FROM queue q JOIN audit_events e"
                             " ON e.idx = q.leaf_index WHERE q.seq <= 3 ORDER BY q.seq")
        assert [json.loads(meta)["env"] for _, meta in queued] == [env_of(bytes(raw)).hex() for raw, _ in queued]
    finally:
        await server.stop(0)


async def test_a_database_newer_than_the_build_is_refused(pki: Pki, tmp_path: Path, policy_dir: Path) -> None:
    import sqlite3

    from olievlek.errors import ConfigError

    cfg = broker_config(pki, tmp_path)
    cfg.database.parent.mkdir(parents=True)
    shutil.copy(FIXTURE / "broker.sqlite", cfg.database)
    conn = sqlite3.connect(cfg.database)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigError, match="version 99"):
        await BrokerServer(cfg).start()
