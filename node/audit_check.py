"""The node's side of the transparency log: verify every receipt's proof and keep the log honest.

A receipt (or refusal) is accepted only when its tree head is signed by the
broker's log key, the leaf's metadata says what the answer said, the leaf is
included in that head, and the head extends the last head this node accepted
(a consistency proof fetched from the broker). Any failure is loud: logged as
an error for the node's administrator, and the outbox entry stays pending.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek import logs
from olievlek.audit.receipts import check_extends, verify_head, verify_receipt
from olievlek.errors import VerificationError
from olievlek.v1 import broker_pb2

from .broker_client import BrokerClient
from .store import NodeStore

log = logs.get("node.audit")


class AuditChecker:
    def __init__(self, store: NodeStore, client: BrokerClient, log_key: ed25519.Ed25519PublicKey) -> None:
        self._store = store
        self._client = client
        self._key = log_key

    async def check(self, proof: broker_pb2.AuditProof, expect: dict[str, Any]) -> None:
        """Raises VerificationError (after logging it) when the broker's proof does not hold."""
        try:
            verify_receipt(proof, self._key, expect)
            await self._advance(proof.head)
        except VerificationError as exc:
            log.error("audit.verification_failed", reason=exc.message, leaf=proof.leaf_index)
            raise

    async def _advance(self, new: broker_pb2.TreeHead) -> None:
        raw = await self._store.last_head()
        if raw is None:
            await self._store.keep_head(new.SerializeToString())
            return
        old = broker_pb2.TreeHead.FromString(raw)
        if new.size <= old.size:
            # An older head than ours: it must be consistent with ours.
            if new.size == old.size and new.root != old.root:
                raise VerificationError("two different signed roots for the same tree size: a forked log",
                                        field="audit")
            if new.size < old.size:
                proof = await self._client.consistency(new.size, old.size)
                verify_head(proof.head, self._key)
                check_extends(new, old, list(proof.proof))
            return
        proof = await self._client.consistency(old.size, new.size)
        verify_head(proof.head, self._key)
        if proof.head.root != new.root:
            raise VerificationError("the broker's head for this size differs from the receipt's", field="audit")
        check_extends(old, new, list(proof.proof))
        await self._store.keep_head(new.SerializeToString())
