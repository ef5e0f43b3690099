"""The liaison workflow through the `olievlek` command line, against a federation of real processes.

Gent holds a person who agreed to hit/no-hit checks; the federal liaison queries a CSV file of
three persons (one with a bad check digit), asks for a disclosure, Gent's regisseur approves part
of it; the audit report counts the query and the disclosure. The queried numbers appear in no file
of the federation: the liaison's node keeps pseudonyms only, and only of hits.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from olievlek.cli.federation import LIAISON_BASIS, Federation

from .canary import forms, scan
from .federations import cli, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

HELD = {"national_number": "90.01.01-123.95", "given_names": "Wel", "family_name": "Akkoord"}
UNKNOWN = "77041245653"
BAD = "90010112396"  # wrong check digits


@pytest.fixture(scope="module")
def federation() -> Iterator[Federation]:
    with running("olv-liaison-") as fed:
        yield fed


def _until(args: tuple[str, ...], text: str) -> str:
    deadline = time.monotonic() + 20
    while text not in (r := cli(*args)).stdout:
        assert time.monotonic() < deadline, r.stdout + r.stderr
        time.sleep(0.2)
    return r.stdout


def test_query_disclose_approve_and_report_through_the_cli(federation: Federation) -> None:
    gent, liaison = str(federation.socket("gent")), str(federation.socket("fed-liaison"))
    r = cli("case", "open", "--socket", gent, "--phase", "follow-up", "--concern", "left-wing", "--risk", "low",
            stdin=json.dumps(HELD))
    assert r.returncode == 0, r.stderr
    r = cli("agreement", "record", "--socket", gent, "--case", "1", "--recipient-kind", "federal_liaison",
            "--purpose", "hit_no_hit_check", "--purpose", "disclosure_on_request", "--valid-until", "2027-06-30",
            "--evidence", "gent-2026-0099")
    assert r.returncode == 0, r.stdout + r.stderr
    _until(("outbox", "--socket", gent), "directory.register")
    time.sleep(1.0)  # the registration is sent right after the intent; verify waits for nothing
    r = cli("directory", "verify", "--socket", gent)
    assert r.returncode == 0 and "1 entries at the broker (1 registered here)" in r.stdout, r.stdout + r.stderr

    with tempfile.TemporaryDirectory() as elsewhere:  # the liaison's input file is not the federation's
        batch = Path(elsewhere) / "batch.csv"
        batch.write_text(f"national_number\n{HELD['national_number']}\n{UNKNOWN}\n{BAD}\n")
        r = cli("liaison", "query", "--socket", liaison, "--purpose", "hit_no_hit_check",
                "--legal-basis", LIAISON_BASIS, "--file-ref", "fed-2026-11", "--from-file", str(batch))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "3 rows: 1 hit, 1 no hit, 1 invalid" in r.stdout
        assert "gent-livc" in r.stdout and "check digits" in r.stdout
        for number in (UNKNOWN, BAD, "90010112395"):
            assert number not in r.stdout + r.stderr  # rows by number, never by identifier
        assert scan(Path(elsewhere), forms(UNKNOWN)) != []  # positive control for the scan below
    # A free-text file reference is refused before anything is asked.
    r = cli("liaison", "query", "--socket", liaison, "--purpose", "hit_no_hit_check", "--legal-basis", LIAISON_BASIS,
            "--file-ref", "dossier of mr x", stdin=f"national_number\n{UNKNOWN}\n")
    assert r.returncode == 2 and "file-ref" in r.stderr

    r = cli("liaison", "disclose", "--socket", liaison, "--hit", "1", "--field", "phase", "--field", "concerns",
            "--field", "risk-level", "--purpose", "disclosure_on_request", "--legal-basis", LIAISON_BASIS,
            "--file-ref", "fed-2026-11")
    assert r.returncode == 0 and "accepted by the broker for gent" in r.stdout, r.stdout + r.stderr
    inbox = _until(("inbox", "--socket", gent), "disclosure.request")
    assert "asks phase, concerns, risk-level" in inbox and "fed-2026-11" in inbox
    r = cli("disclosure", "approve", "--socket", gent, "--item", "1", "--field", "phase", "--field", "concerns")
    assert r.returncode == 0 and "accepted by the broker for fed-liaison" in r.stdout, r.stdout + r.stderr
    answer = _until(("inbox", "--socket", liaison), "disclosure.response")
    assert "approved: phase, concerns" in answer and "follow-up" in answer and "left-wing" in answer

    r = cli("audit", "report", "--node-config", str(federation.node_dir("fed-liaison") / "node.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    row = next(line for line in r.stdout.splitlines() if "fed-liaison" in line and "20" in line)
    assert [c.strip() for c in row.split("│") if c.strip()][2:5] == ["1", "2", "1"]  # queries, rows, hits

    federation.stop()
    for number in (UNKNOWN, "90010112395"):
        assert scan(federation.workdir, forms(number)) == []
