"""`olievlek audit …` on a running federation, as its organisations would use it."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from olievlek.cli.federation import DEFAULT_BUNDLE, Federation

from .federations import cli, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def fed() -> Iterator[Federation]:
    with running("olv-audit-") as f:
        for org, nrn, to in (("gent", "85.07.30-033.28", "11002"), ("leuven", "93.05.18-223.61", "11002")):
            sock = str(f.socket(org))
            r = cli("case", "open", "--socket", sock, "--phase", "follow-up", "--agency", "police",
                    stdin=json.dumps({"national_number": nrn, "given_names": "A", "family_name": "B"}))
            assert r.returncode == 0, r.stderr
            assert cli("alert", "move", "--socket", sock, "--case", "1", "--to", to).returncode == 0
        refused = cli("alert", "move", "--socket", str(f.socket("gent")), "--case", "1", "--to", "24062",
                      "--include", "agencies")
        assert refused.returncode == 1
        yield f


def audit(fed: Federation, org: str, *args: str) -> str:
    r = cli("audit", *args, "--node-config", str(fed.node_dir(org) / "node.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_verify_recomputes_the_tree_and_checks_the_nodes_head(fed: Federation) -> None:
    out = audit(fed, "gent", "verify")
    assert "verified against the signed head" in out and "consistent with the head of size" in out


def test_query_shows_only_the_callers_own_events(fed: Federation) -> None:
    gent = audit(fed, "gent", "query")
    assert "gent" in gent and "refused" in gent and "move-alert" in gent
    assert not re.search(r"│ leuven\s+│", gent), gent  # Leuven's send to Antwerpen is not Gent's business
    leuven = audit(fed, "leuven", "query", "--decision", "accepted")
    assert re.search(r"│ leuven\s+│", leuven) and not re.search(r"│ gent\s+│", leuven)
    antwerpen = audit(fed, "antwerpen", "query")
    assert re.search(r"│ gent\s+│", antwerpen) and re.search(r"│ leuven\s+│", antwerpen)  # it received both


def test_report_and_proof(fed: Federation, tmp_path: Path) -> None:
    out = audit(fed, "gent", "report", "--csv", str(tmp_path / "r.csv"))
    assert "move-alert" in out and (tmp_path / "r.csv").read_text().startswith("rule,sender,decision,count")
    leaf = re.search(r"│ (\d+)\s+│ send", audit(fed, "gent", "query", "--decision", "refused"))
    assert leaf is not None
    proof = audit(fed, "gent", "proof", "--leaf", leaf.group(1), "--since", "1")
    assert f"leaf {leaf.group(1)} is included" in proof and "extends the tree of size 1" in proof


def test_replay_under_a_stricter_bundle(fed: Federation, tmp_path: Path) -> None:
    stricter = tmp_path / "stricter"
    shutil.copytree(DEFAULT_BUNDLE, stricter)
    rules = stricter / "rules.yaml"
    rules.write_text(rules.read_text().replace("conditions: {phase: [pre_analysis, follow_up]}",
                                               "conditions: {phase: [pre_analysis]}", 1))
    out = audit(fed, "gent", "replay", "--policy", str(stricter))
    assert "would be refused [condition_unmet]" in out and "retained window only" in out
