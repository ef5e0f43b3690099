"""Running a service until it is told to stop."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any


def private_files() -> None:
    """Everything this process creates from now on is the owner's alone: files 0600, folders 0700 (its
    databases, WAL files, logs and keys hold what only this service may read). A file meant to be shared
    (the node's socket, for its users' group) is opened up explicitly where it is made."""
    os.umask(0o077)


def read_outcome(fut: asyncio.Future[Any]) -> None:
    """A done-callback for a future whose awaiter may be gone (cancelled, or it stopped awaiting): read its
    exception here, so asyncio does not report it as never retrieved; an awaiter still gets it."""
    if not fut.cancelled():
        fut.exception()


async def until_stopped(on_reload: Callable[[], Awaitable[object]] | None = None) -> None:
    """Return on SIGINT or SIGTERM; with ``on_reload``, run it on each SIGHUP."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if on_reload is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(on_reload()))
    await stop.wait()
