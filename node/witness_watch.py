"""Freshness from the witnesses, forks found, and outcomes final only under the witnesses' quorum.

Every ``interval_s`` the node fetches the latest quorum-cosigned head through its broker (the channel does
not matter: the cosignatures are checked against the bundle's witness keys) and checks it is consistent with
its own head, either way. Then:

- **witness lag** (a warning): the quorum cosigned nothing newer than ``lag_s`` ago - by the witnesses' own
  signed timestamps, never the broker's clock. A stopped witness looks like this; so does a broker that
  serves an old cosigned head. Nothing is final meanwhile.
- **fork** (an alarm): a cosigned head that is not consistent with ours; or a head this node held since time
  t that a head cosigned after t + ``fork_after_s`` (or cosigned after t and ``fork_after_entries`` entries
  short of it) does not cover. An honest broker pushes its latest head every push interval, so what the
  witnesses cosign later always covers what a node held earlier.
- **finality**: outcomes that change an outbox or inbox row for good (accepted, refused, expired, rejected,
  a delivery stored) are provisional until a quorum-cosigned head consistent with ours covers their leaf;
  those not covered within ``confirm_within_s`` become unconfirmed ("perhaps it never arrived"). With no
  witness quorum at all (a bundle and configuration without witnesses), outcomes are final at once.

Erasure notices and disclosure decisions still act at once at the receiving node: waiting would keep
personal data longer than the holder decided (``docs/threat-model.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from olievlek import logs
from olievlek.clock import now_ms as clock_now
from olievlek.errors import TransportError, VerificationError
from olievlek.metrics import Metrics
from olievlek.storage.sqlite import Txn

from . import evidence
from .audit_check import AuditChecker, ForkSuspected, WitnessView
from .store import NodeStore

log = logs.get("node.witness_watch")


@dataclass(frozen=True, slots=True)
class Bounds:
    lag_s: float = 60.0
    fork_after_s: float = 120.0
    fork_after_entries: int = 100_000
    confirm_within_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Pass:
    """What one check found (for tests and ``audit verify``)."""

    view: WitnessView | None
    lagging: bool
    fork: str  # why a fork is suspected ("" when not)
    finalised: int
    unconfirmed: int


class WitnessWatch:
    def __init__(self, store: NodeStore, audit: AuditChecker, metrics: Metrics, bounds: Bounds) -> None:
        self._store = store
        self._audit = audit
        self._metrics = metrics
        self.bounds = bounds
        self.last: Pass | None = None
        self._lagging = False
        self._wake = asyncio.Event()
        self._checked = asyncio.Event()

    @property
    def fresh(self) -> bool:
        """The last check found a quorum-cosigned head younger than the lag bound (worth waiting for)."""
        return self.last is not None and self.last.view is not None and not self.last.lagging

    def kick(self) -> None:
        """Check now (something waits to become final)."""
        self._wake.set()

    async def first_check(self, timeout: float) -> None:
        """Have a check made if none was yet (bounded), so ``fresh`` says something."""
        if self.last is None:
            self.kick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._checked.wait(), timeout)

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.check()
            except Exception:  # never let the watch die; the next round retries
                log.exception("witness_watch.failed")

    async def check(self, now_ms: int | None = None) -> Pass:
        now = clock_now() if now_ms is None else now_ms
        if self._audit.quorum <= 0:  # no witnesses at all: outcomes are final at once (said at start-up)
            found = Pass(None, False, "", 0, 0)
            self.last = found
            return found
        view: WitnessView | None = None
        fork = ""
        try:
            view = await self._audit.check_witnessed()
        except ForkSuspected as exc:
            fork = exc.message
        except VerificationError:
            pass  # no quorum-cosigned head: nothing is covered; lag below says how long
        except TransportError as exc:
            log.info("witness_watch.unreachable", error=exc.message)
        if view is not None and not fork:
            fork = self._uncovered(view)
        lagging = self._lag(view, now)
        finalised = 0
        if view is not None and not fork:
            covered = view.head.size
            finalised = await self._write(lambda tx: evidence.finalise_txn(tx, covered))
        before = now - int(self.bounds.confirm_within_s * 1000)
        unconfirmed = await self._write(lambda tx: evidence.unconfirm_txn(tx, before))
        if fork:
            self._audit.alarm("fork", detail=fork)
            self._metrics.audit_forks.inc()
        if unconfirmed:
            self._metrics.unconfirmed.inc(unconfirmed)
            log.warning("outcomes.unconfirmed", rows=unconfirmed, within_s=self.bounds.confirm_within_s)
        if finalised:
            log.info("outcomes.final", rows=finalised, covered=view.head.size if view else 0)
        found = Pass(view, lagging, fork, finalised, unconfirmed)
        self.last = found
        self._checked.set()
        return found

    def _uncovered(self, view: WitnessView) -> str:
        """Why the heads this node held show a private branch ("" when they do not)."""
        cosigned_ms = view.cosigned_at_s * 1000
        for size, since in self._audit.uncovered_since(view.head.size):
            if cosigned_ms >= since + self.bounds.fork_after_s * 1000:
                return (f"this node has held a head of size {size} since {since} ms; the witnesses cosigned size "
                        f"{view.head.size} {self.bounds.fork_after_s:.0f} s or more later, without it")
            if cosigned_ms >= since and size - view.head.size > self.bounds.fork_after_entries:
                return (f"the witnesses cosigned size {view.head.size} after this node held size {size}: "
                        f"{size - view.head.size} entries short")
        return ""

    def _lag(self, view: WitnessView | None, now: int) -> bool:
        if view is not None:
            age_s = max(0.0, now / 1000 - view.cosigned_at_s)
            self._metrics.witness_age.set(age_s)
            lagging = age_s > self.bounds.lag_s
        else:
            lagging = True
        if lagging != self._lagging:
            (log.warning if lagging else log.info)("audit.witness_lag" if lagging else "audit.witness_lag_over",
                                                   size=view.head.size if view else 0, lag_s=self.bounds.lag_s)
        self._metrics.witness_lagging.set(1 if lagging else 0)
        self._lagging = lagging
        return lagging

    async def _write(self, op: Callable[[Txn], Awaitable[int]]) -> int:
        return int(await self._store.writer.write(op))
