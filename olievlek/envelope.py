"""Signed envelopes: seal a body, open and verify the exact bytes.

The signature is Ed25519 over a context prefix and the serialized
``EnvelopeBody`` bytes as they travel. Verification never re-serializes: it
checks the bytes it received, then parses them strictly (``olievlek.wire``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf.message import DecodeError, Message

from olievlek import wire
from olievlek.errors import VerificationError, WireError
from olievlek.identity import OrgIdentity
from olievlek.kinds import KindInfo, kind_of
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2, envelope_pb2

SIGNING_CONTEXT = b"olievlek/v1/envelope\x00"
LEAF_ENV_CONTEXT = b"olievlek/v1/leaf-env\x00"
LEAF_RAW_CONTEXT = b"olievlek/v1/leaf-raw\x00"


def leaf_env(signature: bytes, body: bytes) -> bytes:
    """What binds a decision's leaf to its envelope: SHA-256 over a context, the envelope's signature and its
    body. Only who holds the signed envelope - its sender, the broker, its recipients - can compute it, so
    whoever reads the leaf's metadata (an officer, a witness) cannot test a guess about a body (report keys
    are predictable and report bodies are short lists of small counts)."""
    return hashlib.sha256(LEAF_ENV_CONTEXT + signature + body).digest()


def env_of(raw: bytes) -> bytes:
    """``leaf_env`` of an envelope as sent; for bytes that are not an envelope at all, a digest of the bytes
    under another context (a refusal of garbage is still bound to the garbage)."""
    envelope = envelope_pb2.Envelope()
    try:
        envelope.ParseFromString(raw)
    except DecodeError:
        envelope.Clear()
    if envelope.signature and envelope.body:
        return leaf_env(envelope.signature, envelope.body)
    return hashlib.sha256(LEAF_RAW_CONTEXT + raw).digest()


@dataclass(frozen=True, slots=True)
class Signer:
    """An organisation's envelope-signing key and certificate."""

    key: ed25519.Ed25519PrivateKey
    cert_der: bytes

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes) -> Signer:
        from cryptography import x509

        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise TypeError("envelope-signing key must be Ed25519")
        der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
        return cls(key, der)


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    """An envelope whose signature and signer certificate have been verified."""

    raw: bytes
    body_bytes: bytes
    body: envelope_pb2.EnvelopeBody
    kind: KindInfo
    signer: OrgIdentity

    @property
    def digest(self) -> bytes:
        return body_digest(self.body_bytes)

    @property
    def payload(self) -> Message:
        value: Message = getattr(self.body, self.kind.payload_field)
        return value


def body_digest(body_bytes: bytes) -> bytes:
    return hashlib.sha256(body_bytes).digest()


def seal(body: envelope_pb2.EnvelopeBody, signer: Signer) -> bytes:
    """Serialize, sign and wrap a body; returns the Envelope bytes to send."""
    body_bytes = wire.encode(body)
    signature = signer.key.sign(SIGNING_CONTEXT + body_bytes)
    env = envelope_pb2.Envelope(
        body=body_bytes, signature=signature, signer_certificate=signer.cert_der
    )
    return wire.encode(env)


def body_of(raw: bytes) -> envelope_pb2.EnvelopeBody:
    """The body of envelope bytes a node keeps in its own store: verified when they arrived (or signed
    there), so read without checking again."""
    return envelope_pb2.EnvelopeBody.FromString(envelope_pb2.Envelope.FromString(raw).body)


# The largest envelope a sender may submit (SendRequest.envelope's bound, for batch items too).
MAX_ENVELOPE_BYTES = 81_920


def parse(raw: bytes) -> tuple[envelope_pb2.Envelope, envelope_pb2.EnvelopeBody, KindInfo]:
    """Strictly parse an envelope and its body, without checking the signature.

    Raises:
        WireError: anything that does not follow the wire contract.
    """
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise WireError(f"an envelope holds at most {MAX_ENVELOPE_BYTES} bytes, this one {len(raw)}",
                        refusal_code=broker_pb2.REFUSAL_CODE_BOUND_EXCEEDED, field="envelope")
    env = wire.parse_strict(envelope_pb2.Envelope, raw)
    body = wire.parse_strict(envelope_pb2.EnvelopeBody, env.body)
    return env, body, kind_of(body)


def verify(
    raw: bytes,
    env: envelope_pb2.Envelope,
    body: envelope_pb2.EnvelopeBody,
    kind: KindInfo,
    trust: TrustAnchor,
    now: dt.datetime | None = None,
) -> OpenedEnvelope:
    """Check the signer certificate and the signature over the exact body bytes.

    Raises:
        VerificationError: bad signer certificate, signer is not the sender, bad signature.
    """
    identity, key = trust.verify_signer(env.signer_certificate, now)
    if identity.org_id != body.sender:
        raise VerificationError(
            f"envelope sender {body.sender!r} is not the signing certificate's organisation "
            f"{identity.org_id!r}",
            refusal_code=broker_pb2.REFUSAL_CODE_SENDER_MISMATCH, field="sender",
        )
    try:
        key.verify(env.signature, SIGNING_CONTEXT + env.body)
    except InvalidSignature:
        raise VerificationError(
            "envelope signature does not verify over the body bytes",
            refusal_code=broker_pb2.REFUSAL_CODE_BAD_SIGNATURE, field="signature",
        ) from None
    return OpenedEnvelope(raw, env.body, body, kind, identity)


def open_envelope(raw: bytes, trust: TrustAnchor, now: dt.datetime | None = None) -> OpenedEnvelope:
    """Parse strictly and verify. What a recipient node does with every delivery."""
    env, body, kind = parse(raw)
    return verify(raw, env, body, kind, trust, now)
