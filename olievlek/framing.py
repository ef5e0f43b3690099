"""Length-prefixed messages on a stream (the node's local Unix socket).

A frame is a 4-byte big-endian length followed by that many bytes. Frames are
bounded so a client cannot make the node allocate without limit.
"""

from __future__ import annotations

import asyncio
import struct

MAX_FRAME = 1 << 20
_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """A frame was too large or the stream ended inside one."""


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> bytes:
    try:
        header = await reader.readexactly(_HEADER.size)
        (length,) = _HEADER.unpack(header)
        if length > limit:
            raise FrameError(f"frame of {length} bytes exceeds the limit of {limit}")
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise FrameError("stream ended inside a frame") from exc


async def write_frame(writer: asyncio.StreamWriter, data: bytes) -> None:
    if len(data) > MAX_FRAME:
        raise FrameError(f"frame of {len(data)} bytes exceeds the limit of {MAX_FRAME}")
    writer.write(_HEADER.pack(len(data)) + data)
    await writer.drain()
