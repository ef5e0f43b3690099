"""The CLI's consoles. Piped output (scripts, tests, logs) gets wide lines instead of
80 columns, so table cells are not cut."""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 160

out = Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=PIPED_WIDTH)
