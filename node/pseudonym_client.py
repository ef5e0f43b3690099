"""The node's side of the oblivious pseudonymisation: both operators, both proofs.

The combined public key K1 + K2 of each (domain, epoch) is pinned in the
node's store on first use; a later answer whose shares add up to anything
else is refused (an operator swapped its share). Calls happen before any
database transaction, never inside one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from olievlek import logs, transport
from olievlek.errors import TransportError, VerificationError
from olievlek.normalise import PrfInput
from olievlek.pseudonym import Combined, combine, prepare
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2, pseudonymiser_pb2, pseudonymiser_pb2_grpc

from .store import NodeStore

log = logs.get("node.pseudonym")


class PseudonymisationRefused(VerificationError):
    """An operator refused (budget, domain, invalid input); the message says which and why."""

    refusal_code = broker_pb2.REFUSAL_CODE_POLICY_DENIED


class PseudonymClient:
    def __init__(self, targets: Sequence[str], tls: transport.TlsFiles, trust: TrustAnchor, store: NodeStore) -> None:
        if len(targets) != 2:
            raise ValueError("exactly two pseudonymiser operators are required")
        self._channels = [transport.secure_channel(t, tls) for t in targets]
        self._stubs = [pseudonymiser_pb2_grpc.PseudonymiserStub(c) for c in self._channels]
        self._targets = list(targets)
        self._trust = trust
        self._store = store

    async def _call(self, i: int, req: pseudonymiser_pb2.EvaluateRequest) -> pseudonymiser_pb2.Evaluation:
        try:
            resp = await self._stubs[i].Evaluate(req, timeout=15)
        except grpc.aio.AioRpcError as exc:
            raise TransportError(f"pseudonymiser {self._targets[i]}: {exc.code().name}: {exc.details()}") from exc
        if resp.WhichOneof("outcome") == "refused":
            code = pseudonymiser_pb2.EvaluateRefusal.Name(resp.refused.code).removeprefix("EVALUATE_REFUSAL_").lower()
            raise PseudonymisationRefused(f"pseudonymiser {i + 1} refused [{code}]: {resp.refused.detail}")
        evaluation: pseudonymiser_pb2.Evaluation = resp.evaluation
        return evaluation

    async def pseudonymise(self, inputs: Sequence[PrfInput],
                           domain: int = pseudonymiser_pb2.DOMAIN_ROUTING) -> Combined:
        """Pseudonyms for ``inputs`` (one network round trip to each operator, in parallel).

        Raises:
            TransportError: an operator is unreachable.
            VerificationError: a refusal, a bad signature or proof, or shares that changed.
        """
        prepared = prepare(inputs)
        req = pseudonymiser_pb2.EvaluateRequest(domain=domain, blinded=list(prepared.blinded))  # type: ignore[arg-type]
        evaluations = await asyncio.gather(self._call(0, req), self._call(1, req))
        epoch = evaluations[0].key.epoch
        pinned = await self._store.pinned_key(domain, epoch)
        result = combine(prepared, evaluations, self._trust, domain, pinned)
        if pinned is None:
            await self._store.pin_key(domain, result.epoch, result.combined_key)
        for org in result.warnings:
            log.warning("pseudonymisation.budget_half_used", operator=org, domain=domain)
        return result

    async def close(self) -> None:
        for c in self._channels:
            await c.close()
