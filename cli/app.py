"""The ``olievlek`` command line: one module per role group, errors caught once here."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from olievlek import logs
from olievlek.errors import ConfigError, OlievlekError
from olievlek.i18n import _
from olievlek.lifecycle import private_files

from . import (
    agreement_cmd,
    audit_cmd,
    cases,
    help_texts,
    liaison_cmd,
    pki_cmd,
    policy_cmd,
    pseudonymiser_cmd,
    report_cmd,
    retention_cmd,
    up,
    users,
)
from .console import err, out

app = typer.Typer(
    help="olievlek: federated, policy-checked exchange of pseudonymised case summaries between LIVCs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="Run the broker.", no_args_is_help=True)
witness_app = typer.Typer(help="Witness the broker's log: cosign consistent heads, alarm on forks.",
                          no_args_is_help=True)
node_app = typer.Typer(help="Run an organisation's node.", no_args_is_help=True)
@app.callback()
def _main(lang: Annotated[str | None, typer.Option(
        "--lang", help="nl (default) or en: the language of what you read; also OLIEVLEK_LANG.")] = None) -> None:
    if lang:
        os.environ["OLIEVLEK_LANG"] = lang


app.add_typer(pki_cmd.app, name="pki")
app.add_typer(policy_cmd.app, name="policy")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(pseudonymiser_cmd.app, name="pseudonymiser")
app.add_typer(broker_app, name="broker")
app.add_typer(node_app, name="node")
app.add_typer(witness_app, name="witness")
app.add_typer(cases.case_app, name="case")
app.add_typer(cases.alert_app, name="alert")
app.add_typer(cases.inbox_app, name="inbox")
app.add_typer(cases.outbox_app, name="outbox")
app.add_typer(cases.handover_app, name="handover")
app.add_typer(users.user_app, name="user")
app.add_typer(retention_cmd.retention_app, name="retention")
app.add_typer(retention_cmd.subject_app, name="subject")
app.add_typer(agreement_cmd.agreement_app, name="agreement")
app.add_typer(liaison_cmd.liaison_app, name="liaison")
app.add_typer(liaison_cmd.disclosure_app, name="disclosure")
app.add_typer(liaison_cmd.directory_app, name="directory")
app.add_typer(report_cmd.report_app, name="report")
app.command("up")(up.up)
help_texts.translate(app, _)  # the regisseur's --help, in their language


ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Configuration file (YAML).", exists=True)]


@broker_app.command("serve")
def broker_serve(config: ConfigOpt) -> None:
    """Serve the broker (mTLS gRPC) until SIGINT/SIGTERM."""
    from olievlek.broker.config import BrokerConfig
    from olievlek.broker.server import serve

    logs.configure(json=True)
    private_files()
    asyncio.run(serve(BrokerConfig.load(config)))


@broker_app.command("migrate")
def broker_migrate(
    config: ConfigOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would run; change nothing.")] = False,
) -> None:
    """Bring the broker's database to this build's schema (the broker also does this when it starts)."""
    from olievlek.broker.config import BrokerConfig
    from olievlek.broker.storage.store import MIGRATIONS

    from olievlek.storage.migrations import migrate_sqlite_file

    database = BrokerConfig.load(config).database
    at, todo = migrate_sqlite_file(database, MIGRATIONS, dry_run=dry_run)
    verb = "would apply" if dry_run else "applied"
    out.print(f"{database}: at migration {at} of {MIGRATIONS.latest}; {verb} "
              + (", ".join(f"{s.version} ({s.name})" for s in todo) or "nothing"), highlight=False, soft_wrap=True)
    if dry_run:
        for step in todo:
            out.print(f"-- migration {step.version} ({step.name})\n{step.sql}", highlight=False, markup=False,
                      soft_wrap=True)


@broker_app.command("export")
def broker_export(
    config: ConfigOpt,
    to: Annotated[Path, typer.Option("--out", help="The export file to write (JSON lines; holds no identity).")],
) -> None:
    """Write every row of the broker's store to a file, with each table's row count and SHA-256."""
    asyncio.run(_broker_copy(config, to, export=True))


@broker_app.command("import")
def broker_import(
    config: ConfigOpt,
    source: Annotated[Path, typer.Option("--from", exists=True, help="An export of another broker store.")],
) -> None:
    """Fill this broker's new, empty store (SQLite or PostgreSQL) from an export; refused unless every table's
    count and SHA-256 match and the log has the exported head's size and root."""
    asyncio.run(_broker_copy(config, source, export=False))


async def _broker_copy(config: Path, path: Path, export: bool) -> None:
    from olievlek.broker.config import BrokerConfig
    from olievlek.broker.storage.store import IDENTITY_COLUMNS, TABLES, BrokerStore

    from olievlek.audit import tree
    from olievlek.audit.log import AuditLog
    from olievlek.policy.signing import load_signing_key
    from olievlek.storage import copy

    cfg = BrokerConfig.load(config)
    store = await BrokerStore.for_engine(cfg.database, cfg.postgres_dsn)
    try:
        if export:
            sums = await copy.export(store.db, "broker", TABLES, path)
            ours, theirs = sums, sums
        else:
            _kind, _tables, theirs = copy.read_sums(path)
            ours = await copy.import_into(store.db, "broker", path, IDENTITY_COLUMNS)
            audit = AuditLog(store.db, load_signing_key(cfg.log_key), "verify")
            head = await audit.head()
            if head is not None:
                root = tree.fold(await audit.nodes(tree.range_nodes(0, head.size)))
                if root != head.root:
                    raise ConfigError("the imported log's nodes do not give the exported head's root")
                out.print(f"log: {head.size} leaves, root {head.root.hex()} as the exported signed head",
                          highlight=False)
    finally:
        await store.close()
    for mine, other in zip(ours, theirs, strict=True):
        out.print(f"{mine.table:20} {mine.rows:8} {mine.sha256}  {'=' if mine == other else 'DIFFERS'}",
                  highlight=False, soft_wrap=True)


@node_app.command("serve")
def node_serve(config: ConfigOpt) -> None:
    """Serve a node: broker stream, outbox and the local socket, until SIGINT/SIGTERM."""
    from olievlek.node.config import NodeConfig
    from olievlek.node.server import serve

    logs.configure(json=True)
    private_files()
    asyncio.run(serve(NodeConfig.load(config)))


@node_app.command("keygen")
def node_keygen(
    out: Annotated[Path, typer.Option("--out", help="Where to write the key (created with mode 0600).")],
) -> None:
    """Create the node's key-encryption key for its case file (keep it outside the database and its backups)."""
    from olievlek.fieldcrypt import KeyEncryptionKey

    try:
        KeyEncryptionKey.generate(out)
    except FileExistsError:
        raise ConfigError(_("{out} exists; a key-encryption key is never overwritten").format(out=out)) from None
    err.print(_("key-encryption key written to {out} (mode 0600); set kek_file: {out} in the node's configuration")
                .format(out=out))


@witness_app.command("run")
def witness_run(config: ConfigOpt) -> None:
    """Poll the broker's signed heads, check consistency, cosign, until SIGINT/SIGTERM."""
    from olievlek.witness.witness import WitnessConfig, serve

    logs.configure(json=True)
    private_files()
    asyncio.run(serve(WitnessConfig.load(config)))


def run() -> None:
    """Run the CLI; an OlievlekError becomes one line on stderr and exit code 2."""
    try:
        app()  # standalone: usage errors and typer.Exit are handled by typer, ours arrive here
    except OlievlekError as exc:
        err.print(_("[bold red]error[/] {value}").format(value=escape(exc.diagnostics())), highlight=False)
        sys.exit(2)
