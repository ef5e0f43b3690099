"""One operator's evaluation logic: domain and budget checks, evaluate, prove, count.

Order for each request: the caller must be an organisation of the signed bundle (exact identity: kind
and id), its kind allowed in the domain; the batch must fit the kind's batch size, hourly and daily
budgets; every input must be a canonical encoding of a valid group element; then the operator
evaluates with its active share, proves it, and counts - never storing or
logging an input or an output.
"""

from __future__ import annotations

from olievlek import logs, voprf
from olievlek.clock import now_ms
from olievlek.envelope import Signer
from olievlek.identity import OrgIdentity
from olievlek.policy import Bundle
from olievlek.pseudonym import sign_key
from olievlek.v1 import pseudonymiser_pb2 as pb

from .storage.store import PseudonymiserStore, Share

log = logs.get("pseudonymiser")

DOMAIN_NAMES = {pb.DOMAIN_ROUTING: "routing", pb.DOMAIN_MONITORING: "monitoring"}


def _refused(code: int, detail: str) -> pb.EvaluateResponse:
    return pb.EvaluateResponse(refused=pb.EvaluateRefused(code=code, detail=detail))  # type: ignore[arg-type]


class PseudonymiserService:
    def __init__(self, share_no: int, store: PseudonymiserStore, bundle: Bundle, signer: Signer) -> None:
        self.share_no = share_no
        self.store = store
        self.bundle = bundle
        self.signer = signer

    def published(self, share: Share) -> pb.PublishedKey:
        key = pb.PublishedKey(domain=share.domain, epoch=share.epoch, share=self.share_no,  # type: ignore[arg-type]
                              public_element=share.public, created_at_ms=share.created_ms,
                              signer_certificate=self.signer.cert_der)
        sign_key(key, self.signer.key)
        return key

    async def evaluate(self, origin: OrgIdentity, req: pb.EvaluateRequest) -> pb.EvaluateResponse:
        domain = DOMAIN_NAMES.get(req.domain)
        n = len(req.blinded)
        policy = self.bundle.pseudonymisation
        if not self.bundle.member(origin):
            log.warning("evaluate.refused", org=str(origin), domain=req.domain, reason="not_a_member")
            return _refused(pb.EVALUATE_REFUSAL_NOT_A_MEMBER, f"{origin} is not an organisation of the enforced "
                            f"bundle ({self.bundle.name} v{self.bundle.version})")
        if domain is None or not policy.allows(origin.kind, domain):
            log.warning("evaluate.refused", org=str(origin), domain=req.domain, reason="domain_not_allowed")
            return _refused(pb.EVALUATE_REFUSAL_DOMAIN_NOT_ALLOWED,
                            f"{origin.kind} may not evaluate in domain {domain or req.domain} (bundle "
                            f"{self.bundle.name} v{self.bundle.version})")
        budget = policy.budget(origin.kind)
        if n == 0 or n > budget.batch:
            return _refused(pb.EVALUATE_REFUSAL_BATCH_TOO_LARGE, f"a batch holds 1 to {budget.batch} elements, got {n}")
        now = now_ms()
        used = await self.store.usage(str(origin.org_id), req.domain, now)
        if used.hour + n > budget.per_hour or used.day + n > budget.per_day:
            log.warning("evaluate.refused", org=str(origin), domain=domain, reason="budget_exceeded",
                        used_hour=used.hour, used_day=used.day, requested=n)
            return _refused(pb.EVALUATE_REFUSAL_BUDGET_EXCEEDED,
                            f"{origin} has used {used.hour}/{budget.per_hour} this hour and {used.day}/"
                            f"{budget.per_day} in 24 h in domain {domain}; {n} more would exceed the budget")
        share = await self.store.active_share(req.domain)
        if share is None:
            return _refused(pb.EVALUATE_REFUSAL_NO_KEY, f"share {self.share_no} has no key for domain {domain}")
        try:
            evaluated, proof = voprf.blind_evaluate(share.scalar, share.public, list(req.blinded))
        except ValueError:
            log.warning("evaluate.refused", org=str(origin), domain=domain, reason="invalid_element")
            return _refused(pb.EVALUATE_REFUSAL_INVALID_ELEMENT, "an input is not a valid ristretto255 element")
        await self.store.count(str(origin.org_id), origin.kind.value, req.domain, n, now)
        day = used.day + n
        warn = day * 2 > budget.per_day
        log.info("evaluate.done", org=str(origin), domain=domain, n=n, used_day=day, warning=warn)
        return pb.EvaluateResponse(evaluation=pb.Evaluation(
            key=self.published(share), evaluated=evaluated, proof=proof, budget_warning=warn,
            used_today=day, budget_per_day=budget.per_day))


async def keygen(store: PseudonymiserStore, domain: int, epoch: int) -> Share:
    """A fresh share for a new epoch, generated here; the scalar never leaves this store."""
    if not 0 < epoch < 256:
        raise ValueError("epoch must be 1..255")
    current = await store.active_share(domain)
    if current is not None and epoch <= current.epoch:
        raise ValueError(f"epoch {epoch} is not after the active epoch {current.epoch}")
    k = voprf.random_scalar()
    share = Share(domain, epoch, k, voprf.mul_base(k), now_ms())
    await store.put_share(share)
    return share


async def refresh(store: PseudonymiserStore, domain: int, delta: bytes, sign: int) -> Share:
    """Add (+1) or subtract (-1) a random delta: k1 + d, k2 - d keeps k1 + k2, so every pseudonym stays."""
    current = await store.active_share(domain)
    if current is None:
        raise ValueError("no active share to refresh")
    k = voprf.scalar_add(current.scalar, delta) if sign > 0 else voprf.scalar_sub(current.scalar, delta)
    share = Share(domain, current.epoch, k, voprf.mul_base(k), now_ms())
    await store.put_share(share)
    return share
