"""Every smuggling and replay case, sent over real mTLS to a real broker, refused with a named reason."""

from __future__ import annotations

import time

import pytest
from olievlek.broker.server import BrokerServer

from olievlek import wire
from olievlek.v1 import broker_pb2, summary_pb2

from .conftest import Pki
from .envelopes import body, seal_bytes, send_envelope, signer, summary

pytestmark = pytest.mark.timeout(60)


async def send(pki: Pki, broker: BrokerServer, raw: bytes, as_org: str = "gent") -> broker_pb2.SendResponse:
    return await send_envelope(pki, broker.port, raw, as_org)


def code_name(resp: broker_pb2.SendResponse) -> str:
    assert resp.WhichOneof("outcome") == "refusal", resp
    return str(broker_pb2.RefusalCode.Name(resp.refusal.code))


async def decisions(broker: BrokerServer) -> list[tuple[str, str, str]]:
    assert broker.service is not None
    return [(d.decision, d.reason, d.field) for d in await broker.service.store.decisions()]


async def test_valid_envelope_gets_a_receipt(pki: Pki, broker: BrokerServer) -> None:
    raw = seal_bytes(wire.encode(body()), signer(pki, "gent"))
    resp = await send(pki, broker, raw)
    assert resp.WhichOneof("outcome") == "receipt"
    assert list(resp.receipt.recipients) == ["antwerpen"]
    assert resp.receipt.rule_id == "move-alert"
    assert await decisions(broker) == [("accepted", "", "")]


def _unknown_nested() -> bytes:
    s = summary_pb2.CaseSummary()
    s.ParseFromString(wire.encode(summary()) + b"\x78\x01")  # field 15, varint: not in the schema
    return wire.encode(body(summary_msg=s))


def _non_canonical() -> bytes:
    return wire.encode(body()) + b"\x10\x01"  # kind repeated at the end: same meaning, other bytes


def _bad_enum() -> bytes:
    s = summary()
    s.phase = 99  # type: ignore[assignment]
    return wire.encode(body(summary_msg=s))


def _oversize_repeated() -> bytes:
    s = summary()
    s.concerns.extend([summary_pb2.CONCERN_CATEGORY_ISLAMIST] * 8)
    return wire.encode(body(summary_msg=s))


def _duplicate_repeated() -> bytes:
    s = summary()
    s.concerns.extend([summary_pb2.CONCERN_CATEGORY_LEFT_WING])
    return wire.encode(body(summary_msg=s))


def _pseudonym_33() -> bytes:
    return wire.encode(body(summary_msg=summary(subject_pseudonym=bytes(33))))


def _unspecified_enum() -> bytes:
    s = summary()
    s.concerns.append(summary_pb2.CONCERN_CATEGORY_UNSPECIFIED)
    return wire.encode(body(summary_msg=s))


def _free_text_contact() -> bytes:
    return wire.encode(body(summary_msg=summary(contact_id="Call Jan on 0470 12 34 56")))


def _stale() -> bytes:
    return wire.encode(body(created_at_ms=int(time.time() * 1000) - 6 * 60 * 1000))


CASES = [
    ("unknown-nested-field", _unknown_nested, "REFUSAL_CODE_UNKNOWN_FIELD", "move_alert.summary"),
    ("non-canonical", _non_canonical, "REFUSAL_CODE_NON_CANONICAL", "EnvelopeBody"),
    ("undeclared-enum", _bad_enum, "REFUSAL_CODE_INVALID_ENUM", "move_alert.summary.phase"),
    ("unspecified-enum", _unspecified_enum, "REFUSAL_CODE_INVALID_ENUM", "move_alert.summary.concerns"),
    ("oversize-repeated", _oversize_repeated, "REFUSAL_CODE_BOUND_EXCEEDED", "move_alert.summary.concerns"),
    ("duplicate-repeated", _duplicate_repeated, "REFUSAL_CODE_INVALID_FIELD", "move_alert.summary.concerns"),
    ("pseudonym-33-bytes", _pseudonym_33, "REFUSAL_CODE_INVALID_FIELD", "move_alert.summary.subject_pseudonym"),
    ("free-text", _free_text_contact, "REFUSAL_CODE_INVALID_FIELD", "move_alert.summary.contact_id"),
    ("stale-created-at", _stale, "REFUSAL_CODE_STALE", "created_at_ms"),
]


@pytest.mark.parametrize(("make", "code", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_smuggling_is_refused_and_recorded(pki: Pki, broker: BrokerServer, make, code: str, field: str) -> None:
    resp = await send(pki, broker, seal_bytes(make(), signer(pki, "gent")))
    assert code_name(resp) == code
    assert resp.refusal.field == field
    assert resp.refusal.detail  # says what is wrong
    assert await decisions(broker) == [("refused", code.removeprefix("REFUSAL_CODE_").lower(), field)]
    assert broker.service is not None
    assert await broker.service.store.pending("antwerpen", 0, 10) == []


async def test_bad_signature(pki: Pki, broker: BrokerServer) -> None:
    resp = await send(pki, broker, seal_bytes(wire.encode(body()), signer(pki, "gent"), flip_signature=True))
    assert code_name(resp) == "REFUSAL_CODE_BAD_SIGNATURE"
    assert "signature" in resp.refusal.detail


async def test_sender_other_than_certificate_is_refused(pki: Pki, broker: BrokerServer) -> None:
    # Gent's TLS identity, an envelope claiming to come from Antwerpen, even validly signed by Antwerpen's key.
    raw = seal_bytes(wire.encode(body(sender="antwerpen", recipients=("leuven",))), signer(pki, "antwerpen"))
    resp = await send(pki, broker, raw, as_org="gent")
    assert code_name(resp) == "REFUSAL_CODE_SENDER_MISMATCH"
    assert "'antwerpen'" in resp.refusal.detail and "'gent'" in resp.refusal.detail
    assert "TLS client certificate" in resp.refusal.detail


async def test_signer_other_than_sender_is_refused(pki: Pki, broker: BrokerServer) -> None:
    raw = seal_bytes(wire.encode(body(sender="gent")), signer(pki, "antwerpen"))
    resp = await send(pki, broker, raw, as_org="gent")
    assert code_name(resp) == "REFUSAL_CODE_SENDER_MISMATCH"
    assert "signing certificate" in resp.refusal.detail


async def test_same_key_same_body_returns_original_receipt(pki: Pki, broker: BrokerServer) -> None:
    raw = seal_bytes(wire.encode(body(key="k-1")), signer(pki, "gent"))
    first = await send(pki, broker, raw)
    second = await send(pki, broker, raw)
    assert first.WhichOneof("outcome") == "receipt"
    assert second.SerializeToString() == first.SerializeToString()
    assert broker.service is not None
    assert len(await broker.service.store.pending("antwerpen", 0, 10)) == 1  # queued once


async def test_same_key_other_body_is_refused(pki: Pki, broker: BrokerServer) -> None:
    s = signer(pki, "gent")
    first = await send(pki, broker, seal_bytes(wire.encode(body(key="k-2")), s))
    assert first.WhichOneof("outcome") == "receipt"
    other = body(key="k-2", summary_msg=summary(risk_level=summary_pb2.RISK_LEVEL_HIGH))
    resp = await send(pki, broker, seal_bytes(wire.encode(other), s))
    assert code_name(resp) == "REFUSAL_CODE_IDEMPOTENCY_CONFLICT"
    assert broker.service is not None
    assert len(await broker.service.store.pending("antwerpen", 0, 10)) == 1  # nothing lost, nothing added


async def test_default_deny_names_field_and_rule(pki: Pki, broker: BrokerServer) -> None:
    s = summary()
    s.agencies.append(summary_pb2.AGENCY_ROLE_POLICE)
    resp = await send(pki, broker, seal_bytes(wire.encode(body(summary_msg=s)), signer(pki, "gent")))
    assert code_name(resp) == "REFUSAL_CODE_POLICY_DENIED"
    assert resp.refusal.field == "summary.agencies"
    assert resp.refusal.rule_id == "move-alert"


async def test_unknown_rule_is_default_deny(pki: Pki, broker: BrokerServer) -> None:
    resp = await send(pki, broker, seal_bytes(wire.encode(body(rule_id="no-such-rule")), signer(pki, "gent")))
    assert code_name(resp) == "REFUSAL_CODE_POLICY_DENIED"
    assert "default deny" in resp.refusal.detail


async def test_unregistered_contact_is_refused(pki: Pki, broker: BrokerServer) -> None:
    raw = seal_bytes(wire.encode(body(summary_msg=summary(contact_id="leuven-livc"))), signer(pki, "gent"))
    resp = await send(pki, broker, raw)
    assert code_name(resp) == "REFUSAL_CODE_POLICY_DENIED"
    assert resp.refusal.field == "summary.contact_id"


async def test_unknown_recipient_is_refused(pki: Pki, broker: BrokerServer) -> None:
    raw = seal_bytes(wire.encode(body(recipients=("brugge",))), signer(pki, "gent"))
    resp = await send(pki, broker, raw)
    assert code_name(resp) == "REFUSAL_CODE_UNKNOWN_RECIPIENT"
