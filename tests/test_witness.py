"""Witnesses over C2SP tlog-witness: the broker pushes checkpoints, the witness cosigns only what extends
what it cosigned, and a broker that shows two organisations two histories is caught."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from olievlek.broker.pusher import post, request_body
from olievlek.broker.server import BrokerServer
from olievlek.node.server import NodeServer
from olievlek.witness.protocol import EMPTY_ROOT
from olievlek.witness.witness import Witness, WitnessConfig

from olievlek import wire
from olievlek.audit import checkpoint, note
from olievlek.audit.checkpoint import Checkpoint, origin_for
from olievlek.errors import VerificationError
from olievlek.policy.signing import load_signing_key

from .conftest import WITNESS, WITNESS_KEY_NAME, NodeFactory, Pki, broker_config
from .envelopes import body, seal_bytes, send_envelope, signer

pytestmark = pytest.mark.timeout(90)
ORIGIN = origin_for("flanders")


def witness_config(pki: Pki, policy_dir: Path, db: Path) -> WitnessConfig:
    server = pki.root / "servers" / WITNESS
    return WitnessConfig(org_id=WITNESS, key_name=WITNESS_KEY_NAME, sign_key=pki.org(WITNESS).sign_key,
                         logs=((ORIGIN, policy_dir / "log.pub"),), database=db,
                         server_cert=server / "tls.pem", server_key=server / "tls.key")


@pytest.fixture
async def witness(pki: Pki, policy_dir: Path, tmp_path: Path) -> AsyncIterator[Witness]:
    w = await Witness.open(witness_config(pki, policy_dir, tmp_path / "witness.sqlite"))
    await w.start()
    yield w
    await w.close()


async def pushing_broker(pki: Pki, tmp_path: Path, witness: Witness, folder: str = "broker") -> BrokerServer:
    cfg = dataclasses.replace(broker_config(pki, tmp_path), database=tmp_path / folder / "broker.sqlite",
                              witness_push=((f"witness/{WITNESS}", f"https://127.0.0.1:{witness.port}"),),
                              push_interval_s=3600)  # the tests push when they choose
    server = BrokerServer(cfg)
    await server.start()
    return server


async def with_quorum(nodes: NodeFactory, org: str, port: int) -> NodeServer:
    """A node that demands one cosignature of the bundle's witness (its configuration raises the quorum)."""
    node = await nodes.start(org, port, witness_quorum=1)
    assert node.audit is not None
    return node


async def test_the_witness_cosigns_pushed_checkpoints_and_nodes_see_the_quorum(
    pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory, witness: Witness
) -> None:
    broker = await pushing_broker(pki, tmp_path, witness)
    try:
        assert broker.pusher is not None
        assert await broker.pusher.push_once() == {f"witness/{WITNESS}": 200}
        await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        assert await broker.pusher.push_once() == {f"witness/{WITNESS}": 200}  # from the size it cosigned
        gent = await with_quorum(nodes, "gent", broker.port)
        assert gent.audit is not None
        assert (await gent.audit.check_witnessed()).witnesses == [f"witness/{WITNESS}"]
        # Witness lag is no alarm: nodes check the latest *cosigned* head against their own.
        await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        assert (await gent.audit.check_witnessed()).witnesses == [f"witness/{WITNESS}"]
        # A witness that lost its state (answers 409 with its size 0) is sent the checkpoint again from 0.
        broker.pusher._known[f"witness/{WITNESS}"] = 1
        assert await broker.pusher.push_once() == {f"witness/{WITNESS}": 200}
        assert broker.pusher.pushes >= 4
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        await broker.stop(0)


async def test_a_split_view_is_refused_by_the_witness_and_alarms_the_node(
    pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory, witness: Witness, log_file: Path
) -> None:
    real = await pushing_broker(pki, tmp_path, witness)
    # The fork: the same log key, another history (its own leaves), served to Antwerpen only.
    fork = await pushing_broker(pki, tmp_path, witness, folder="fork")
    try:
        assert real.pusher is not None and fork.pusher is not None
        await send_envelope(pki, real.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        assert await real.pusher.push_once() == {f"witness/{WITNESS}": 200}  # cosigns the real history
        for _ in range(3):
            await send_envelope(pki, fork.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        # The fork learns the witness's size (409) and sends its own proof from there: it does not verify.
        assert await fork.pusher.push_once() == {f"witness/{WITNESS}": 422}
        assert fork.service is not None
        assert await fork.service.store.latest_cosigned_size() is None
        gent = await with_quorum(nodes, "gent", real.port)
        antwerpen = await with_quorum(nodes, "antwerpen", fork.port)
        assert gent.audit is not None and antwerpen.audit is not None
        assert (await gent.audit.check_witnessed()).witnesses == [f"witness/{WITNESS}"]
        with pytest.raises(VerificationError, match="private view"):
            await antwerpen.audit.check_witnessed()
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        await real.stop(0)
        await fork.stop(0)
    logged = log_file.read_text()
    assert "witness.alarm" in logged and "audit.witness_alarm" in logged and "push.refused" in logged


# -- the protocol's status codes, for each case of c2sp.org/tlog-witness --------------------------------------
def _signed(size: int, root: bytes, key: ed25519.Ed25519PrivateKey, origin: str = ORIGIN) -> bytes:
    return checkpoint.sign(Checkpoint(origin, size, root), key).encode()


def _root(leaves: list[bytes]) -> bytes:
    from olievlek.audit.verify import full_root

    return full_root(leaves)


LEAVES = [bytes([42, i]) + bytes(30) for i in range(5)]  # leaf hashes, as litetlog's test log


def _consistency(m: int, n: int) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF over LEAVES: a naive reference, apart from the code under test."""
    def subproof(m: int, ls: list[bytes], complete: bool) -> list[bytes]:
        if m == len(ls):
            return [] if complete else [_root(ls)]
        k = 1 << ((len(ls) - 1).bit_length() - 1)
        if m <= k:
            return [*subproof(m, ls[:k], complete), _root(ls[k:])]
        return [*subproof(m - k, ls[k:], False), _root(ls[:k])]
    return subproof(m, LEAVES[:n], True)


async def test_the_witness_answers_each_case_with_the_specified_status(
        pki: Pki, policy_dir: Path, witness: Witness) -> None:
    from olievlek.audit.verify import verify_consistency

    log_key = load_signing_key(policy_dir / "log.key")
    tls = ssl.create_default_context(cafile=str(pki.root / "ca.pem"))
    url = f"https://127.0.0.1:{witness.port}/add-checkpoint"

    async def push(old: int, proof: list[bytes], size: int, root: bytes,
                   key: ed25519.Ed25519PrivateKey = log_key, origin: str = ORIGIN) -> tuple[int, bytes]:
        body = request_body(old, proof, _signed(size, root, key, origin))
        reply = await asyncio.to_thread(post, url, body, tls)  # the witness serves on this event loop
        return reply.status, reply.body

    r1, r3, r5 = (_root(LEAVES[:n]) for n in (1, 3, 5))
    verify_consistency(1, 3, _consistency(1, 3), r1, r3)  # the reference is right
    assert (await asyncio.to_thread(post, url, b"not a request", tls)).status == 400
    assert (await push(0, [], 1, r1, origin="olievlek.elsewhere/audit/1"))[0] == 404
    stranger = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([9] * 32))
    assert (await push(0, [], 1, r1, key=stranger))[0] == 403  # not the log's key
    assert (await push(3, [], 1, r1))[0] == 400  # old size above the checkpoint's
    assert (await push(0, [LEAVES[0]], 1, r1))[0] == 422  # a proof with old size 0
    assert (await push(0, [], 0, r1))[0] == 422  # size 0 needs the empty tree's root
    status, answer = await push(0, [], 1, r1)
    assert status == 200
    cosigned = note.parse(Checkpoint(ORIGIN, 1, r1).text + "\n" + answer.decode())
    assert note.verify(cosigned, witness.core.verifier)  # a cosignature/v1 by the witness's key
    assert await push(0, [], 3, r3) == (409, b"1\n")  # stale: it says the size it holds ...
    stale = await asyncio.to_thread(post, url, request_body(0, [], _signed(3, r3, log_key)), tls)
    assert stale.content_type == "text/x.tlog.size"  # ... as the size media type
    assert (await push(1, _consistency(1, 3)[:-1], 3, r3))[0] == 422  # a proof that does not verify
    assert (await push(1, _consistency(1, 3), 3, r3))[0] == 200
    other3 = _root([LEAVES[0], LEAVES[1], bytes(32)])
    assert (await push(3, [], 3, other3))[0] == 422  # the same size with another root: never cosigned
    assert (await push(3, _consistency(3, 5), 5, r5))[0] == 200
    assert (await witness.core.latest(ORIGIN) or (0, b""))[0] == 5
    assert (await push(0, [], 0, EMPTY_ROOT))[0] == 409
    assert base64.b64encode(EMPTY_ROOT) == b"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


async def test_a_polling_witness_still_cosigns_for_one_release(pki: Pki, tmp_path: Path, policy_dir: Path,
                                                               broker: BrokerServer) -> None:
    cfg = dataclasses.replace(witness_config(pki, policy_dir, tmp_path / "poller.sqlite"), server_cert=None,
                              server_key=None, broker=f"127.0.0.1:{broker.port}", tls=pki.tls(WITNESS))
    poller = await Witness.open(cfg)
    try:
        await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
        assert await poller.poll_once() == 200
        assert broker.service is not None
        head = await broker.service.committer.audit.head()
        assert head is not None and await broker.service.store.latest_cosigned_size() == head.size
    finally:
        await poller.close()
