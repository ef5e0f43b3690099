"""A small HTTPS/1.1 server for the tlog-witness endpoint, over asyncio and h11 (a sans-I/O HTTP parser).

Only ``POST <prefix>/add-checkpoint`` is served; anything else is 404 or 405. Bodies are bounded (16 KiB,
as transparency-dev's witness), connections are kept alive (tlog-witness asks clients and witnesses to),
and a client that sends nothing for ``IDLE_S`` is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable

import h11

from olievlek import logs

from .protocol import MAX_BODY_BYTES, Answer

log = logs.get("witness.http")

IDLE_S = 30.0
Handler = Callable[[bytes], Awaitable[Answer]]


class WitnessHttpServer:
    def __init__(self, handler: Handler, prefix: str = "") -> None:
        self._handler = handler
        self._path = prefix.rstrip("/").encode() + b"/add-checkpoint"
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, tls: ssl.SSLContext) -> int:
        self._server = await asyncio.start_server(self._connection, host, port, ssl=tls)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BODY_BYTES)
        try:
            while True:
                answer = await self._one(conn, reader)
                if answer is None:
                    return
                writer.write(_response(conn, answer))
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, ConnectionError, TimeoutError, ssl.SSLError) as exc:
            log.info("witness.http_closed", reason=type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Answer | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), IDLE_S)
                conn.receive_data(data)
                if not data and request is None:
                    return None
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    return Answer(413, b"the body is too large\n")
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return await self._route(request, bytes(body))

    async def _route(self, request: h11.Request, body: bytes) -> Answer:
        if request.target.split(b"?")[0] != self._path:
            return Answer(404, b"not found\n")
        if request.method != b"POST":
            return Answer(405, b"add-checkpoint takes POST\n")
        return await self._handler(body)


def _response(conn: h11.Connection, answer: Answer) -> bytes:
    headers = [(b"content-type", answer.content_type.encode()), (b"content-length", str(len(answer.body)).encode())]
    return (conn.send(h11.Response(status_code=answer.status, headers=headers)) or b"") + \
        (conn.send(h11.Data(data=answer.body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
