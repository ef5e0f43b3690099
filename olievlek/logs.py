"""Structured logging. Services log JSON, one event per decision.

Never pass a name, national register number, address, birth date or free
text to a logger: events carry org ids, kinds, rule ids, codes and counts.
The canary tests grep every log file for seeded identifiers.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog


def configure(json: bool = True, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Configure structlog for a service (JSON) or an interactive tool (console)."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # A plain traceback (source lines, never local variables: those could hold identifiers).
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get(name: str) -> Any:
    """A bound logger tagged with the component name."""
    return structlog.get_logger(component=name)
