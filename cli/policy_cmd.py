"""``olievlek policy``: check, test, explain, flows, diff, record, keys, roots, sign, verify."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from olievlek.errors import ConfigError
from olievlek.policy import Bundle, BundleError
from olievlek.policy import flows as flowmod
from olievlek.policy.analysis import analyse
from olievlek.policy.explain import explain as explain_request
from olievlek.policy.record import record as make_record
from olievlek.policy.signing import (
    keygen,
    load_public_key,
    load_roots,
    load_signing_key,
    make_root,
    sign_bundle,
    verify_bundle,
)
from olievlek.policy.suite import request_from, run

from .console import out

app = typer.Typer(help="The data-sharing policy bundle: check, test, explain, flows, diff, sign.",
                  no_args_is_help=True)
root_app = typer.Typer(help="The administrators' root of trust (m-of-n).", no_args_is_help=True)
app.add_typer(root_app, name="root")

BundleArg = Annotated[Path, typer.Argument(help="Bundle directory, e.g. policies/flanders.")]


def _load(path: Path) -> Bundle:
    try:
        return Bundle.load(path)
    except BundleError as exc:
        for d in exc.findings:
            out.print(escape(str(d)), highlight=False)
        raise typer.Exit(1) from None


@app.command("check")
def check(bundle: BundleArg) -> None:
    """Schema, names, wire fields, groups; then shadowed, redundant and conflicting rules."""
    b = _load(bundle)
    warnings = [*b.warnings, *analyse(b)]
    for w in warnings:
        out.print(escape(str(w)), highlight=False)
    out.print(f"{b.name} v{b.version}: {len(b.rules)} rules, {len(b.orgs)} organisations, {len(b.groups)} groups; "
              f"0 errors, {len(warnings)} warning(s); digest {b.digest}")


@app.command("test")
def test(bundle: BundleArg) -> None:
    """Run the bundle's own test cases and report rule coverage. Exit 1 on a failure."""
    b = _load(bundle)
    try:
        result = run(b)
    except BundleError as exc:
        for d in exc.findings:
            out.print(escape(str(d)), highlight=False)
        raise typer.Exit(1) from None
    for case in result.cases:
        mark = "[green]PASS[/]" if case.passed else "[red]FAIL[/]"
        out.print(f"{mark} {escape(case.name)}  [dim]{case.where}[/]" + (f"\n     {escape(case.problem)}"
                                                                          if case.problem else ""))
    table = Table(title="rule coverage")
    table.add_column("rule")
    table.add_column("covered")
    for rid in sorted(result.rules):
        table.add_row(rid, "yes" if rid in result.covered else "[red]no[/]")
    out.print(table)
    out.print(f"{len(result.cases) - len(result.failed)}/{len(result.cases)} passed; "
              f"coverage {result.coverage:.0%} ({len(result.covered & result.rules)}/{len(result.rules)} rules)")
    if result.failed:
        raise typer.Exit(1)


@app.command("explain")
def explain(
    bundle: BundleArg,
    request: Annotated[Path, typer.Option("--request", help="YAML request (as in tests/*.yaml).")],
) -> None:
    """The decision on a request, and every rule considered with why it matched or not."""
    b = _load(bundle)
    try:
        doc = yaml.safe_load(request.read_text())
        req = request_from(doc.get("request", doc))
    except (OSError, yaml.YAMLError, KeyError, AttributeError) as exc:
        raise ConfigError(f"{request}: not a request ({exc})") from None
    decision, steps = explain_request(b, req)
    table = Table(title=f"rules considered for {req.kind} from {req.sender}")
    for col in ("rule", "effect", "verdict", "why"):
        table.add_column(col)
    for s in steps:
        table.add_row(s.rule, s.effect, s.verdict, escape(s.why))
    out.print(table)
    verdict = "[green]ALLOW[/]" if decision.allowed else "[red]DENY[/]"
    out.print(f"{verdict} " + escape(f"[{decision.reason}] {decision.message}"))
    if decision.allowed and decision.rule:
        r = decision.rule
        out.print(f"purpose {r.purpose}; lawful basis {r.lawful_basis}; retention {r.retention_days} days; "
                  f"time-to-live {r.ttl_hours} h; agreement {'required' if r.agreement.required else 'not required'}")


@app.command("flows")
def flows(
    bundle: BundleArg,
    fmt: Annotated[str, typer.Option("--format", help="table, mermaid or svg.")] = "table",
    output: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> None:
    """Which fields can reach which kind of organisation, from whom, via which rule."""
    items = flowmod.flows(_load(bundle))
    if fmt == "table":
        table = Table(title="information flows")
        for col in ("from", "to", "kind", "field", "rule", "lawful basis", "agreement"):
            table.add_column(col)
        for f in items:
            table.add_row(f.sender, f.recipient, f.kind, f.field, f.rule, f.lawful_basis, f.agreement or "-")
        out.print(table)
        return
    if fmt == "svg":
        text = flowmod.svg(items)
        if text is None:
            out.print("Graphviz `dot` is not installed (Debian: apt-get install graphviz); "
                      "printing the Mermaid diagram instead.")
            text = flowmod.mermaid(items)
    elif fmt == "mermaid":
        text = flowmod.mermaid(items)
    else:
        raise typer.BadParameter("choose table, mermaid or svg", param_hint="--format")
    if output:
        output.write_text(text)
        out.print(f"wrote {output}")
    else:
        out.print(text, markup=False, highlight=False)


@app.command("diff")
def diff(old: BundleArg, new: Annotated[Path, typer.Argument(help="The changed bundle.")]) -> None:
    """The flows a change opens and closes, in words."""
    opened, closed = flowmod.diff(flowmod.flows(_load(old)), flowmod.flows(_load(new)))
    for f in opened:
        out.print(f"[green]opens[/]  {escape(f.words())} — {escape(f.lawful_basis)}", highlight=False)
    for f in closed:
        out.print(f"[red]closes[/] {escape(f.words())}", highlight=False)
    out.print(f"{len(opened)} flow(s) opened, {len(closed)} closed")


@app.command("record")
def record(bundle: BundleArg, output: Annotated[Path | None, typer.Option("--out")] = None) -> None:
    """A GDPR art. 30 record of processing activities (Markdown)."""
    text = make_record(_load(bundle))
    if output:
        output.write_text(text)
        out.print(f"wrote {output}")
    else:
        out.print(text, markup=False, highlight=False)


@app.command("tlog-policy")
def tlog_policy_cmd(
    bundle: BundleArg,
    log_key: Annotated[Path, typer.Option("--log-key", exists=True, help="The broker's log public key (hex).")],
    shard: Annotated[int, typer.Option(help="The log shard (its origin's last part).")] = 1,
) -> None:
    """The C2SP tlog-policy of the log and the bundle's witnesses and quorum, for external verifiers."""
    from olievlek.audit.checkpoint import origin_for
    from olievlek.audit.cosign import tlog_policy

    b = _load(bundle)
    print(tlog_policy(origin_for(b.name, shard), load_public_key(log_key), b.witnesses), end="")


@app.command("keygen")
def keygen_cmd(prefix: Annotated[Path, typer.Option("--out", help="Writes PREFIX.key (0600) and PREFIX.pub.")]) -> None:
    """An administrator's Ed25519 signing key."""
    out.print(f"key {keygen(prefix)} written to {prefix}.key / {prefix}.pub")


@app.command("sign")
def sign(bundle: BundleArg, key: Annotated[Path, typer.Option("--key", help="Administrator key (PEM).")]) -> None:
    """Add one administrator's signature over the bundle's digest."""
    _load(bundle)
    out.print(f"signed with key {sign_bundle(bundle, load_signing_key(key))}")


@app.command("verify")
def verify(bundle: BundleArg, roots: Annotated[Path, typer.Option("--roots", help="Root directory.")]) -> None:
    """Check the root chain and that the bundle carries the threshold of signatures and is not expired."""
    root = load_roots(roots)
    b = verify_bundle(bundle, root)
    out.print(f"{b.name} v{b.version} verified: root v{root.version}, threshold {root.threshold} of "
              f"{len(root.keys)}, expires {b.expires:%Y-%m-%d}, digest {b.digest}")


def _write_root(path: Path, keys: list[Path], threshold: int, days: int, signers: list[Path], version: int) -> None:
    doc = make_root(version, dt.datetime.now(dt.UTC) + dt.timedelta(days=days), threshold,
                    [load_public_key(k) for k in keys], [load_signing_key(s) for s in signers])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


KeysOpt = Annotated[list[Path], typer.Option("--key", help="Administrator public key (repeatable).")]
SignersOpt = Annotated[list[Path], typer.Option("--sign-with", help="Private key that signs (repeatable).")]


@root_app.command("init")
def root_init(
    roots: Annotated[Path, typer.Option("--roots", help="Root directory to create.")],
    key: KeysOpt, sign_with: SignersOpt,
    threshold: Annotated[int, typer.Option(help="Signatures required (m of n).")] = 2,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 365,
) -> None:
    """Root version 1: the administrators' keys and the threshold, signed by that threshold."""
    if (roots / "1.root.json").exists():
        raise ConfigError(f"{roots} already has a root version 1")
    _write_root(roots / "1.root.json", key, threshold, days, sign_with, 1)
    root = load_roots(roots)
    out.print(f"root v1: {len(root.keys)} keys, threshold {root.threshold}")


@root_app.command("rotate")
def root_rotate(
    roots: Annotated[Path, typer.Option("--roots")],
    key: KeysOpt, sign_with: SignersOpt,
    threshold: Annotated[int, typer.Option()] = 2,
    days: Annotated[int, typer.Option()] = 365,
) -> None:
    """Root version n+1, signed by the threshold of version n and by its own."""
    current = load_roots(roots)
    path = roots / f"{current.version + 1}.root.json"
    _write_root(path, key, threshold, days, sign_with, current.version + 1)
    try:
        root = load_roots(roots)
    except ConfigError:
        path.unlink()
        raise
    out.print(f"root v{root.version}: {len(root.keys)} keys, threshold {root.threshold}")
