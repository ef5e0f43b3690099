"""Per-identity rate limits: token buckets on calls and on refusals, and a once-per-interval log gate.

A caller over its limit is told how long to wait (the broker answers ``RESOURCE_EXHAUSTED`` with a
``google.rpc.RetryInfo``); nothing it sent is dropped or refused for good, and a well-behaved sender
that honours the delay gets through. The buckets live in memory: a restart forgets them, which only
ever lets a caller through sooner.

Limits are per exact identity ("kind/id"), never per connection, so opening more channels buys nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

MAX_TRACKED = 10_000  # identities whose buckets are kept; the federation has far fewer


@dataclass(frozen=True, slots=True)
class Limit:
    """A sustained rate and the burst allowed on top of it."""

    per_s: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_s <= 0 or self.burst < 1:
            raise ValueError(f"a rate limit needs per_s > 0 and burst >= 1, got {self.per_s} and {self.burst}")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass
class TokenBuckets:
    """One bucket per key under one ``Limit``; time comes from the caller (seconds, monotonic)."""

    limit: Limit
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def _refill(self, key: str, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._buckets.clear()  # bounded memory; a reset only ever lets callers through sooner
            b = self._buckets[key] = _Bucket(self.limit.burst, now)
        b.tokens = min(self.limit.burst, b.tokens + (now - b.at) * self.limit.per_s)
        b.at = now
        return b

    def wait(self, key: str, now: float, cost: float = 1.0) -> float:
        """0 when ``cost`` tokens are there (and takes them); else the seconds until they will be. A cost
        above the burst passes once the bucket is full, and leaves it in debt."""
        b = self._refill(key, now)
        need = min(cost, self.limit.burst)
        if b.tokens >= need:
            b.tokens -= cost
            return 0.0
        return (need - b.tokens) / self.limit.per_s

    def peek(self, key: str, now: float) -> float:
        """Seconds until one token is there, taking nothing."""
        b = self._refill(key, now)
        return 0.0 if b.tokens >= 1 else (1 - b.tokens) / self.limit.per_s

    def take(self, key: str, now: float, cost: float = 1.0) -> None:
        """Take tokens even into debt (a refusal already happened): later calls wait it off."""
        b = self._refill(key, now)
        b.tokens = max(-self.limit.burst, b.tokens - cost)


@dataclass
class OncePerInterval:
    """Lets one event per key through per interval (logging a client's errors without flooding the log)."""

    interval_s: float
    clock: Callable[[], float]
    _last: dict[str, float] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)

    def allow(self, key: str) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return False
        if len(self._last) >= MAX_TRACKED:
            self._last.clear()
        self._last[key] = now
        return True

    def take_suppressed(self, key: str) -> int:
        return self.suppressed.pop(key, 0)
