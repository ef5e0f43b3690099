"""The node's side of the transparency log: verify every receipt's proof and keep the log honest.

A receipt (or refusal) is accepted only when its tree head is signed by the
broker's log key, the leaf's metadata says what the answer said, the leaf is
included in that head, and the head extends the last head this node accepted
(a consistency proof fetched from the broker). Any failure is loud: logged as
an error for the node's administrator, and the outbox entry stays pending.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek import logs
from olievlek.audit.cosign import quorum_time
from olievlek.audit.receipts import check_extends, verify_head, verify_leaf
from olievlek.clock import now_ms
from olievlek.errors import VerificationError
from olievlek.metrics import Metrics
from olievlek.policy.model import WitnessPolicy
from olievlek.v1 import broker_pb2

from .broker_client import BrokerClient
from .store import NodeStore

log = logs.get("node.audit")

VERIFIED_HEADS = 4
HELD_RESOLUTION_MS = 1000


class ForkSuspected(VerificationError):
    """A quorum-cosigned head that is not consistent with this node's own: the broker showed it a private
    branch (or showed the witnesses one)."""


@dataclass(frozen=True, slots=True)
class WitnessView:
    """The latest quorum-cosigned head, consistent with ours, and when the quorum had cosigned it (Unix s)."""

    head: broker_pb2.TreeHead
    cosigned_at_s: int
    witnesses: list[str]


class AuditChecker:
    def __init__(self, store: NodeStore, client: BrokerClient, log_key: ed25519.Ed25519PublicKey,
                 witnesses: WitnessPolicy | None = None, quorum: int = 0, origin: str | None = None,
                 bundle_digest: str = "", metrics: Metrics | None = None) -> None:
        self._store = store
        self._metrics = metrics or Metrics("node")
        self._client = client
        self._key = log_key
        self.origin = origin  # the log's checkpoint origin; None: whatever the checkpoint says (tests)
        # Witnesses vouch for the tree, not for extension lines: the bundle line is checked here, against
        # the bundle this node enforces (a head under another bundle is said once per digest).
        self._bundle_digest = bundle_digest
        self._other_bundles: set[bytes] = set()
        self._witnesses = witnesses or WitnessPolicy()
        self._quorum = quorum
        # The last head this node accepted: kept in its store, cached here (read once per receipt
        # otherwise), advanced under a lock so two checks never race past each other.
        self._head: broker_pb2.TreeHead | None = None
        self._loaded = False
        self._advancing = asyncio.Lock()
        self._verified: list[bytes] = []  # the last few heads whose signature verified (serialized)
        # The heads this node held and since when (local ms), until a witnessed head covers them: the
        # witness watch's evidence of a private branch (``node/witness_watch.py``).
        self._held: list[tuple[int, int]] = []

    @property
    def quorum(self) -> int:
        return self._quorum

    async def check_witnessed(self) -> WitnessView:
        """The latest *witnessed* head must carry the quorum and be consistent with our own head (either may be
        the newer one: a consistency proof either way). Its age comes from the witnesses' own timestamps.

        Raises:
            ForkSuspected: a quorum-cosigned head that is not consistent with ours (logged as an alarm).
            VerificationError: too few valid cosignatures (no quorum-cosigned head to go by).
            TransportError: the broker could not be asked.
        """
        witnessed = await self._client.head(cosigned=True)
        try:
            verify_head(witnessed.head, self._key, self.origin)
            good, at = quorum_time(witnessed.head, list(witnessed.cosignatures), self._witnesses, self._quorum)
        except VerificationError as exc:
            log.error("audit.witness_alarm", reason=exc.message, size=witnessed.head.size)
            raise
        try:
            await self._advance(witnessed.head)
        except VerificationError as exc:
            log.error("audit.witness_alarm", reason=exc.message, size=witnessed.head.size)
            raise ForkSuspected(exc.message, field="audit") from None
        return WitnessView(witnessed.head, at, good)

    def uncovered_since(self, covered_size: int) -> list[tuple[int, int]]:
        """(size, when this node first held a head of that size, ms) of the heads it held that a witnessed
        head of ``covered_size`` does not cover; those it covers are forgotten."""
        self._held = [(size, at) for size, at in self._held if size > covered_size]
        return list(self._held)

    def alarm(self, reason: str, **fields: Any) -> None:
        """The broker said something the log does not back: loud here, for this node's administrator (a
        notice about it would travel through the very broker that lied)."""
        self._metrics.audit_alarms.labels(reason=reason).inc()
        log.error("audit.alarm", reason=reason, **fields)

    async def check(self, proof: broker_pb2.AuditProof, expect: dict[str, Any]) -> dict[str, Any]:
        """The proven leaf's metadata. Raises VerificationError (after raising the alarm) when the broker's
        proof does not hold or the leaf does not say what ``expect`` says."""
        try:
            signed = proof.head.SerializeToString()
            if signed not in self._verified:  # a delivery batch shares one head: one signature check
                verify_head(proof.head, self._key, self.origin)
                self._verified = [*self._verified[-(VERIFIED_HEADS - 1):], signed]
            meta = verify_leaf(proof, expect)
            await self._advance(proof.head)
        except VerificationError as exc:
            self.alarm("proof", detail=exc.message, leaf=proof.leaf_index)
            raise
        return meta

    async def prove_event(self, event: broker_pb2.AuditEvent, head: broker_pb2.TreeHead,
                          expect: dict[str, Any]) -> dict[str, Any]:
        """A leaf read from ``AuditEvents``, proven included in ``head`` (which must extend ours).

        Raises:
            VerificationError: as ``check``.
            TransportError: the broker could not be asked for the inclusion proof.
        """
        inclusion = await self._client.inclusion(event.index, head.size)
        proof = broker_pb2.AuditProof(leaf_index=event.index, salt=event.salt, metadata=event.metadata,
                                      head=inclusion.head, inclusion=list(inclusion.proof))
        return await self.check(proof, expect)

    async def _advance(self, new: broker_pb2.TreeHead) -> None:
        async with self._advancing:
            if not self._loaded:
                raw = await self._store.last_head()
                self._head = broker_pb2.TreeHead.FromString(raw) if raw is not None else None
                self._loaded = True
            if self._head is None:
                await self._keep(new)
                return
            await self._check_against(self._head, new)

    async def _keep(self, head: broker_pb2.TreeHead) -> None:
        self._store.keep_head_soon(head.SerializeToString())
        self._head = head
        now = now_ms()
        if self._held and now - self._held[-1][1] < HELD_RESOLUTION_MS:
            self._held[-1] = (head.size, now)  # one entry per second; the later time (never an early alarm)
        else:
            self._held.append((head.size, now))
        if self._bundle_digest and head.bundle_digest and head.bundle_digest.hex() != self._bundle_digest \
                and head.bundle_digest not in self._other_bundles:
            self._other_bundles.add(head.bundle_digest)
            log.warning("audit.bundle_differs", size=head.size, head_bundle=head.bundle_digest.hex(),
                        enforced_here=self._bundle_digest)

    async def _check_against(self, old: broker_pb2.TreeHead, new: broker_pb2.TreeHead) -> None:
        if new.size <= old.size:
            # An older head than ours: it must be consistent with ours.
            if new.size == old.size and new.root != old.root:
                raise VerificationError("two different signed roots for the same tree size: a forked log",
                                        field="audit")
            if new.size < old.size:
                proof = await self._client.consistency(new.size, old.size)
                verify_head(proof.head, self._key, self.origin)
                check_extends(new, old, list(proof.proof))
            return
        proof = await self._client.consistency(old.size, new.size)
        verify_head(proof.head, self._key, self.origin)
        if proof.head.root != new.root:
            raise VerificationError("the broker's head for this size differs from the receipt's", field="audit")
        check_extends(old, new, list(proof.proof))
        await self._keep(new)
