"""The node's one outbound delivery stream, with reconnect and backoff.

Nodes dial out: municipal networks do not accept inbound connections. The
stream is reopened after any failure with jittered exponential backoff; the
broker redelivers whatever was not acknowledged.
"""

from __future__ import annotations

import asyncio
import random

import grpc

from olievlek import logs
from olievlek.v1 import broker_pb2

from .broker_client import BrokerClient
from .inbox import Inbox

log = logs.get("node.session")


class BrokerSession:
    """Keeps the Subscribe stream open and feeds the inbox."""

    def __init__(self, client: BrokerClient, inbox: Inbox, rng: random.Random | None = None) -> None:
        self._client = client
        self._inbox = inbox
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.connected = asyncio.Event()

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._stream()
                backoff = 0.2
            except grpc.aio.AioRpcError as exc:
                log.warning("stream.error", code=exc.code().name, details=exc.details())
            except Exception:  # e.g. an unreadable revocation list: do not ack, reconnect later
                log.exception("stream.failed")
            self.connected.clear()
            await asyncio.sleep(backoff * (0.5 + self._rng.random()))
            backoff = min(backoff * 2, 10.0)

    async def _stream(self) -> None:
        call = self._client.subscribe()
        try:
            await call.wait_for_connection()
            self.connected.set()
            log.info("stream.open", broker=self._client.target)
            while True:
                down = await call.read()
                if down is grpc.aio.EOF:
                    log.info("stream.ended")
                    return
                if down.WhichOneof("msg") == "delivery":
                    ack = await self._inbox.accept(down.delivery)
                    await call.write(broker_pb2.SubscribeUp(ack=ack))
        finally:
            call.cancel()
