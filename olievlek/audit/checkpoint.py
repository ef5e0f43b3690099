"""The audit log's signed tree heads as C2SP ``tlog-checkpoint`` notes.

A checkpoint's text is the log's *origin*, the tree size in decimal, the base64 RFC 9162 root, and
olievlek's two extension lines: the digest of the policy bundle enforced when the head was signed, and
when it was signed::

    olievlek.flanders/audit/1
    1043
    0dkT0xlg8M5QfYxU1VYoQxbsT+uYv0T2YB+7E2Ep8MI=
    bundle 5a0c3c…e41f
    time 1796664026894

The origin names the federation (its bundle's name) and the log *shard*: a new shard - after a restore,
say - is a new origin. The log signs the text with its Ed25519 key under the origin as key name
(signed-note type 0x01); witnesses cosign it (cosignature/v1) and, as C2SP ``tlog-cosignature`` says,
vouch only for the first three lines: a node checks the bundle line against the bundle it enforces itself.
No I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek.errors import VerificationError

from . import note

_SIZE = re.compile(r"^(0|[1-9][0-9]{0,19})$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def origin_for(federation: str, shard: int = 1) -> str:
    """The origin line of a federation's audit log shard, e.g. ``olievlek.flanders/audit/1``."""
    return f"olievlek.{federation}/audit/{shard}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    bundle_digest: bytes = b""  # 32 bytes; empty: no bundle line (an external log's checkpoint)
    timestamp_ms: int = 0

    @property
    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        if self.bundle_digest:
            lines.append(f"bundle {self.bundle_digest.hex()}")
        if self.timestamp_ms:
            lines.append(f"time {self.timestamp_ms}")
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint text (C2SP tlog-checkpoint); olievlek's extension lines are read if present.

        Raises:
            VerificationError: not a checkpoint text.
        """
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or not lines[0]:
            raise VerificationError("a checkpoint is an origin, a size and a root hash, each on its own line",
                                    field="checkpoint")
        if not _SIZE.match(lines[1]):
            raise VerificationError(f"checkpoint size {lines[1]!r} is not a decimal without leading zeroes",
                                    field="checkpoint")
        try:
            root = base64.b64decode(lines[2], validate=True)
        except binascii.Error:
            root = b""
        if len(root) != 32:
            raise VerificationError("checkpoint root hash is not 32 bytes of base64", field="checkpoint")
        digest, timestamp = b"", 0
        for line in lines[3:-1]:
            if not line:
                raise VerificationError("a checkpoint extension line is empty", field="checkpoint")
            word, _, value = line.partition(" ")
            if word == "bundle" and _DIGEST.match(value):
                digest = bytes.fromhex(value)
            elif word == "time" and _SIZE.match(value):
                timestamp = int(value)
        return cls(lines[0], int(lines[1]), root, digest, timestamp)


def sign(checkpoint: Checkpoint, key: ed25519.Ed25519PrivateKey) -> str:
    """The signed note of ``checkpoint``: the log's signature under its origin as key name."""
    return note.Note(checkpoint.text, (note.sign(checkpoint.text, checkpoint.origin, key),)).encode()


def log_verifier(origin: str, key: ed25519.Ed25519PublicKey) -> note.Verifier:
    return note.Verifier(origin, note.ED25519, key.public_bytes_raw())


def open_signed(signed: str | bytes, origin: str | None, key: ed25519.Ed25519PublicKey) -> tuple[Checkpoint, note.Note]:
    """The checkpoint of a note signed by the log key (under ``origin``, or the note's own first line).

    Raises:
        VerificationError: malformed, another origin, or no valid signature by the log key.
    """
    parsed = note.parse(signed)
    checkpoint = Checkpoint.from_text(parsed.text)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(f"checkpoint of log {checkpoint.origin!r}, expected {origin!r}", field="checkpoint")
    if not note.verify(parsed, log_verifier(checkpoint.origin, key)):
        raise VerificationError(f"checkpoint of size {checkpoint.size} is not signed by the log key of "
                                f"{checkpoint.origin}", field="checkpoint")
    return checkpoint, parsed
