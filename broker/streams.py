"""Live delivery streams: one per organisation, newest wins.

``Notifier`` wakes the stream of a recipient when something is queued for
it. ``StreamRegistry`` keeps the one active stream per organisation; a new
``Subscribe`` supersedes the old one, which then ends.
"""

from __future__ import annotations

import asyncio


class Notifier:
    """Per-recipient wake-ups; ``wait`` after ``clear`` never misses a notify."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, recipient: str) -> asyncio.Event:
        return self._events.setdefault(recipient, asyncio.Event())

    def notify(self, recipient: str) -> None:
        self.event(recipient).set()


class StreamRegistry:
    """The active stream of each organisation."""

    def __init__(self) -> None:
        self._current: dict[str, asyncio.Event] = {}

    def claim(self, org: str, mine: asyncio.Event | None = None) -> asyncio.Event:
        """Register a new stream; returns the event set when it is superseded (``mine``, when given: the one
        another instance's claim sets too)."""
        old = self._current.get(org)
        if old is not None:
            old.set()
        mine = mine or asyncio.Event()
        self._current[org] = mine
        return mine

    def release(self, org: str, token: asyncio.Event) -> None:
        if self._current.get(org) is token:
            del self._current[org]

    def close_all(self) -> None:
        for token in self._current.values():
            token.set()
