"""The network-namespace lab: a real federation across hosts survives a silent partition.

Needs root and iproute2; the script exits 77 where it cannot create namespaces, and the
test is then unavailable with the script's own reason: a failure under CI (``tests/tools.py``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .tools import require, require_root, unavailable

LAB = Path(__file__).resolve().parent.parent / "deploy" / "lab" / "netns_lab.py"
SKIP = 77
LAB_TIMEOUT_S = 140  # the script's own limit: it fails and cleans up before pytest gives up


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_alerts_survive_a_silent_partition() -> None:
    require("ip")
    require_root("the lab creates network namespaces")
    # Short keepalive (where the nodes support setting it) so that 5 s of partition is enough
    # for Antwerpen's node to declare its stream dead and reconnect, not merely ride it out.
    cmd = [sys.executable, str(LAB), "--partition-seconds", "5", "--keepalive-seconds", "1",
           "--timeout", str(LAB_TIMEOUT_S)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        try:
            output, _ = proc.communicate(timeout=LAB_TIMEOUT_S + 20)
        except subprocess.TimeoutExpired:
            # SIGTERM, not SIGKILL: the script's clean-up removes its namespaces and processes.
            proc.send_signal(signal.SIGTERM)
            try:
                output, _ = proc.communicate(timeout=25)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
            pytest.fail(f"the lab hung past its own timeout:\n{output}")
    if proc.returncode == SKIP:
        reason = next((line for line in output.splitlines() if line.startswith("SKIP:")), output.strip())
        unavailable(reason)
    assert proc.returncode == 0, output
    assert "PASS:" in output, output
