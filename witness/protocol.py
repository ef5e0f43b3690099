"""The witness side of C2SP ``tlog-witness``: ``add-checkpoint`` requests, decided and answered.

A request body is ``old <size>``, up to 63 base64 consistency-proof lines, a blank line, and the signed
checkpoint. The witness, for each known log origin, keeps only the latest checkpoint it cosigned, and
answers (tlog-witness, its current text):

* 400: the body does not parse, or the old size is above the checkpoint's size;
* 404: the origin is not a log this witness knows;
* 403: no valid signature by the log's key (or a line naming that key that does not verify);
* 409: the old size is not the size it cosigned last - the body says that size (``text/x.tlog.size``);
* 422: a proof that does not show the checkpoint extends the last one; the same size with another root;
  a proof with old size 0; a size-0 checkpoint whose root is not the empty tree's;
* 200: the cosignature line(s), after the new checkpoint is stored - the check and the update are one
  transaction, so two racing requests can never roll it back.

A known, validly signed checkpoint that fails the consistency checks is logged as ``witness.alarm``: it
may be evidence of a log showing two histories. It is never cosigned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek import logs
from olievlek.audit import note
from olievlek.audit.checkpoint import Checkpoint
from olievlek.audit.verify import verify_consistency
from olievlek.errors import VerificationError

from .storage.store import WitnessStore

log = logs.get("witness")

MAX_PROOF_LINES = 63
MAX_BODY_BYTES = 16 << 10
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962 section 2.1: the hash of the empty tree
SIZE_CONTENT_TYPE = "text/x.tlog.size"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Request:
    old: int
    proof: list[bytes]
    signed: str  # the checkpoint note


class BadRequest(Exception):
    """The body does not parse (400)."""


def parse_request(body: bytes) -> Request:
    """Raises BadRequest naming what is wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8") from None
    head, sep, signed = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or not lines[0].startswith("old "):
        raise BadRequest("the body starts with 'old <size>', proof lines, then a blank line and the checkpoint")
    size = lines[0][4:]
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise BadRequest(f"old size {size!r} is not a decimal without leading zeroes")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise BadRequest(f"at most {MAX_PROOF_LINES} proof lines")
    proof = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except binascii.Error:
            h = b""
        if len(h) != 32:
            raise BadRequest("a proof line is not a base64 SHA-256 hash")
        proof.append(h)
    return Request(int(size), proof, signed)


class WitnessCore:
    """Decides add-checkpoint requests for the logs this witness knows, and cosigns."""

    def __init__(self, store: WitnessStore, logs_known: dict[str, ed25519.Ed25519PublicKey], key_name: str,
                 key: ed25519.Ed25519PrivateKey, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._logs = logs_known  # origin -> the log's key (signature type 0x01, key name = origin)
        self.key_name = key_name
        self._key = key
        self._clock = clock

    @property
    def verifier(self) -> note.Verifier:
        return note.Verifier(self.key_name, note.COSIGNATURE_V1, self._key.public_key().public_bytes_raw())

    async def add_checkpoint(self, body: bytes) -> Answer:
        try:
            request = parse_request(body)
            parsed = note.parse(request.signed)
            cp = Checkpoint.from_text(parsed.text)
        except (BadRequest, VerificationError) as exc:
            return Answer(400, f"{exc}\n".encode())
        key = self._logs.get(cp.origin)
        if key is None:
            return Answer(404, f"unknown log origin {cp.origin!r}\n".encode())
        try:
            signed = note.verify(parsed, note.Verifier(cp.origin, note.ED25519, key.public_bytes_raw()))
        except VerificationError:
            signed = False
        if not signed:
            return Answer(403, b"the checkpoint carries no valid signature by the log's key\n")
        if request.old > cp.size:
            return Answer(400, f"old size {request.old} is above the checkpoint's size {cp.size}\n".encode())
        return await self._decide(request, cp, parsed)

    async def _decide(self, request: Request, cp: Checkpoint, parsed: note.Note) -> Answer:
        async with self._store.db.transaction() as tx:  # check and update as one: no rollback by a racing request
            size, root = await self._store.cosigned_txn(tx, cp.origin) or (0, EMPTY_ROOT)
            if request.old != size:
                return Answer(409, f"{size}\n".encode(), SIZE_CONTENT_TYPE)
            problem = _inconsistency(request, cp, root)
            if problem:
                log.error("witness.alarm", origin=cp.origin, size=cp.size, old=request.old, reason=problem)
                return Answer(422, f"{problem}\n".encode())
            now = int(self._clock())
            await self._store.cosign_txn(tx, cp.origin, cp.size, cp.root, request.signed.encode(), now)
        line = note.cosign(parsed.text, self.key_name, self._key, now).line
        log.info("witness.cosigned", origin=cp.origin, size=cp.size)
        return Answer(200, line.encode())

    async def latest(self, origin: str) -> tuple[int, bytes] | None:
        return await self._store.latest(origin)


def _inconsistency(request: Request, cp: Checkpoint, old_root: bytes) -> str:
    """Why ``cp`` does not extend the checkpoint of size ``request.old`` and root ``old_root`` ("" if it does)."""
    if cp.size == 0 and cp.root != EMPTY_ROOT:
        return "a checkpoint of size 0 must carry the empty tree's root"
    if request.old == 0:
        return "the empty tree needs no proof; the proof must be empty" if request.proof else ""
    try:
        verify_consistency(request.old, cp.size, request.proof, old_root, cp.root)
    except VerificationError as exc:
        return f"not consistent with the checkpoint of size {request.old} cosigned before: {exc.message}"
    return ""
