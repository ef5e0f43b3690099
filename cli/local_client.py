"""The CLI's side of the node's local socket."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from olievlek.errors import LocalApiError, TransportError
from olievlek.framing import MAX_FRAME
from olievlek.i18n import language
from olievlek.v1 import local_pb2

_HEADER = struct.Struct(">I")


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except TimeoutError:
            raise TransportError(f"the node did not answer within {sock.gettimeout():.0f} s") from None
        if not chunk:
            raise TransportError("the node closed the local socket mid-answer")
        buf += chunk
    return bytes(buf)


def call(path: Path, request: local_pb2.LocalRequest, timeout: float = 30.0) -> local_pb2.LocalResponse:
    """Send one request to the node and return its answer.

    Raises:
        TransportError: no node listens on the socket.
        LocalApiError: the node answered with an error.
    """
    if not request.lang and os.environ.get("OLIEVLEK_LANG"):  # asked for: the node answers in it
        request.lang = language()
    data = request.SerializeToString()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise TransportError(
                f"no node answers on {path} ({exc.strerror}); is `olievlek node serve` running?"
            ) from exc
        sock.sendall(_HEADER.pack(len(data)) + data)
        (length,) = _HEADER.unpack(_recv_exactly(sock, _HEADER.size))
        if length > MAX_FRAME:
            raise TransportError("the node's answer is larger than a frame may be")
        response = local_pb2.LocalResponse.FromString(_recv_exactly(sock, length))
    if response.WhichOneof("response") == "error":
        raise LocalApiError(response.error.code, response.error.message)
    return response
