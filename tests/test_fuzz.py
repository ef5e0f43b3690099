"""Mutated signed envelopes against a real broker: every answer is a receipt or a refusal with a code.

Mutations: bytes flipped in the envelope; the body flipped and then signed again with the sender's real
key (so the broker's parsing, policy and routing see it, not only the signature check); body fields set to
random values and signed again; the signer certificate's DER flipped; cuts and tails. Each batch carries
one untouched envelope at a random place, which must still get its receipt: a bad item never spoils the
others. ``make test`` runs ``FUZZ_COUNT`` (2,000) mutations; ``make chaos`` many more. The seed is printed
(``FUZZ_SEED`` replays a run).
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import grpc
import pytest
from olievlek.broker.server import BrokerServer
from olievlek.broker.service import Limits

from olievlek import transport, wire
from olievlek.envelope import SIGNING_CONTEXT, Signer
from olievlek.ratelimit import Limit
from olievlek.v1 import broker_pb2, broker_pb2_grpc, envelope_pb2

from .conftest import Pki, broker_config
from .envelopes import body, seal_bytes, signer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
COUNT = int(os.environ.get("FUZZ_COUNT", "2000"))
SEED = int(os.environ.get("FUZZ_SEED", "20261207"))
BATCH = 100


def _flip(data: bytes, rng: random.Random, n: int) -> bytes:
    out = bytearray(data)
    for _ in range(n):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _resigned(body_bytes: bytes, s: Signer) -> bytes:
    return wire.encode(envelope_pb2.Envelope(body=body_bytes, signature=s.key.sign(SIGNING_CONTEXT + body_bytes),
                                             signer_certificate=s.cert_der))


def _random_fields(rng: random.Random, s: Signer) -> bytes:
    b = body()
    choice = rng.randrange(6)
    if choice == 0:
        b.kind = rng.randrange(0, 20)  # type: ignore[assignment]
    elif choice == 1:
        del b.recipients[:]
        b.recipients.extend(rng.choice(["gent", "antwerpen", "leuven", "g__t", "", "a" * 70, "x"])
                            for _ in range(rng.randrange(0, 5)))
    elif choice == 2:
        b.purpose = rng.randrange(0, 20)  # type: ignore[assignment]
    elif choice == 3:
        b.rule_id = rng.choice(["move-alert", "handover-release", "", "nope", "disclosure-response", "UPPER"])
    elif choice == 4:
        b.created_at_ms = rng.choice([0, 1, 2**63 - 1, b.created_at_ms + 10**9])
    else:
        b.move_alert.summary.phase = rng.randrange(0, 12)  # type: ignore[assignment]
    return _resigned(b.SerializeToString(deterministic=True), s)


def mutate(rng: random.Random, s: Signer) -> bytes:
    valid_body = wire.encode(body())
    valid = _resigned(valid_body, s)
    kind = rng.randrange(6)
    if kind == 0:
        return _flip(valid, rng, rng.randrange(1, 6))
    if kind == 1:
        return _resigned(_flip(valid_body, rng, rng.randrange(1, 4)), s)
    if kind == 2:
        return _random_fields(rng, s)
    if kind == 3:
        env = envelope_pb2.Envelope.FromString(valid)
        env.signer_certificate = _flip(env.signer_certificate, rng, rng.randrange(1, 4))
        return wire.encode(env)
    if kind == 4:
        return valid[: rng.randrange(len(valid))]
    return valid + rng.randbytes(rng.randrange(1, 12))


async def test_mutated_envelopes_get_a_receipt_or_a_coded_refusal(pki: Pki, tmp_path: Path,
                                                                  policy_dir: Path) -> None:
    print(f"fuzz seed {SEED}, {COUNT} mutations (replay: FUZZ_SEED={SEED} FUZZ_COUNT={COUNT})")
    rng = random.Random(SEED)
    # Parsing is what is tested here, not the rate limits (tests/test_hardening.py has those).
    limits = Limits(calls=Limit(1e6, 1e6), reads=Limit(1e6, 1e6), refusals=Limit(1e6, 1e6))
    server = BrokerServer(dataclasses.replace(broker_config(pki, tmp_path), limits=limits))
    await server.start()
    s = signer(pki, "gent")
    outcomes: dict[str, int] = {}
    try:
        async with transport.secure_channel(f"127.0.0.1:{server.port}", pki.tls("gent")) as channel:
            stub = broker_pb2_grpc.BrokerStub(channel)
            done = 0
            while done < COUNT:
                n = min(BATCH, COUNT - done)
                items = [mutate(rng, s) for _ in range(n)]
                control_at = rng.randrange(n + 1)
                items.insert(control_at, seal_bytes(wire.encode(body()), s))
                try:
                    answer = await stub.SendBatch(broker_pb2.SendBatchRequest(envelopes=items), timeout=60)
                except grpc.aio.AioRpcError as exc:
                    pytest.fail(f"batch after {done} mutations ended in {exc.code().name}: {exc.details()}")
                assert len(answer.responses) == len(items)
                for i, r in enumerate(answer.responses):
                    which = r.WhichOneof("outcome")
                    if i == control_at:
                        assert which == "receipt", r
                        continue
                    assert which in ("receipt", "refusal"), r
                    if which == "refusal":
                        assert r.refusal.code != 0, r
                        name = broker_pb2.RefusalCode.Name(r.refusal.code)
                        outcomes[name] = outcomes.get(name, 0) + 1
                    else:
                        outcomes["receipt"] = outcomes.get("receipt", 0) + 1
                done += n
    finally:
        await server.stop(0)
    print(f"outcomes: {dict(sorted(outcomes.items()))}")
    assert sum(outcomes.values()) == COUNT
    assert len(outcomes) >= 5  # the mutations reached many different checks
