"""`olievlek policy …` on the default bundle and on deliberately broken copies of it.

Each broken case mutates one file of a copy of policies/flanders and asserts the
error names the file, line and problem; the real CLI is run as a subprocess.
"""

from __future__ import annotations

import html
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from olievlek.cli.federation import provision_policy

from olievlek.policy import Bundle
from olievlek.policy.signing import PolicySignatureError, load_roots, verify_bundle

from .tools import require

REPO = Path(__file__).resolve().parent.parent
FLANDERS = REPO / "policies" / "flanders"
pytestmark = pytest.mark.timeout(60)


def policy(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "olievlek", "policy", *map(str, args)], capture_output=True,
                          text=True, timeout=60, check=False)


def copy(tmp_path: Path, name: str = "b") -> Path:
    dest = tmp_path / name
    shutil.copytree(FLANDERS, dest)
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_default_bundle_checks_tests_and_covers_every_rule() -> None:
    r = policy("check", FLANDERS)
    assert r.returncode == 0, r.stdout
    assert "0 errors, 0 warning(s)" in r.stdout
    r = policy("test", FLANDERS)
    assert r.returncode == 0, r.stdout
    assert "coverage 100%" in r.stdout and "FAIL" not in r.stdout


BROKEN: list[tuple[str, str, str, str, str]] = [
    # (id, file, old, new, expected fragment with file:line)
    ("malformed-yaml", "rules.yaml", "    effect: allow\n    kinds: [alert.move]", "    effect: [allow\n    kinds: x",
     "rules.yaml:5:"),
    ("wrong-type", "bundle.yaml", "version: 1", "version: one", "bundle.yaml:5:10: error: version: 'one' is not"),
    ("unknown-key", "rules.yaml", "    effect: allow\n    kinds: [alert.move]", "    effect: allow\n    colour: red\n"
     "    kinds: [alert.move]", "Additional properties are not allowed ('colour'"),
    ("field-not-on-the-wire", "rules.yaml", "summary.month_opened,", "summary.national_number,",
     "field 'summary.national_number' does not exist in the payload of alert.move (MoveAlert)"),
    ("pseudonym-in-signal", "rules.yaml", "fields: [phase, concerns, month]",
     "fields: [phase, concerns, month, subject_pseudonym]", "does not exist in the payload of alert.signal"),
    ("unknown-group", "rules.yaml", "group: olievlek-rand}\n    recipient", "group: nowhere}\n    recipient",
     "unknown group 'nowhere'"),
    ("cyclic-group", "groups.yaml", "members: [mechelen, livc-zennevallei, leuven]",
     "members: [mechelen, livc-zennevallei, leuven, vlaamse-livcs]", "group cycle: "),
    ("unknown-kind", "organisations.yaml", "kind: monitor", "kind: embassy", "organisations.yaml:"),
    ("bad-contact", "organisations.yaml", "address: livc@stad.gent", "address: call Jan",
     "mailbox address is not well-formed"),
    ("unknown-sender-org", "rules.yaml", "sender: {kinds: [justice_house, prison_service]}",
     "sender: {orgs: [brugge]}", "unknown sender organisation 'brugge'"),
]


@pytest.mark.parametrize(("file", "old", "new", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_bundle_is_refused_with_file_line_and_problem(tmp_path: Path, file: str, old: str, new: str,
                                                             expected: str) -> None:
    b = copy(tmp_path)
    edit(b / file, old, new)
    r = policy("check", b)
    assert r.returncode == 1, r.stdout
    assert expected in r.stdout, r.stdout
    assert f"{file}:" in r.stdout


def test_a_bundle_failing_its_own_tests(tmp_path: Path) -> None:
    b = copy(tmp_path)
    edit(b / "rules.yaml", "conditions: {phase: [pre_analysis, follow_up]}", "conditions: {phase: [pre_analysis]}")
    r = policy("test", b)
    assert r.returncode == 1
    assert "FAIL move alert to the municipality the person moves to" in r.stdout
    assert "tests/routing.yaml:2" in r.stdout and "condition_unmet" in r.stdout


def test_analysis_reports_shadowed_redundant_and_conflicting_rules(tmp_path: Path) -> None:
    b = copy(tmp_path)
    with (b / "rules.yaml").open("a") as f:
        f.write("""
  - id: no-moves-at-all
    effect: deny
    kinds: [alert.move]
  - id: no-aggregates-from-gent
    effect: deny
    kinds: [report.aggregate]
    sender: {orgs: [gent]}
  - id: signal-copy
    effect: allow
    kinds: [alert.signal]
    sender: {kinds: [municipality], group: olievlek-rand}
    recipient: {kinds: [municipality], relation: group_members, group: olievlek-rand}
    fields: [phase]
    purpose: regional_signal
    lawful_basis: "GDPR 6(1)(e); law 30-07-2018 art. 4"
    retention_days: 365
    ttl_hours: 168
""")
    r = policy("check", b)
    assert r.returncode == 0, r.stdout
    assert "rule 'move-alert' is shadowed by deny rule 'no-moves-at-all'" in r.stdout
    assert "rule 'quarterly-aggregates' conflicts with deny rule 'no-aggregates-from-gent'" in r.stdout
    assert "rule 'signal-copy' is redundant: rule 'regional-signal'" in r.stdout


def test_explain_names_every_rule_considered(tmp_path: Path) -> None:
    req = tmp_path / "req.yaml"
    req.write_text("request: {kind: alert.move, sender: gent, recipients: [leuven], rule: move-alert, "
                   "phase: follow_up, fields: [summary.agencies]}\n")
    r = policy("explain", FLANDERS, "--request", req)
    assert r.returncode == 0
    assert "DENY [field_not_allowed] field summary.agencies is not let through by rule 'move-alert'" in r.stdout
    assert "no-case-summaries-to-federal-or-monitor" in r.stdout and "not: summary.agencies" in r.stdout


def test_flows_table_mermaid_and_svg(tmp_path: Path) -> None:
    r = policy("flows", FLANDERS)
    assert r.returncode == 0 and "handover-release" in r.stdout
    r = policy("flows", FLANDERS, "--format", "mermaid")
    assert r.stdout.startswith("flowchart LR")
    assert "justice_house" in r.stdout and "summary.agencies" in r.stdout
    # Agencies never flow to federal kinds, and nothing with a pseudonym flows to the monitor.
    fed = [line for line in r.stdout.splitlines() if "-->" in line and line.rstrip().endswith(_node(r.stdout,
                                                                                                     "federal_liaison"))]
    assert fed and not any("agencies" in line for line in fed)
    mon = [line for line in r.stdout.splitlines() if "-->" in line and line.rstrip().endswith(_node(r.stdout,
                                                                                                     "monitor"))]
    assert mon and not any("pseudonym" in line for line in mon)
    out = tmp_path / "flows.svg"
    r = policy("flows", FLANDERS, "--format", "svg", "--out", out)
    assert r.returncode == 0
    text = html.unescape(out.read_text())  # Graphviz writes "-" as "&#45;"
    require("dot")
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "handover-release" in text


def _node(mermaid: str, name: str) -> str:
    for line in mermaid.splitlines():
        if line.strip().endswith(f'["{name}"]'):
            return line.strip().split("[")[0]
    raise AssertionError(name)


def test_diff_says_which_flows_open_and_close(tmp_path: Path) -> None:
    b = copy(tmp_path)
    edit(b / "rules.yaml", "summary.month_opened, summary.contact_id]",
         "summary.month_opened, summary.contact_id, summary.agencies]")
    edit(b / "rules.yaml", "fields: [year, quarter, cells, source]", "fields: [year, cells, source]")
    r = policy("diff", FLANDERS, b)
    assert r.returncode == 0
    assert "opens  municipality → municipality: summary.agencies (alert.move) via rule move-alert" in r.stdout
    assert "closes municipality → monitor: quarter (report.aggregate) via rule quarterly-aggregates" in r.stdout
    assert "1 flow(s) opened, 1 closed" in r.stdout


def test_record_of_processing(tmp_path: Path) -> None:
    r = policy("record", FLANDERS, "--out", tmp_path / "record.md")
    assert r.returncode == 0
    text = (tmp_path / "record.md").read_text()
    assert "# Record of processing activities" in text
    assert "GDPR 6(1)(e), 9(2)(g); law 30-07-2018 art. 4" in text and "730 days" in text
    assert "no-case-summaries-to-federal-or-monitor" in text


def test_keys_root_sign_verify_through_the_cli(tmp_path: Path) -> None:
    b = copy(tmp_path)
    for name in ("a", "b", "c"):
        assert policy("keygen", "--out", tmp_path / name).returncode == 0
    roots = tmp_path / "roots"
    r = policy("root", "init", "--roots", roots, "--key", tmp_path / "a.pub", "--key", tmp_path / "b.pub",
               "--key", tmp_path / "c.pub", "--threshold", "2", "--sign-with", tmp_path / "a.key",
               "--sign-with", tmp_path / "b.key")
    assert r.returncode == 0, r.stdout + r.stderr
    unsigned = policy("verify", b, "--roots", roots)
    assert unsigned.returncode == 2 and "is not signed" in unsigned.stderr
    assert policy("sign", b, "--key", tmp_path / "a.key").returncode == 0
    under = policy("verify", b, "--roots", roots)
    assert under.returncode == 2 and "has 1 valid signature(s); the root requires 2" in under.stderr
    assert policy("sign", b, "--key", tmp_path / "c.key").returncode == 0
    ok = policy("verify", b, "--roots", roots)
    assert ok.returncode == 0 and "verified: root v1, threshold 2 of 3" in ok.stdout
    edit(b / "rules.yaml", "retention_days: 730", "retention_days: 3650")
    changed = policy("verify", b, "--roots", roots)
    assert changed.returncode == 2 and "signatures cover another content" in changed.stderr
    # Rotation: v2 drops key a; a minority cannot rotate alone.
    bad = policy("root", "rotate", "--roots", roots, "--key", tmp_path / "b.pub", "--key", tmp_path / "c.pub",
                 "--threshold", "2", "--sign-with", tmp_path / "b.key")
    assert bad.returncode == 2 and "not signed by" in bad.stderr and not (roots / "2.root.json").exists()
    good = policy("root", "rotate", "--roots", roots, "--key", tmp_path / "b.pub", "--key", tmp_path / "c.pub",
                  "--threshold", "2", "--sign-with", tmp_path / "b.key", "--sign-with", tmp_path / "c.key")
    assert good.returncode == 0 and "root v2" in good.stdout


def test_expired_bundle_is_refused(tmp_path: Path) -> None:
    b = copy(tmp_path / "src")
    edit(b / "bundle.yaml", 'expires: "2027-12-31T00:00:00Z"', 'expires: "2020-01-01T00:00:00Z"')
    provision_policy(tmp_path / "fed", b)
    with pytest.raises(PolicySignatureError, match="expired on 2020-01-01"):
        verify_bundle(tmp_path / "fed" / "bundle", load_roots(tmp_path / "fed" / "roots"))


def test_bundle_load_is_independent_of_order_of_rules(tmp_path: Path) -> None:
    assert Bundle.load(FLANDERS).digest == Bundle.load(copy(tmp_path)).digest


