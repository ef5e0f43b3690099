"""Several broker instances over one PostgreSQL database: who serves which delivery stream, and what another
instance queued.

Each instance has a name (host, process, a random part). A ``Subscribe`` claims its recipient's stream in the
store's leases (the newest claim wins; its epoch counts claims). Every poll interval one task per instance
reads, for the streams it serves, who owns them and how far their queues have moved - two indexed reads,
whatever the number of streams: a stream another instance claimed since is superseded here (its node moved
on, perhaps across a partition), and a queue that moved (an envelope accepted or a notice queued, by any
instance) wakes its stream. The poll interval bounds what polling adds to a delivery's latency.

A broker on SQLite is one instance: it needs none of this (its in-process ``Notifier`` and
``StreamRegistry`` see everything).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket

from olievlek import logs
from olievlek.metrics import Metrics

from .storage.interface import Instances
from .streams import Notifier

log = logs.get("broker.instances")


def instance_name() -> str:
    """This process's name among the instances: readable (host and process) and unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class InstanceWatch:
    """The streams this instance serves, checked against the database every ``poll_s``."""

    def __init__(self, store: Instances, notifier: Notifier, name: str, poll_s: float,
                 metrics: Metrics | None = None) -> None:
        self._store = store
        self._metrics = metrics
        self._notifier = notifier
        self.name = name
        self._poll_s = poll_s
        self._streams: dict[str, tuple[int, asyncio.Event]] = {}  # recipient -> (epoch, set when superseded)
        self._marks: dict[str, int] = {}  # recipient -> its queue's next sequence number, last seen

    async def claim(self, recipient: str, superseded: asyncio.Event) -> int:
        """Own ``recipient``'s stream from now on (a stream elsewhere ends at its instance's next check)."""
        epoch = await self._store.claim_stream(recipient, self.name)
        self._streams[recipient] = (epoch, superseded)
        self._count()
        return epoch

    async def release(self, recipient: str, epoch: int) -> None:
        if self._streams.get(recipient, (0, None))[0] == epoch:
            del self._streams[recipient]
            self._marks.pop(recipient, None)
            self._count()
        await self._store.release_stream(recipient, self.name, epoch)

    async def check(self) -> None:
        """Supersede the streams another instance claimed; wake those whose queue moved."""
        served = list(self._streams)
        owners = await self._store.stream_owners(served)
        for recipient in served:
            entry = self._streams.get(recipient)
            if entry is not None and owners.get(recipient) != (self.name, entry[0]):
                entry[1].set()
                if self._metrics is not None:
                    self._metrics.streams_taken_over.inc()
                log.info("stream.superseded_elsewhere", org=recipient, owner=owners.get(recipient, ("", 0))[0])
        for recipient, mark in (await self._store.queue_marks(served)).items():
            if self._marks.get(recipient) != mark:
                self._marks[recipient] = mark
                self._notifier.notify(recipient)

    def _count(self) -> None:
        if self._metrics is not None:
            self._metrics.streams_owned.set(len(self._streams))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.check()
            except Exception as exc:  # the database away (a failover): the next interval tries again
                log.warning("instances.check_failed", error=type(exc).__name__, detail=str(exc)[:200])
