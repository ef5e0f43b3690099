"""The reference directory's shared vocabulary: signed coverage statements and answer rows.

A holder signs one ``CoverageStatement`` per (recipient kind, purpose, rule) its
entry may be answered to, with the same Ed25519 key as its envelopes but under
its own context, so a statement can never pass for an envelope or the reverse.
The broker verifies statements once, at registration, and keeps them as
evidence next to a compact ``covers`` string it reads at query time; the holder
re-verifies that evidence (``olievlek directory verify``).

Every answer row has the same length whatever it says (``ROW_BYTES``): one
outcome byte, then ``CONTACT_SLOTS`` slots of ``SLOT_BYTES`` holding a contact id
padded with zero bytes. The sizes of hit and no-hit answers are therefore equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek import wire
from olievlek.errors import WireError
from olievlek.v1 import summary_pb2

COVERAGE_CONTEXT = b"olievlek/v1/coverage\x00"
CONTACT_SLOTS = 4
SLOT_BYTES = 32
ROW_BYTES = 1 + CONTACT_SLOTS * SLOT_BYTES
NO_HIT = bytes(ROW_BYTES)


@dataclass(frozen=True, slots=True)
class Cover:
    """One verified coverage flag: who may learn of the entry, why, under which rule, until when."""

    recipient_kind: str
    purpose: str
    rule_id: str
    expires_ms: int

    def token(self) -> str:
        return f"{self.recipient_kind}/{self.purpose}/{self.rule_id}@{self.expires_ms}"


def needle(recipient_kind: str, purpose: str, rule_id: str) -> str:
    """What a ``covers`` string contains when the flag for this triple is there (the expiry follows)."""
    return f"{recipient_kind}/{purpose}/{rule_id}@"


def covers_string(covers: list[Cover]) -> str:
    return ";".join(sorted(c.token() for c in covers))


def covered(covers: str, want: str, now_ms: int) -> bool:
    """Whether a stored ``covers`` string holds the flag ``want`` (from ``needle``) unexpired at ``now_ms``.

    String search rather than parsing: it runs once per answer row, in the query's hot loop."""
    at = covers.find(want)
    if at < 0:
        return False
    start = at + len(want)
    end = covers.find(";", start)
    return int(covers[start:] if end < 0 else covers[start:end]) > now_ms


def sign_statement(key: ed25519.Ed25519PrivateKey, statement: summary_pb2.CoverageStatement
                   ) -> summary_pb2.SignedCoverage:
    raw = wire.encode(statement)
    return summary_pb2.SignedCoverage(statement=raw, signature=key.sign(COVERAGE_CONTEXT + raw))


def open_statement(signed: summary_pb2.SignedCoverage, key: ed25519.Ed25519PublicKey
                   ) -> summary_pb2.CoverageStatement:
    """The statement, after its signature verified under the holder's key.

    Raises:
        WireError: the statement does not parse strictly or the signature does not verify.
    """
    try:
        key.verify(signed.signature, COVERAGE_CONTEXT + signed.statement)
    except InvalidSignature:
        raise WireError("coverage signature does not verify under the holder's signing key",
                        field="coverage.signature") from None
    return wire.parse_strict(summary_pb2.CoverageStatement, signed.statement)


def encode_row(contacts: list[str]) -> bytes:
    """One fixed-width answer row: a hit with these contacts, or (none) no hit."""
    if not contacts:
        return NO_HIT
    out = bytearray(ROW_BYTES)
    out[0] = 1
    for i, contact in enumerate(contacts[:CONTACT_SLOTS]):
        raw = contact.encode()
        if len(raw) > SLOT_BYTES:
            raise ValueError("contact id longer than a slot")
        out[1 + i * SLOT_BYTES: 1 + i * SLOT_BYTES + len(raw)] = raw
    return bytes(out)


def decode_row(row: bytes) -> list[str]:
    """The contacts of a hit row; an empty list for no hit.

    Raises:
        WireError: the row is not ROW_BYTES long or its outcome byte is neither 0 nor 1.
    """
    if len(row) != ROW_BYTES or row[0] not in (0, 1):
        raise WireError("query answer row is malformed", field="rows")
    if row[0] == 0:
        return []
    slots = (row[1 + i * SLOT_BYTES: 1 + (i + 1) * SLOT_BYTES].rstrip(b"\0") for i in range(CONTACT_SLOTS))
    return [s.decode() for s in slots if s]
