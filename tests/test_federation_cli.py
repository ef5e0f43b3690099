"""End to end through the real entry points: `olievlek` processes, real sockets, real files.

A canary national register number is given to Gent's node only (through
stdin, never argv) and must appear in no file of the federation — Gent's own
database, WAL and log included, since identifying fields are stored only
encrypted. The positive control: Gent's node gives it back to its regisseur
(`case show`), so it was stored, and the read is in the access log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from olievlek.cli.federation import Federation

from .canary import forms, scan
from .federations import cli, running

CANARY = "85073003328"
CANARY_IDENTITY = {"national_number": "85.07.30-033.28", "given_names": "Canary", "family_name": "Kanarie"}
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def federation() -> Iterator[Federation]:
    with running("olv-test-") as fed:
        yield fed


def test_move_alert_through_the_cli_and_canary_stays_home(federation: Federation) -> None:
    gent, antwerpen, leuven = (str(federation.socket(o)) for o in ("gent", "antwerpen", "leuven"))
    r = cli("case", "open", "--socket", gent, "--phase", "follow-up", "--concern", "single-issue-environmental",
            "--risk", "high", "--agency", "police", "--agency", "clb", stdin=json.dumps(CANARY_IDENTITY))
    assert r.returncode == 0, r.stderr
    assert "case 1 opened" in r.stdout

    r = cli("alert", "move", "--socket", gent, "--case", "1", "--to", "11002")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "accepted by the broker for antwerpen" in r.stdout

    deadline = time.monotonic() + 15
    while "pending identification" not in (r := cli("inbox", "--socket", antwerpen)).stdout:
        assert time.monotonic() < deadline, r.stdout + r.stderr
        time.sleep(0.2)
    assert "gent" in r.stdout and "single-issue-environmental" in r.stdout and "gent-livc" in r.stdout

    r = cli("alert", "move", "--socket", gent, "--case", "1", "--to", "24062", "--include", "agencies")
    assert r.returncode == 1
    assert "policy_denied" in r.stdout and "summary.agencies" in r.stdout and "move-alert" in r.stdout

    r = cli("inbox", "--socket", leuven)
    assert r.returncode == 0 and "inbox is empty" in r.stdout

    # Another (valid) person matches nothing, and the node keeps nothing of them.
    r = cli("inbox", "identify", "--socket", antwerpen,
            stdin=json.dumps({"national_number": "93.05.18-223.61"}))
    assert r.returncode == 1 and "no waiting item matches" in r.stdout

    # A bad number is refused without being echoed.
    r = cli("case", "open", "--socket", gent, stdin=json.dumps({**CANARY_IDENTITY, "national_number": "85073003399"}))
    assert r.returncode == 2
    assert "check digits" in r.stderr and "85073003399" not in r.stderr + r.stdout

    r = cli("case", "show", "--socket", gent, "--case", "1", "--purpose", "follow-up")
    assert r.returncode == 0 and "85073003328" in r.stdout and "Kanarie" in r.stdout, r.stdout + r.stderr
    r = cli("case", "access-log", "--socket", gent)
    assert "national_number" in r.stdout and "follow-up" in r.stdout
    r = cli("case", "show", "--socket", gent, "--case", "1", "--purpose", "curiosity")
    assert r.returncode == 2 and "unknown purpose" in r.stderr
    with tempfile.TemporaryDirectory() as elsewhere:  # the export is the person's data: not in the workdir
        target = Path(elsewhere) / "export.json"
        r = cli("subject", "export", "--socket", gent, "--case", "1", "--out", str(target))
        assert r.returncode == 0, r.stdout + r.stderr
        assert target.stat().st_mode & 0o777 == 0o600
        exported = json.loads(target.read_text())
        assert exported["identity"]["familyName"] == "Kanarie"
        assert exported["sent_summaries"][0]["recipient"] == "antwerpen"

    federation.stop()  # flush and close every file before scanning
    needles = forms(CANARY)
    gent_db = federation.node_dir("gent") / "node.sqlite"
    assert gent_db.stat().st_size > 0
    # Nothing anywhere: not in the broker's or other nodes' files, not in Gent's database, WAL or logs.
    assert scan(federation.workdir, needles) == []
    assert scan(federation.workdir, {"utf-8": b"Kanarie", "utf-16": "Kanarie".encode("utf-16-le")}) == []
    logs = federation.workdir / "logs"
    assert (logs / "gent.log").stat().st_size > 0 and (logs / "broker.log").stat().st_size > 0
    for line in (logs / "broker.log").read_text().splitlines():
        json.loads(line)  # services log JSON, one event per line


def test_olievlek_up_plays_the_scenario(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="olv-up-") as d:
        r = subprocess.run([sys.executable, "-m", "olievlek", "up", "--workdir", d], capture_output=True,
                           text=True, timeout=150, check=False)
        # What `up` and every service made is the owner's alone: the CA key, key-encryption keys, databases.
        made = [p for p in Path(d).rglob("*") if not p.is_symlink()]
        loose = [f"{p.relative_to(d)} {oct(p.stat().st_mode & 0o777)}" for p in made
                 if p.stat().st_mode & 0o777 != (0o700 if p.is_dir() else 0o600)]
        assert any(p.name == "broker.sqlite" for p in made) and any(p.name == "ca.key" for p in made)
    assert r.returncode == 0, r.stdout + r.stderr
    assert loose == [], loose
    assert "scenario passed" in r.stdout
    assert "pending identification" in r.stdout
    assert "summary.agencies" in r.stdout and "move-alert" in r.stdout
    assert "✘" not in r.stdout



def test_fallback_identity_matches_as_probable(tmp_path: Path) -> None:
    """A number matches for certain; a person known only by names and birth date matches as probable."""
    with tempfile.TemporaryDirectory(prefix="olv-fb-") as d:
        fed = Federation(Path(d))
        fed.create()
        fed.start()
        try:
            person = {**CANARY_IDENTITY, "birth_date": "1985-07-30"}
            r = cli("case", "open", "--socket", str(fed.socket("gent")), "--phase", "follow-up",
                    stdin=json.dumps(person))
            assert r.returncode == 0, r.stderr
            # Gent's summary carries the number's pseudonym; Antwerpen cannot match on names alone.
            r = cli("alert", "move", "--socket", str(fed.socket("gent")), "--case", "1", "--to", "11002")
            assert r.returncode == 0, r.stdout + r.stderr
            deadline = time.monotonic() + 15
            while "pending identification" not in cli("inbox", "--socket", str(fed.socket("antwerpen"))).stdout:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            by_name = {"given_names": "CANARY", "family_name": "kanarie", "birth_date": "1985-07-30"}
            r = cli("inbox", "identify", "--socket", str(fed.socket("antwerpen")), stdin=json.dumps(by_name))
            assert r.returncode == 1 and "no waiting item matches" in r.stdout
            r = cli("inbox", "identify", "--socket", str(fed.socket("antwerpen")),
                    stdin=json.dumps({**by_name, "national_number": "85.07.30-033.28"}))
            assert r.returncode == 0 and "matched inbox item(s) 1" in r.stdout and "probable" not in r.stdout
            # A second person has no Belgian number: Gent holds and alerts on the fallback identity.
            foreign = {"given_names": "Ana-Sofía", "family_name": "Pérez", "birth_date": "1990-02-00"}
            r = cli("case", "open", "--socket", str(fed.socket("gent")), "--phase", "pre-analysis",
                    stdin=json.dumps(foreign))
            assert r.returncode == 0 and "case 2 opened" in r.stdout, r.stderr
            r = cli("alert", "move", "--socket", str(fed.socket("gent")), "--case", "2", "--to", "11002")
            assert r.returncode == 0, r.stdout + r.stderr
            deadline = time.monotonic() + 15
            while cli("inbox", "--socket", str(fed.socket("antwerpen"))).stdout.count("pending identification") < 1:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            typed = {"given_names": "ana sofia", "family_name": "PEREZ", "birth_date": "1990-02-00"}
            r = cli("inbox", "identify", "--socket", str(fed.socket("antwerpen")), stdin=json.dumps(typed))
            assert r.returncode == 0 and "matched inbox item(s) 2" in r.stdout, r.stdout + r.stderr
            assert "probable: matched on names and birth date only" in r.stdout
        finally:
            fed.stop()


def test_a_regisseur_runs_a_case_from_signal_to_erasure_with_the_cli_alone() -> None:
    from olievlek.cli.federation import NodeSpec

    with tempfile.TemporaryDirectory(prefix="olv-life-") as d:
        fed = Federation(Path(d), nodes=(NodeSpec("gent"), NodeSpec("antwerpen")))
        fed.create()
        fed.start()
        try:
            gent = str(fed.socket("gent"))

            def ok(*args: str, stdin: str | None = None) -> str:
                r = cli(*args, "--socket", gent, stdin=stdin)
                assert r.returncode == 0, (args, r.stdout + r.stderr)
                return r.stdout

            assert "case 1 opened" in ok("case", "open", "--phase", "signal", "--concern", "left-wing",
                                         stdin=json.dumps(CANARY_IDENTITY))
            assert "pre-analysis" in ok("case", "phase", "--case", "1", "--to", "pre-analysis")
            assert "note added" in ok("case", "note", "--case", "1", stdin="Overleg met de school gepland")
            assert "follow-up" in ok("case", "phase", "--case", "1", "--to", "follow-up")
            assert "risk high" in ok("case", "update", "--case", "1", "--risk", "high", "--agency", "police")
            assert "hit_no_hit_check" in ok("agreement", "record", "--case", "1", "--recipient-kind",
                                            "federal_liaison", "--purpose", "hit_no_hit_check",
                                            "--valid-until", "2030-12-31", "--evidence", "gent-2026-0042")
            assert "accepted by the broker for antwerpen" in ok("alert", "move", "--case", "1", "--to", "11002")
            shown = ok("case", "show", "--case", "1", "--purpose", "follow-up")
            assert "Overleg met de school" in shown and "signal -> pre-analysis" in shown
            assert "kept until" in ok("case", "close", "--case", "1")
            assert "nothing due" in ok("retention", "due", "--within", "30d")
            erased = ok("subject", "erase", "--case", "1", "--reason", "subject-request")
            assert "case 1 erased" in erased and "antwerpen" in erased
            r = cli("case", "show", "--socket", gent, "--case", "1", "--purpose", "follow-up")
            assert r.returncode == 2 and "erased" in r.stderr
            deadline = time.monotonic() + 15
            while "inbox is empty" not in (r := cli("inbox", "--socket", str(fed.socket("antwerpen")))).stdout:
                assert time.monotonic() < deadline, r.stdout
                time.sleep(0.2)
            assert "erasure.notice" in ok("outbox")
        finally:
            fed.stop()
