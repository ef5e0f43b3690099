"""The node's one outbound delivery stream, with reconnect and backoff.

Nodes dial out: municipal networks do not accept inbound connections. The
stream is reopened after any failure with jittered exponential backoff; the
broker redelivers whatever was not acknowledged. Deliveries are read by one
task into a bounded queue (when it is full the reader stops reading, and
HTTP/2 flow control holds the broker back); the other task takes whatever has
arrived, up to ``MAX_BATCH``, stores it in one transaction and acknowledges it
in one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import grpc

from olievlek import logs
from olievlek.v1 import broker_pb2

from .broker_client import BrokerClient
from .inbox import Inbox

log = logs.get("node.session")

MAX_BATCH = 256
SWITCH_CHECK_S = 1.0  # how soon an idle stream follows the client to another broker instance
_END = object()


class BrokerSession:
    """Keeps the Subscribe stream open and feeds the inbox."""

    def __init__(self, client: BrokerClient, inbox: Inbox, rng: random.Random | None = None) -> None:
        self._client = client
        self._inbox = inbox
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.connected = asyncio.Event()
        self._busy = asyncio.Lock()
        self._stopping = False

    async def run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            generation = self._client.generation
            try:
                await self._stream()
                backoff = 0.2
            except grpc.aio.AioRpcError as exc:
                log.warning("stream.error", code=exc.code().name, details=exc.details(), broker=self._client.target)
                self._client.failed(exc.code(), generation)
            except Exception:  # e.g. an unreadable revocation list: do not ack, reconnect later
                log.exception("stream.failed")
            self.connected.clear()
            await asyncio.sleep(backoff * (0.5 + self._rng.random()))
            backoff = min(backoff * 2, 10.0)

    async def stop(self, grace: float) -> None:
        """Drain: let the batch being stored be acknowledged, then take no more."""
        self._stopping = True
        try:
            await asyncio.wait_for(self._busy.acquire(), grace)  # held for good: no new batch starts
        except TimeoutError:
            log.warning("stream.stop_timeout", grace_s=grace)

    async def _stream(self) -> None:
        generation = self._client.generation
        call = self._client.subscribe()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2 * MAX_BATCH)
        reader = asyncio.create_task(self._read(call, queue))
        try:
            await call.wait_for_connection()
            self.connected.set()
            log.info("stream.open", broker=self._client.target)
            while not self._stopping:
                getter = asyncio.ensure_future(queue.get())
                try:
                    finished, _ = await asyncio.wait({getter}, timeout=SWITCH_CHECK_S)  # wait_for can swallow a cancel
                finally:
                    if not getter.done():
                        getter.cancel()  # a cancelled Queue.get loses no item
                if not finished:
                    if self._client.generation != generation:  # a call found this instance gone: follow it
                        log.info("stream.follows_instance", broker=self._client.target)
                        return
                    continue
                items = [getter.result()]
                while len(items) < MAX_BATCH and not queue.empty():
                    items.append(queue.get_nowait())
                downs = [i for i in items if isinstance(i, broker_pb2.SubscribeDown)]
                if downs:
                    async with self._busy:
                        acks = await self._inbox.accept(downs)
                        if acks:
                            await call.write(broker_pb2.SubscribeUp(acks=broker_pb2.AckBatch(acks=acks)))
                    if self._inbox.stopped_at is not None:  # redelivered, in order, on the next stream
                        log.info("stream.restart_for_redelivery", seq=self._inbox.stopped_at)
                        return
                for item in items:
                    if isinstance(item, BaseException):
                        raise item
                    if item is _END:
                        log.info("stream.ended")
                        return
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            call.cancel()

    @staticmethod
    async def _read(call: Any, queue: asyncio.Queue[Any]) -> None:
        try:
            while True:
                down = await call.read()
                if down is grpc.aio.EOF:
                    break
                await queue.put(down)
        except Exception as exc:  # handed to the consumer, which raises it after acking what came before
            await queue.put(exc)
        await queue.put(_END)
