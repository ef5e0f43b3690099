"""kill -9 of the broker inside the decision's transaction: afterwards both or neither exist."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from olievlek import wire
from olievlek.errors import TransportError

from .conftest import Pki, broker_config
from .envelopes import body, seal_bytes, send_envelope, signer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def start_broker(pki: Pki, tmp_path: Path, fault: str | None, skip: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    cfg = broker_config(pki, tmp_path)
    path = tmp_path / "broker.yaml"
    ready = tmp_path / "ready"
    ready.unlink(missing_ok=True)
    path.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0", "ca": str(cfg.tls.ca), "tls_cert": str(cfg.tls.cert), "tls_key": str(cfg.tls.key),
        "crl": str(cfg.crl), "bundle": str(cfg.bundle), "roots": str(cfg.roots), "database": str(cfg.database),
        "log_key": str(cfg.log_key), "ready_file": str(ready)}))
    env = {**os.environ, **({"OLIEVLEK_FAULT": fault, "OLIEVLEK_FAULT_SKIP": str(skip)} if fault else {})}
    proc = subprocess.Popen([sys.executable, "-m", "olievlek", "broker", "serve", "--config", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "broker did not start"
        time.sleep(0.05)
    return proc, int(ready.read_text())


def counts(db: Path) -> tuple[int, int, int]:
    conn = sqlite3.connect(db)
    try:
        q = conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
        i = conn.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0]
        leaves = conn.execute(
            "SELECT COUNT(*) FROM audit_events WHERE CAST(meta AS TEXT) LIKE '%\"event\":\"send\"%'").fetchone()[0]
    finally:
        conn.close()
    return q, i, leaves


# before_commit also fires for the start-up batch (the policy load): skip that one.
@pytest.mark.parametrize(("fault", "skip"), [("broker.after_leaf_append", 0), ("broker.before_commit", 1)])
async def test_kill_between_leaf_and_queue_leaves_neither(pki: Pki, tmp_path: Path, policy_dir: Path,
                                                          fault: str, skip: int) -> None:
    raw = seal_bytes(wire.encode(body()), signer(pki, "gent"))
    proc, port = start_broker(pki, tmp_path, fault, skip)
    try:
        with pytest.raises(TransportError):
            await send_envelope(pki, port, raw)
        assert proc.wait(10) == -9  # SIGKILL, by its own hand, inside the transaction
    finally:
        if proc.poll() is None:  # the crash point was never reached: do not leave it running
            proc.kill()
            proc.wait(10)
    db = broker_config(pki, tmp_path).database
    assert counts(db) == (0, 0, 0)  # neither the queue row, the idempotency key nor the leaf
    proc, port = start_broker(pki, tmp_path, None)
    try:
        first = await send_envelope(pki, port, raw)
        again = await send_envelope(pki, port, raw)
        assert first.WhichOneof("outcome") == "receipt" and again.receipt.body_digest == first.receipt.body_digest
        assert counts(db) == (1, 1, 1)  # both, once
    finally:
        proc.terminate()
        proc.wait(10)


async def test_sigterm_drains_the_broker_and_every_receipt_given_is_durable(pki: Pki, tmp_path: Path,
                                                                            policy_dir: Path) -> None:
    """Graceful drain: stop accepting, finish in-flight sends, flush, close; exit 0."""
    import asyncio
    import signal

    from olievlek.node.broker_client import BrokerClient

    s = signer(pki, "gent")
    raws = [seal_bytes(wire.encode(body(key=f"drain{i}")), s) for i in range(300)]
    proc, port = start_broker(pki, tmp_path, None)
    client = BrokerClient(f"127.0.0.1:{port}", pki.tls("gent"))
    try:
        tasks = [asyncio.create_task(client.send(raw, timeout=20)) for raw in raws]
        await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert await asyncio.to_thread(proc.wait, 20) == 0  # a clean exit, not a kill
    finally:
        await client.close()
        if proc.poll() is None:
            proc.kill()
    answered = {f"drain{i}" for i, r in enumerate(results) if not isinstance(r, BaseException)}
    conn = sqlite3.connect(broker_config(pki, tmp_path).database)
    try:
        durable = {k for (k,) in conn.execute("SELECT key FROM idempotency")}
    finally:
        conn.close()
    print(f"drain: {len(answered)} of {len(raws)} answered before the broker stopped")
    assert 0 < len(answered) < len(raws), "the signal must land while sends are in flight"
    assert answered <= durable  # every receipt handed out survived the shutdown
    proc, port = start_broker(pki, tmp_path, None)  # the sender resends what got no answer
    try:
        for i, raw in enumerate(raws):
            if f"drain{i}" not in answered:
                assert (await send_envelope(pki, port, raw)).WhichOneof("outcome") == "receipt"
    finally:
        proc.terminate()
        proc.wait(10)
    assert counts(broker_config(pki, tmp_path).database)[:2] == (len(raws), len(raws))  # each queued once


def test_kill_inside_an_erasure_applies_none_of_it_and_a_rerun_completes_it(tmp_path: Path) -> None:
    """kill -9 of a node after its erasure transaction destroyed the key and queued the notices, before
    the commit: on restart the case is whole and no notice exists; erasing again does all of it."""
    import json
    import tempfile

    from olievlek.cli.federation import Federation, NodeSpec

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "olievlek", *args], input=stdin, capture_output=True,
                              text=True, timeout=60, check=False)

    person = {"national_number": "85.07.30-033.28", "given_names": "A", "family_name": "Kanarie"}
    with tempfile.TemporaryDirectory(prefix="olv-crash-") as d:
        fed = Federation(Path(d), nodes=(NodeSpec("gent"), NodeSpec("antwerpen")))
        fed.create()
        fed.start()
        try:
            gent, antwerpen = str(fed.socket("gent")), str(fed.socket("antwerpen"))
            opened = cli("case", "open", "--socket", gent, "--phase", "follow-up", stdin=json.dumps(person))
            assert opened.returncode == 0
            assert cli("alert", "move", "--socket", gent, "--case", "1", "--to", "11002").returncode == 0
            fed.stop_process("gent")
            os.environ["OLIEVLEK_FAULT"] = "node.erasure_before_commit"
            try:
                fed.start_node(fed.spec("gent"))
            finally:
                del os.environ["OLIEVLEK_FAULT"]
            r = cli("subject", "erase", "--socket", gent, "--case", "1", "--reason", "subject-request",
                    "--confirm-open")
            assert r.returncode != 0  # the node died inside the transaction
            assert fed.procs["gent"].wait(10) == -9
            fed.procs.pop("gent")
            fed.start_node(fed.spec("gent"))
            shown = cli("case", "show", "--socket", gent, "--case", "1", "--purpose", "follow-up")
            assert shown.returncode == 0 and "Kanarie" in shown.stdout  # none of the erasure was applied
            assert "erasure.notice" not in cli("outbox", "--socket", gent).stdout
            r = cli("subject", "erase", "--socket", gent, "--case", "1", "--reason", "subject-request",
                    "--confirm-open")
            assert r.returncode == 0 and "antwerpen" in r.stdout, r.stdout + r.stderr
            deadline = time.monotonic() + 15
            while "inbox is empty" not in cli("inbox", "--socket", antwerpen).stdout:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        finally:
            fed.stop()
