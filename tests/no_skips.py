"""A pytest plugin: under CI (``CI=true``) a run with any skipped test fails, listing them.

A skip is how a suite passes without testing what it claims; tests whose tool is missing fail under CI
(``tools.unavailable``), and this catches any other skip (``pytest.skip``, ``importorskip``, a marker).
Loaded by ``conftest.py``; with pytest-xdist it counts on the controller, which sees every report.
"""

from __future__ import annotations

import pytest

from .tools import strict


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput") or not strict():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if not skipped:
        return
    lines = [f"  {getattr(r, 'nodeid', '?')}: {r.longrepr[2] if isinstance(r.longrepr, tuple) else r.longrepr}"
             for r in skipped]
    if reporter is not None:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; under CI nothing may skip:", red=True)
        for line in lines:
            reporter.write_line(line, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
