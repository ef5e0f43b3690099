"""Queueing envelopes without the broker's checks - for benches that need a deep queue, and tests that
simulate a redelivery - with real decision leaves, as every delivery's proof needs.

Never used by the broker itself: an envelope reaches a queue only through ``Send``.
"""

from __future__ import annotations

from pathlib import Path

from olievlek.audit.log import AuditLog
from olievlek.policy.signing import load_signing_key

from .committer import Committer
from .service import BrokerService
from .storage.operations import Seed
from .storage.store import BrokerStore


async def seed(service: BrokerService, recipient: str, sender: str, items: list[tuple[str, bytes]], at_ms: int,
               expires_ms: int) -> None:
    """Queue ``items`` (idempotency key, envelope) for ``recipient`` at a running broker, in one commit."""
    await service.committer.submit(Seed(recipient, sender, tuple(items), at_ms, expires_ms, service.bundle.digest,
                                        tuple(service.viewers(sender, recipient))))
    service.notifier.notify(recipient)


async def seed_offline(database: Path, log_key: Path, origin: str, bundle_digest: str, recipient: str, sender: str,
                       items: list[tuple[str, bytes]], at_ms: int, expires_ms: int) -> None:
    """The same into a stopped broker's database (its log key signs the head of the new leaves)."""
    store = await BrokerStore.open(database)
    audit = AuditLog(store.db, load_signing_key(log_key), origin)
    await audit.load()
    committer = Committer(store, audit, lambda: bundle_digest)
    committer.start()
    try:
        await committer.submit(Seed(recipient, sender, tuple(items), at_ms, expires_ms, bundle_digest))
    finally:
        await committer.stop()
        await store.close()
