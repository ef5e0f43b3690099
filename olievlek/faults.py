"""Crash points for fault-injection tests (the FoundationDB "buggify" idea, reduced to one switch).

With ``OLIEVLEK_FAULT=<name>`` in its environment, a process kills itself with
SIGKILL when it reaches the point of that name — no cleanup, no flush, exactly
like ``kill -9`` — after passing it ``OLIEVLEK_FAULT_SKIP`` times (default 0).
With ``OLIEVLEK_FAULT_MODE=raise`` the point raises ``InjectedFault`` (an
``OSError``, like a full disk) ``OLIEVLEK_FAULT_TIMES`` times (default 1)
instead, so a failing commit can be tested in-process.
Without the variable a point costs one dictionary lookup.
Points: ``broker.after_leaf_append`` (leaf appended, envelope not yet queued),
``broker.before_commit`` (everything written, transaction not committed),
``node.erasure_before_commit`` (data key destroyed and notices queued, not committed).
"""

from __future__ import annotations

import os
import signal

_passed: dict[str, int] = {}


class InjectedFault(OSError):
    """Raised at a fault point in ``raise`` mode."""


def point(name: str) -> None:
    if os.environ.get("OLIEVLEK_FAULT") != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    fired = _passed[name] - int(os.environ.get("OLIEVLEK_FAULT_SKIP", "0"))
    if fired <= 0:
        return
    if os.environ.get("OLIEVLEK_FAULT_MODE") == "raise":
        if fired <= int(os.environ.get("OLIEVLEK_FAULT_TIMES", "1")):
            raise InjectedFault(f"injected fault at {name}")
        return
    os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Forget how often points were passed (in-process tests)."""
    _passed.clear()
