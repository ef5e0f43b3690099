"""Running a service until it is told to stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


async def until_stopped(on_reload: Callable[[], Awaitable[object]] | None = None) -> None:
    """Return on SIGINT or SIGTERM; with ``on_reload``, run it on each SIGHUP."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if on_reload is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(on_reload()))
    await stop.wait()
