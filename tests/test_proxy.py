"""The partition proxy against a tiny echo server: it forwards, goes silent, heals and cleans up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.proxy import PartitionProxy

pytestmark = pytest.mark.timeout(30)

SILENCE_S = 1.0


class Echo:
    """Echoes every byte back and counts what reached it."""

    def __init__(self) -> None:
        self.received = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.transport.abort()
        await self._server.wait_closed()
        await asyncio.sleep(0)  # let the handlers see their aborted transports and end

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while data := await reader.read(4096):
                self.received += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    e = Echo()
    await e.start()
    yield e
    await e.close()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[tuple[PartitionProxy, int]]:
    p = PartitionProxy("127.0.0.1", echo.port)
    port = await p.start()
    yield p, port
    await p.close()


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.transport.abort()


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), 5)


async def assert_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A write gets no answer, and the connection is neither closed nor reset."""
    writer.write(b"anyone there?")
    await writer.drain()
    with pytest.raises(TimeoutError):
        # b"" (EOF) or ConnectionResetError here would mean the proxy closed the connection.
        await asyncio.wait_for(reader.read(100), SILENCE_S)
    assert not reader.at_eof()
    assert not writer.is_closing()
    assert writer.transport.get_extra_info("socket") is not None


async def test_bytes_pass(proxy: tuple[PartitionProxy, int]) -> None:
    p, port = proxy
    async with connection(port) as (reader, writer):
        assert await roundtrip(reader, writer, b"hello") == b"hello"
        assert await roundtrip(reader, writer, b"x" * 200_000) == b"x" * 200_000
    assert p.connections == 1
    assert p.bytes_forwarded == 2 * (5 + 200_000)


async def test_partition_is_silent_for_open_and_new_connections(
    proxy: tuple[PartitionProxy, int], echo: Echo
) -> None:
    p, port = proxy
    async with connection(port) as (reader, writer):
        assert await roundtrip(reader, writer, b"before") == b"before"
        seen = echo.received
        p.partition()
        assert p.partitioned
        await assert_silent(reader, writer)
        async with connection(port) as (reader2, writer2):
            await assert_silent(reader2, writer2)
        assert echo.received == seen, "bytes crossed the partition"


async def test_heal_resets_old_connections_and_forwards_new_ones(proxy: tuple[PartitionProxy, int]) -> None:
    p, port = proxy
    async with connection(port) as (reader, writer):
        assert await roundtrip(reader, writer, b"before") == b"before"
        p.partition()
        await assert_silent(reader, writer)
        p.heal()
        assert not p.partitioned
        # The connection that lived through the partition is given up (reset), not resumed.
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(100), 5) == b""
    async with connection(port) as (reader, writer):
        assert await roundtrip(reader, writer, b"after") == b"after"


async def test_close_leaves_no_tasks_or_connections(echo: Echo) -> None:
    before = asyncio.all_tasks()
    p = PartitionProxy("127.0.0.1", echo.port)
    port = await p.start()
    async with connection(port) as (reader, writer):
        assert await roundtrip(reader, writer, b"one") == b"one"
        async with connection(port) as (reader2, writer2):
            assert await roundtrip(reader2, writer2, b"two") == b"two"
            p.partition()
            async with connection(port) as (_r3, w3):  # held in the black hole
                w3.write(b"three")
                await w3.drain()
                await asyncio.sleep(0.1)
                assert p.connections == 3
                await p.close()
                assert not p._tasks and not p._links
                with contextlib.suppress(ConnectionError):
                    assert await asyncio.wait_for(reader.read(100), 5) == b""
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    new = [t for t in asyncio.all_tasks() - before if not t.done()]
    # Only the echo server's own handlers may remain until its fixture closes them.
    proxy_tasks = [t for t in new if getattr(t.get_coro(), "__qualname__", "").startswith("PartitionProxy.")]
    assert proxy_tasks == []
