"""Building envelopes by hand for the refusal tests, including deliberately bad ones."""

from __future__ import annotations

import asyncio
import time

from olievlek.cli.local_client import call
from olievlek.node.broker_client import BrokerClient
from olievlek.node.server import NodeServer

from olievlek import wire
from olievlek.envelope import SIGNING_CONTEXT, Signer
from olievlek.v1 import broker_pb2, envelope_pb2, local_pb2, summary_pb2

from .conftest import Pki

PSEUDONYM = bytes(range(32))


def valid_nrn(first9: str) -> str:
    """A valid national register number for someone born before 2000: its check digits are 97 - the first nine
    digits mod 97."""
    return first9 + f"{97 - int(first9) % 97:02d}"


def signer(pki: Pki, org: str) -> Signer:
    c = pki.org(org)
    return Signer.from_pem(c.sign_key.read_bytes(), c.sign_cert.read_bytes())


def summary(**overrides: object) -> summary_pb2.CaseSummary:
    s = summary_pb2.CaseSummary(
        subject_pseudonym=PSEUDONYM, phase=summary_pb2.PHASE_FOLLOW_UP,
        concerns=[summary_pb2.CONCERN_CATEGORY_LEFT_WING], risk_level=summary_pb2.RISK_LEVEL_LOW,
        month_opened=summary_pb2.YearMonth(year=2026, month=3), contact_id="gent-livc",
    )
    for k, v in overrides.items():
        setattr(s, k, v)
    return s


def body(sender: str = "gent", recipients: tuple[str, ...] = ("antwerpen",), **kw: object) -> envelope_pb2.EnvelopeBody:
    b = envelope_pb2.EnvelopeBody(
        idempotency_key=str(kw.pop("key", wire.new_token())), kind=envelope_pb2.MESSAGE_KIND_ALERT_MOVE,
        sender=sender, recipients=list(recipients), purpose=envelope_pb2.PURPOSE_CONTINUITY_OF_FOLLOW_UP,
        rule_id=str(kw.pop("rule_id", "move-alert")),
        created_at_ms=int(kw.pop("created_at_ms", time.time() * 1000)),
    )
    s = kw.pop("summary_msg", None) or summary()
    b.move_alert.summary.CopyFrom(s)  # type: ignore[arg-type]
    assert not kw, kw
    return b


def seal_bytes(body_bytes: bytes, s: Signer, *, flip_signature: bool = False) -> bytes:
    """Sign exact body bytes (canonical or not) and wrap them."""
    sig = bytearray(s.key.sign(SIGNING_CONTEXT + body_bytes))
    if flip_signature:
        sig[0] ^= 0x01
    return wire.encode(envelope_pb2.Envelope(body=body_bytes, signature=bytes(sig), signer_certificate=s.cert_der))


async def send_envelope(pki: Pki, port: int, raw: bytes, org: str = "gent") -> broker_pb2.SendResponse:
    """Submit raw envelope bytes over mTLS as ``org`` and return the broker's answer."""
    client = BrokerClient(f"127.0.0.1:{port}", pki.tls(org))
    try:
        return await client.send(raw)
    finally:
        await client.close()


async def local(node: NodeServer, request: local_pb2.LocalRequest) -> local_pb2.LocalResponse:
    """One request over the node's local socket, as the CLI sends it."""
    return await asyncio.to_thread(call, node.config.socket, request)


async def open_and_alert(node: NodeServer, nrn: str, nis: int = 11002, no_wait: bool = False,
                         phase: int = summary_pb2.PHASE_PRE_ANALYSIS) -> local_pb2.AlertMoveResponse:
    """Open a case for ``nrn`` and send a move alert to the municipality of ``nis`` (Antwerpen by default).

    Pre-analysis by default: the case is not registered in the directory, so the alert is the only
    thing the node sends (tests count sends, attempts and faults)."""
    ident = local_pb2.Identity(national_number=nrn, given_names="A", family_name="B")
    case = await local(node, local_pb2.LocalRequest(
        case_open=local_pb2.CaseOpenRequest(identity=ident, phase=phase)))  # type: ignore[arg-type]
    r = await local(node, local_pb2.LocalRequest(alert_move=local_pb2.AlertMoveRequest(
        case_id=case.case_open.case_id, destination_nis=nis, no_wait=no_wait)))
    return r.alert_move
