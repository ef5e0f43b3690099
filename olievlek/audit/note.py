"""Signed notes (C2SP ``signed-note``) with Ed25519 signatures, and Ed25519 ``cosignature/v1``.

A note is a text ending in a newline, a blank line, and one or more signature lines
``— <key name> <base64(key ID ‖ signature)>``; the key ID is the first four bytes of
SHA-256(key name ‖ 0x0A ‖ signature type ‖ public key). Ed25519 note signatures are type 0x01 and sign the
text; witness cosignatures (C2SP ``tlog-cosignature``) are type 0x04 and sign
``"cosignature/v1\\ntime <unix seconds>\\n" ‖ text``, their payload being an 8-byte big-endian timestamp
and the 64-byte signature. Verifier keys are written ``<name>+<hex key ID>+<base64(type ‖ public key)>``.

Checked against golang.org/x/mod/sumdb/note's known answers (the ``PeterNeumann`` key), the C2SP
examples and sigsum-go's cosignature (``tests/test_note.py``). No I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek.errors import VerificationError

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
DASH = "\u2014"  # the em dash that starts a signature line
MAX_SIGNATURES = 100  # more lines than this is a malformed note (as golang.org/x/mod/sumdb/note)
MAX_TIMESTAMP = 2**63 - 1


class NoteError(VerificationError):
    """A note that is malformed or whose signatures do not verify."""


def key_id(name: str, sig_type: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


def valid_name(name: str) -> bool:
    """Non-empty, no Unicode space and no '+' (signed-note, Go's isValidName)."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


@dataclass(frozen=True, slots=True)
class Verifier:
    """A public key that verifies note signatures of one type under one name."""

    name: str
    sig_type: int
    public: bytes  # 32-byte Ed25519 key

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public)

    @property
    def vkey(self) -> str:
        return f"{self.name}+{self.id.hex()}+{base64.b64encode(bytes([self.sig_type]) + self.public).decode()}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<hex id>+<base64(type ‖ key)>``; the id must be the one the key gives.

        Raises:
            NoteError: not of that form, an unknown type, a key of the wrong length, or a wrong id.
        """
        name, sep1, rest = vkey.partition("+")
        hex_id, sep2, material = rest.partition("+")
        try:
            raw = base64.b64decode(material, validate=True)
            wanted = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError):
            raise NoteError(f"verifier key {vkey!r} does not parse") from None
        if not (sep1 and sep2 and valid_name(name) and len(hex_id) == 8 and raw):
            raise NoteError(f"verifier key {vkey!r} is not <name>+<hex id>+<base64 key>")
        if raw[0] not in (ED25519, COSIGNATURE_V1) or len(raw) != 33:
            raise NoteError(f"verifier key {vkey!r}: only Ed25519 (type 0x01 or 0x04) keys are supported")
        verifier = cls(name, raw[0], raw[1:])
        if verifier.id != wanted:
            raise NoteError(f"verifier key {vkey!r}: the key id does not match the key")
        return verifier


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line of a note."""

    name: str
    id: bytes
    payload: bytes  # what follows the key id: the signature (type 0x01) or timestamp ‖ signature (0x04)

    @property
    def line(self) -> str:
        return f"{DASH} {self.name} {base64.b64encode(self.id + self.payload).decode()}\n"


@dataclass(frozen=True, slots=True)
class Note:
    text: str  # ends in "\n"
    signatures: tuple[Signature, ...]

    def encode(self) -> str:
        return self.text + "\n" + "".join(s.line for s in self.signatures)


def parse(note: str | bytes) -> Note:
    """Split a signed note into its text and signature lines (nothing is verified here).

    Raises:
        NoteError: not a well-formed note.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode()
        except UnicodeDecodeError:
            raise NoteError("the note is not UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise NoteError("the note holds control characters")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("the note has no blank line before its signatures, or does not end in a newline")
    text, block = note[: split + 1], note[split + 2:]
    lines = block[:-1].split("\n")
    if not block or len(lines) > MAX_SIGNATURES:
        raise NoteError("the note has no signature lines, or too many")
    signatures = []
    for line in lines:
        if not line.startswith(DASH + " "):
            raise NoteError("a signature line does not start with an em dash and a space")
        name, sep, b64 = line[2:].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise NoteError(f"the signature of {name!r} is not base64") from None
        if not sep or not valid_name(name) or len(raw) < 5:
            raise NoteError(f"a signature line of {name!r} is malformed")
        signatures.append(Signature(name, raw[:4], raw[4:]))
    return Note(text, tuple(signatures))


def sign(text: str, name: str, key: ed25519.Ed25519PrivateKey) -> Signature:
    """An Ed25519 note signature (type 0x01) over ``text``."""
    if not text.endswith("\n"):
        raise NoteError("a note text ends in a newline")
    public = key.public_key().public_bytes_raw()
    return Signature(name, key_id(name, ED25519, public), key.sign(text.encode()))


def verify(note: Note, verifier: Verifier) -> bool:
    """Whether ``note`` carries a valid signature by ``verifier``.

    Raises:
        NoteError: a line that names this key (name and id) but does not verify - the note is then
            malformed, per signed-note.
    """
    found = False
    for s in note.signatures:
        if s.name != verifier.name or s.id != verifier.id:
            continue  # unknown keys are ignored
        message = note.text.encode()
        payload = s.payload
        if verifier.sig_type == COSIGNATURE_V1:
            if len(payload) != 72:
                raise NoteError(f"the cosignature of {verifier.name} is not 72 bytes")
            (timestamp,) = struct.unpack(">Q", payload[:8])
            message, payload = cosigned_message(note.text, timestamp), payload[8:]
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(verifier.public).verify(payload, message)
        except InvalidSignature:
            raise NoteError(f"the signature of {verifier.name} does not verify") from None
        found = True
    return found


def cosigned_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: two header lines and the whole checkpoint text (extension lines too)."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp {timestamp} is out of range")
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


def cosign(text: str, name: str, key: ed25519.Ed25519PrivateKey, timestamp: int) -> Signature:
    """A witness's cosignature/v1 (type 0x04) over a checkpoint ``text`` at ``timestamp`` (POSIX seconds)."""
    public = key.public_key().public_bytes_raw()
    signature = key.sign(cosigned_message(text, timestamp))
    return Signature(name, key_id(name, COSIGNATURE_V1, public), struct.pack(">Q", timestamp) + signature)


def cosignature_time(signature: Signature) -> int:
    """The timestamp a cosignature/v1 carries (after it verified)."""
    return int(struct.unpack(">Q", signature.payload[:8])[0])
