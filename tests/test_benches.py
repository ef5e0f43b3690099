"""Every bench runs in its smoke mode (tiny sizes, the same code paths) and prints its figures.

The figures themselves are not asserted: speed is judged by the full benches (``make bench``), never by a
timed test. What this checks is that none of them has rotted: each runs to its end and reports a ratio
against the baseline it measured in the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .tools import REPO

BENCHES = sorted(p.stem for p in (REPO / "bench").glob("*_bench.py"))
PREFIX = "RESULT "


def test_every_bench_is_covered() -> None:
    assert BENCHES == ["abuse_bench", "audit_bench", "policy_bench", "pseudonym_bench", "query_bench", "route_bench",
                       "sdc_bench"]


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("bench", BENCHES)
def test_bench_smoke_mode_runs_and_reports(bench: str) -> None:
    r = subprocess.run([sys.executable, str(REPO / "bench" / f"{bench}.py"), "--smoke"], capture_output=True,
                       text=True, timeout=220, check=False, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    results = [json.loads(line.removeprefix(PREFIX)) for line in r.stdout.splitlines() if line.startswith(PREFIX)]
    assert len(results) == 1, r.stdout
    result = results[0]
    assert result["bench"] == bench.removesuffix("_bench") and result["smoke"] is True
    assert isinstance(result["ratio"], float | int) and result["ratio"] > 0, result
    print(r.stdout)
