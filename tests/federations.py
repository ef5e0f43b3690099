"""Running `olievlek` as a user would: the CLI as a process, and a whole federation of processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from olievlek.cli.federation import Federation


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "olievlek", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, check=False)


@contextlib.contextmanager
def running(prefix: str) -> Iterator[Federation]:
    """The demo federation, started in a fresh directory with a short path (Unix sockets: 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        fed = Federation(Path(d))
        fed.create()
        fed.start()
        try:
            yield fed
        finally:
            fed.stop()
