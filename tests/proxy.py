"""A TCP proxy that can simulate a network partition between a node and the broker.

gRPC over TLS passes through as opaque bytes. ``partition()`` makes the path
silent in both directions without closing anything, the way a cut link or a
failed router behaves: the endpoints see no FIN and no RST, only silence, so
they can only find out through their own timeouts (gRPC keepalive). A proxy
that closed or reset connections would test reconnect logic, not the
detection of a dead peer.

Limits of the simulation, to keep in mind when reading a test's result:

* The proxy's kernel still completes TCP handshakes and acknowledges bytes
  into its own receive buffer, which a real partition would not. A connect
  during a partition therefore succeeds and then hangs (the TLS handshake
  stalls) instead of timing out on the SYN.
* While partitioned the proxy stops *reading* rather than reading and
  discarding. With nothing read, the proxy's receive window fills, the
  sender's window closes, its send buffer fills and its writes stall — as
  they would when no ACK comes back. Reading and discarding would instead let
  a sender write without limit into the void, so back-pressure during an
  outage could never be observed. The bytes already read into user space when
  the partition starts are dropped: those are the packets in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

_CHUNK = 64 * 1024


def _stop_reading(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport  # typed as write-only, but a socket transport reads too
    if isinstance(transport, asyncio.ReadTransport) and not transport.is_closing():
        transport.pause_reading()


@dataclass(eq=False)
class _Link:
    """One client connection and, once connected, its upstream leg."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    # Set when a partition starts while this link exists; a severed link never forwards again.
    severed: bool = False
    # Set when heal() or close() gives up on a severed link, so its parked task can end.
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.upstream) if w is not None]

    def sever(self) -> None:
        self.severed = True
        for w in self.writers():
            _stop_reading(w)

    def abort(self) -> None:
        """RST both legs: used when the link is given up, never to signal a partition."""
        for w in self.writers():
            w.transport.abort()
        self.released.set()


class PartitionProxy:
    """Forward TCP between ``listen_host:<port>`` and a target until told to partition."""

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1",
                 target_unix: str | None = None) -> None:
        self._target = (target_host, target_port)
        self._target_unix = target_unix  # forward to this Unix socket instead (a PostgreSQL cluster's)
        self._listen_host = listen_host
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._partitioned = False
        self.bytes_forwarded = 0
        self.connections = 0

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    async def start(self) -> int:
        """Listen on a free port and return it."""
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        self._server = await asyncio.start_server(self._serve, self._listen_host, 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def partition(self) -> None:
        """From now on forward nothing, in either direction, and close nothing."""
        self._partitioned = True
        for link in self._links:
            link.sever()

    def heal(self) -> None:
        """Forward again for new connections; give up on those that lived through the partition.

        Their endpoints have already declared them dead through keepalive; what
        a real network would do with them after the outage is a reset on the
        next segment, which the abort reproduces at once.
        """
        self._partitioned = False
        for link in [link for link in self._links if link.severed]:
            link.abort()

    async def close(self) -> None:
        """Stop listening, drop every connection and wait for every task to end."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- per connection ---------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link = _Link(writer)
        self._links.add(link)
        self.connections += 1
        try:
            if self._partitioned:
                # A black hole: accepted (the kernel already did that) but never answered.
                link.sever()
                await link.released.wait()
                return
            try:
                up_reader, up_writer = await (asyncio.open_unix_connection(self._target_unix) if self._target_unix
                                              else asyncio.open_connection(*self._target))
            except OSError:
                return  # the finally resets the client, as an unreachable target would
            link.upstream = up_writer
            if link.severed:  # the partition started while we were connecting
                _stop_reading(up_writer)
                await link.released.wait()
                return
            await asyncio.gather(self._pump(reader, up_writer, link), self._pump(up_reader, writer, link))
            if not link.severed:
                for w in link.writers():
                    w.close()
                for w in link.writers():
                    with contextlib.suppress(OSError):
                        await w.wait_closed()
        finally:
            # abort() on an already closed transport is a no-op; on an open one it releases the socket.
            link.abort()
            self._links.discard(link)
            self._tasks.discard(task)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link) -> None:
        while True:
            reset = False
            try:
                data = await src.read(_CHUNK)
            except OSError:
                data, reset = b"", True
            if link.severed:
                # Dropped, EOF and reset alike: nothing crosses a partition.
                await link.released.wait()
                return
            if reset:
                link.abort()  # one leg was reset: pass the reset on, as a TCP connection would
                return
            if not data:
                if dst.can_write_eof() and not dst.transport.is_closing():
                    dst.write_eof()  # half-close: the other direction may still carry data
                return
            dst.write(data)
            try:
                await dst.drain()
            except OSError:
                link.abort()
                return
            self.bytes_forwarded += len(data)
