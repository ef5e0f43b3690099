"""The node's side of the oblivious pseudonymisation: both operators, both proofs.

The signed bundle names, per domain and epoch, the combined public key K1 + K2
and which operator holds each share; an answer that is not exactly that is
refused. The node also keeps the keys it used (``pseudonym_keys``): its stored
pseudonyms were made under them, so a bundle that names another key for an
epoch the node already used raises an alarm at start (``check_pinned``).
Calls happen before any database transaction, never inside one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import grpc

from olievlek import logs, transport
from olievlek.errors import TransportError, VerificationError
from olievlek.normalise import PrfInput
from olievlek.policy.model import PseudonymisationPolicy
from olievlek.pseudonym import Combined, combine, domain_name, prepare
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2, pseudonymiser_pb2, pseudonymiser_pb2_grpc

from .store import NodeStore

log = logs.get("node.pseudonym")


class PseudonymisationRefused(VerificationError):
    """An operator refused (budget, domain, invalid input); the message says which and why."""

    refusal_code = broker_pb2.REFUSAL_CODE_POLICY_DENIED


class PseudonymClient:
    def __init__(self, targets: Sequence[str], tls: transport.TlsFiles, trust: TrustAnchor, store: NodeStore,
                 keys: PseudonymisationPolicy) -> None:
        if len(targets) != 2:
            raise ValueError("exactly two pseudonymiser operators are required")
        self._channels = [transport.secure_channel(t, tls) for t in targets]
        self._stubs = [pseudonymiser_pb2_grpc.PseudonymiserStub(c) for c in self._channels]
        self._targets = list(targets)
        self._trust = trust
        self._store = store
        self._keys = keys

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
        result = combine(prepared, evaluations, self._trust, domain, self._keys)
        if await self._store.pinned_key(domain, result.epoch) is None:
            await self._store.pin_key(domain, result.epoch, result.combined_key)
        for org in result.warnings:
            log.warning("pseudonymisation.budget_half_used", operator=org, domain=domain)
        return result

    async def check_pinned(self, alarm: Callable[..., None]) -> int:
        """Compare the keys this node used with the bundle's; ``alarm`` each that differs. Returns how many.

        A difference means the node's stored pseudonyms of that epoch were made in another key space than
        the federation's (a rogue operator answered before the bundle named the key): they do not match
        anyone else's, and the administrator re-pseudonymises (``docs/pseudonymisation.md``).
        """
        differ = 0
        for domain, epoch, used in await self._store.pinned_keys():
            named = self._keys.key(domain_name(domain), epoch)
            if named is None:
                log.warning("pseudonymisation.key_not_in_bundle", domain=domain_name(domain), epoch=epoch)
            elif named.key != used:
                differ += 1
                alarm("pseudonym_key_differs", domain=domain_name(domain), epoch=epoch)
        return differ

    async def close(self) -> None:
        for c in self._channels:
            await c.close()
