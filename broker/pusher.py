"""The log's side of C2SP ``tlog-witness``: push the latest checkpoint to each witness, keep its cosignature.

At most once per interval - never once per group-commit batch - the pusher sends each witness in the
broker's ``witness_push`` the latest checkpoint with a consistency proof from the size that witness
cosigned last (``POST <url>/add-checkpoint``). A 409 says which size the witness holds: the pusher sends
again from there, once, at once. A 200 carries cosignature lines: each is kept only when it verifies under
a witness key the enforced bundle names (``verify_cosignature``), and then serves ``GetHead(cosigned)``.
Any other answer is logged (``push.refused``: 403 and 422 mean the witness saw something it must not
cosign) and counted; the next interval tries again.

The HTTP client is the standard library's, in a thread: nothing here holds a database transaction.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from olievlek import logs
from olievlek.audit import note
from olievlek.audit.cosign import verify_cosignature
from olievlek.audit.log import AuditLog
from olievlek.errors import VerificationError
from olievlek.identity import OrgKind
from olievlek.policy.model import WitnessPolicy
from olievlek.v1 import broker_pb2

log = logs.get("broker.push")

TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = ""


def post(url: str, body: bytes, tls: ssl.SSLContext) -> Reply:
    """One HTTPS POST (blocking; run in a thread)."""
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 - https from configuration
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=tls) as response:  # noqa: S310
            return Reply(int(response.status), response.read(), response.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as exc:
        return Reply(int(exc.code), exc.read(), exc.headers.get("Content-Type", ""))


def request_body(old: int, proof: list[bytes], checkpoint: bytes) -> bytes:
    return f"old {old}\n".encode() + b"".join(base64.b64encode(p) + b"\n" for p in proof) + b"\n" + checkpoint


class Pusher:
    def __init__(self, audit: AuditLog, targets: tuple[tuple[str, str], ...], witnesses: Callable[[], WitnessPolicy],
                 store: Callable[[int, str, bytes], Awaitable[None]], ca: Path,
                 may_push: Callable[[], Awaitable[bool]] | None = None) -> None:
        self._audit = audit
        self._targets = targets  # (witness identity, submission URL prefix)
        self._witnesses = witnesses  # the enforced bundle's, read on every push
        self._store = store  # (size, witness org id, serialized Cosignature)
        self._tls = ssl.create_default_context(cafile=str(ca))
        self._may_push = may_push  # several instances: whether this one holds the pusher's lease now
        self._known: dict[str, int] = {}  # witness -> the size it cosigned last, as far as we know
        self.pushes = 0
        self.refusals = 0

    async def push_once(self) -> dict[str, int]:
        """Push the latest checkpoint to every witness; returns each witness's final HTTP status."""
        head = await self._audit.head()
        out: dict[str, int] = {}
        if head is None or not head.checkpoint:
            return out
        for identity, url in self._targets:
            out[identity] = await self._push(identity, url.rstrip("/") + "/add-checkpoint", head)
        return out

    async def _push(self, identity: str, url: str, head: broker_pb2.TreeHead) -> int:
        old = self._known.get(identity, 0)
        for _ in range(2):  # the second time from the size a 409 told us
            if old > head.size:  # the witness holds more than this log has: never cosignable here
                log.error("push.ahead", witness=identity, witness_size=old, size=head.size)
                return 409
            proof = await self._audit.consistency(old, head.size) if 0 < old < head.size else []
            try:
                reply = await asyncio.to_thread(post, url, request_body(old, proof, head.checkpoint), self._tls)
            except OSError as exc:  # unreachable (urllib's URLError is an OSError): the next interval tries again
                log.warning("push.unreachable", witness=identity, reason=str(exc)[:200])
                return 0
            self.pushes += 1
            if reply.status == 409:
                try:
                    old = int(reply.body.decode().strip())
                except ValueError:
                    break
                self._known[identity] = old
                continue
            if reply.status == 200:
                await self._keep(identity, head, reply.body)
                self._known[identity] = head.size
            else:
                self.refusals += 1
                log.error("push.refused", witness=identity, status=reply.status, size=head.size,
                          answer=reply.body[:200].decode(errors="replace").strip())
            return reply.status
        return 409

    async def _keep(self, identity: str, head: broker_pb2.TreeHead, body: bytes) -> None:
        org_id = identity.partition("/")[2]
        try:
            lines = note.parse(note.parse(head.checkpoint).text + "\n" + body.decode()).signatures
        except (VerificationError, UnicodeDecodeError):
            log.error("push.bad_answer", witness=identity, size=head.size)
            return
        for signature in lines:
            c = broker_pb2.Cosignature(witness=org_id, head=head, line=signature.line.encode())
            try:
                who, _at = verify_cosignature(c, self._witnesses())
            except VerificationError as exc:
                log.warning("push.cosignature_ignored", witness=identity, reason=exc.message)
                continue
            if who != f"{OrgKind.WITNESS.value}/{org_id}":
                continue
            await self._store(head.size, org_id, c.SerializeToString())
            log.info("push.cosigned", witness=identity, size=head.size)

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                if self._may_push is None or await self._may_push():
                    await self.push_once()
            except Exception as exc:  # never let the pusher die; the next interval tries again
                log.error("push.failed", error=type(exc).__name__, detail=str(exc)[:200])
            await asyncio.sleep(interval_s)
