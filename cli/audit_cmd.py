"""``olievlek audit``: verify the broker's log, read what you may see, report, prove, replay.

Every command acts as one organisation: it reads that organisation's node
configuration (its certificate, the broker's address and log key) and asks the
broker. The broker shows each organisation its own events and a
data-protection officer (``data_protection_officers`` in the bundle) all of them.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from olievlek.audit import checkpoint
from olievlek.audit.checkpoint import origin_for
from olievlek.audit.cosign import cosigned_note, effective_witnesses, note_quorum, quorum_time
from olievlek.audit.log import leaf_of
from olievlek.audit.receipts import check_extends, verify_head
from olievlek.audit.verify import full_root, verify_consistency, verify_inclusion
from olievlek.errors import VerificationError
from olievlek.i18n import N_, _
from olievlek.identity import OrgId
from olievlek.kinds import MessageKind
from olievlek.policy import Bundle, Request
from olievlek.policy.signing import load_public_key, load_roots, verify_bundle
from olievlek.v1 import broker_pb2

from .console import out

if TYPE_CHECKING:  # the node's modules load only when a command needs them (the CLI starts fast)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from olievlek.node.broker_client import BrokerClient
    from olievlek.node.config import NodeConfig

app = typer.Typer(help="The transparency audit log: verify, query, report, proof, replay.", no_args_is_help=True)

NodeOpt = Annotated[Path, typer.Option("--node-config", exists=True, help="The organisation's node configuration.")]


def _client(config: Path) -> tuple[NodeConfig, BrokerClient]:
    from olievlek.node.broker_client import BrokerClient
    from olievlek.node.config import NodeConfig

    cfg = NodeConfig.load(config)
    return cfg, BrokerClient(cfg.broker, cfg.tls)


async def _events(client: BrokerClient) -> tuple[list[broker_pb2.AuditEvent], broker_pb2.TreeHead]:
    out_events: list[broker_pb2.AuditEvent] = []
    start, head = 0, broker_pb2.TreeHead()
    while True:
        page = await client.audit_events(start, 1000)
        out_events += list(page.events)
        head = page.head
        if not page.next_index:
            return out_events, head
        start = page.next_index


def _checked(run: Callable[[], Coroutine[Any, Any, None]], label: str) -> None:
    """Run a check; a failed proof is shown plainly and exits 1."""
    try:
        asyncio.run(run())
    except VerificationError as exc:
        out.print(f"[bold red]{label}[/] {escape(exc.message)}")
        raise typer.Exit(1) from None


def _node_head(cfg: NodeConfig) -> broker_pb2.TreeHead | None:
    """The last head the node accepted (read-only, through the node's store)."""
    from olievlek.node.store import NodeStore

    raw = NodeStore.read_last_head(cfg.database)
    return broker_pb2.TreeHead.FromString(raw) if raw else None



async def _signed_head(cfg: NodeConfig, client: BrokerClient,
                       origin: str | None = None) -> tuple[Ed25519PublicKey, broker_pb2.TreeHead]:
    """The broker's log key from the node's configuration, and the latest head, its signature checked."""
    key = load_public_key(cfg.log_public_key)
    head = (await client.head()).head
    verify_head(head, key, origin)
    return key, head


@app.command("checkpoint")
def checkpoint_cmd(
    node_config: NodeOpt,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write it to this file instead.")] = None,
) -> None:
    """The latest cosigned checkpoint, as a signed note (C2SP tlog-checkpoint with the witnesses'
    cosignature/v1 lines): archive it, publish it, check it later with `audit verify --checkpoint`."""

    async def run() -> str:
        cfg, client = _client(node_config)
        bundle = verify_bundle(cfg.bundle, load_roots(cfg.roots))
        try:
            witnessed = await client.head(cosigned=True)
            verify_head(witnessed.head, load_public_key(cfg.log_public_key), origin_for(bundle.name, cfg.log_shard))
            return cosigned_note(witnessed.head, list(witnessed.cosignatures))
        finally:
            await client.close()

    text = asyncio.run(run())
    if out_file is None:
        sys.stdout.write(text)
    else:
        out_file.write_text(text)
        out.print(f"checkpoint written to {out_file}")

@app.command("verify")
def verify(
    node_config: NodeOpt,
    quorum: Annotated[int, typer.Option(help="Demand more cosignatures than the bundle and the node ask.")] = 0,
    checkpoint_file: Annotated[Path | None, typer.Option(
        "--checkpoint", exists=True, help="Also check a checkpoint kept earlier (`audit checkpoint`): its "
        "signatures, its cosignatures, and that today's log extends it.")] = None,
) -> None:
    """Recompute the whole tree from its leaves, check the signed head, your events, your node's head,
    and the cosignatures of the bundle's witnesses (the quorum of the bundle and the node's configuration)."""

    async def run() -> None:
        cfg, client = _client(node_config)
        bundle = verify_bundle(cfg.bundle, load_roots(cfg.roots))
        origin = origin_for(bundle.name, cfg.log_shard)
        witnesses, need, diagnostic = effective_witnesses(bundle.witnesses, cfg.witnesses,
                                                         max(cfg.witness_quorum, quorum))
        if diagnostic:
            out.print(f"[yellow]{escape(diagnostic)}[/]")
        try:
            key, head = await _signed_head(cfg, client, origin)
            if checkpoint_file is not None:
                kept, signed = checkpoint.open_signed(checkpoint_file.read_bytes(), origin, key)
                good = note_quorum(signed, witnesses, need)
                if kept.size > head.size:
                    raise VerificationError(f"the kept checkpoint (size {kept.size}) is ahead of the log "
                                            f"({head.size}): the log lost entries or forked", field="checkpoint")
                if kept.size:
                    link = await client.consistency(kept.size, head.size)
                    verify_consistency(kept.size, head.size, list(link.proof), kept.root, head.root)
                out.print(f"checkpoint of size {kept.size} in {checkpoint_file} is signed by the log, cosigned by "
                          f"{', '.join(good) or 'no witness'}, and today's log extends it")
            if need:
                # The latest *cosigned* head (witnesses may lag the newest one) must meet the quorum
                # and be a prefix of the newest head.
                witnessed = await client.head(cosigned=True)
                verify_head(witnessed.head, key, origin)
                good, cosigned_at = quorum_time(witnessed.head, list(witnessed.cosignatures), witnesses, need)
                if witnessed.head.size < head.size:
                    link = await client.consistency(witnessed.head.size, head.size)
                    try:
                        check_extends(witnessed.head, head, list(link.proof))
                    except VerificationError as exc:
                        raise VerificationError(f"FORK: the witnesses cosigned a head the log does not extend: "
                                                f"{exc.message}", field="audit") from None
                age = max(0, int(time.time()) - cosigned_at)  # the witnesses' own timestamps, not the broker's
                out.print(f"head of size {witnessed.head.size} cosigned by {', '.join(good)}, {age} s ago "
                          "(by the witnesses' clocks)")
                if age > cfg.witness_lag_s:
                    out.print(f"[yellow]witness lag: nothing cosigned in the last {cfg.witness_lag_s:.0f} s; "
                              "outcomes since then are not final[/]")
            leaves: list[bytes] = []
            while len(leaves) < head.size:
                leaves += list((await client.audit_leaves(len(leaves), 10000)).leaf_hashes)
            if full_root(leaves[: head.size]) != head.root:
                raise VerificationError("the leaves do not add up to the signed root", field="audit")
            events, _ = await _events(client)
            erased = 0
            for e in events:
                if not e.metadata:
                    erased += 1  # metadata past its retention: the leaf stays and still verifies
                elif e.index < head.size and leaf_of(e.salt, e.metadata) != leaves[e.index]:
                    raise VerificationError(f"event {e.index} does not match its leaf", field="audit")
            out.print(f"tree of {head.size} leaves verified against the signed head; "
                      f"{len(events) - erased} of your events match their leaves"
                      + (f" ({erased} erased after retention)" if erased else ""))
            mine = _node_head(cfg)
            if mine is not None and 0 < mine.size <= head.size:
                proof = await client.consistency(mine.size, head.size)
                check_extends(mine, head, list(proof.proof))
                out.print(f"consistent with the head of size {mine.size} your node accepted")
        finally:
            await client.close()

    _checked(run, "VERIFICATION FAILED")


def _rows(events: list[broker_pb2.AuditEvent]) -> list[dict[str, Any]]:
    return [{"index": e.index, **json.loads(e.metadata)} for e in events if e.metadata]


@app.command("query")
def query(
    node_config: NodeOpt,
    kind: Annotated[str | None, typer.Option(help="Message kind, e.g. alert.move.")] = None,
    rule: Annotated[str | None, typer.Option(help="Rule id.")] = None,
    decision: Annotated[str | None, typer.Option(help="accepted or refused.")] = None,
    org: Annotated[str | None, typer.Option(help="Sender or recipient organisation.")] = None,
) -> None:
    """The events you may see, filtered."""
    cfg, events, _ = _visible(node_config)
    rows = [r for r in _rows(events)
            if (kind is None or r.get("kind") == kind) and (rule is None or r.get("rule") == rule)
            and (decision is None or r.get("decision") == decision)
            and (org is None or org in (r.get("sender"), r.get("recipient"), *r.get("recipients", [])))]
    table = Table(title=f"audit events visible to {cfg.org_id}")
    for col in ("leaf", "event", "sender", "kind", "rule", "decision", "reason", "field"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["index"]), r.get("event", ""), r.get("sender", ""), r.get("kind", ""),
                      r.get("rule", ""), r.get("decision", r.get("outcome", "")), r.get("reason", ""),
                      r.get("field", ""))
    out.print(table)
    out.print(f"{len(rows)} event(s)")


def _visible(config: Path) -> tuple[Any, list[broker_pb2.AuditEvent], broker_pb2.TreeHead]:
    """The events this organisation may see (the channel is made inside the event loop it runs on)."""

    async def run() -> tuple[Any, list[broker_pb2.AuditEvent], broker_pb2.TreeHead]:
        cfg, client = _client(config)
        try:
            events, head = await _events(client)
            return cfg, events, head
        finally:
            await client.close()

    return asyncio.run(run())


@app.command("report")
def report(node_config: NodeOpt, csv_out: Annotated[Path | None, typer.Option("--csv")] = None) -> None:
    """Decisions per rule, sender and month, as a table (and CSV)."""
    _cfg, events, head = _visible(node_config)
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for r in _rows(events):
        if r.get("event") == "send":
            counts[(r["rule"] or "-", r["sender"], r["decision"], "")] += 1
    month = dt.datetime.fromtimestamp(head.timestamp_ms / 1000, dt.UTC).strftime("%Y-%m") if head.size else "-"
    table = Table(title=f"decisions (log of {head.size} leaves, up to {month})")
    for col in ("rule", "sender", "decision", "count"):
        table.add_column(col)
    for (rule, sender, dec, _month), n in sorted(counts.items()):
        table.add_row(rule, sender, dec, str(n))
    out.print(table)
    queries = _query_counts(events)
    if queries:
        qt = Table(title="hit/no-hit queries and disclosures per querying organisation and month")
        for col in ("querier", "month", *QUERY_COLUMNS):
            qt.add_column(col)
        for (querier, mon), c in sorted(queries.items()):
            qt.add_row(querier, mon, *(str(c[k]) for k in QUERY_COLUMNS))
        out.print(qt)
    if csv_out is not None:
        with csv_out.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["rule", "sender", "decision", "count"])
            w.writerows([(r, s, d, n) for (r, s, d, _), n in sorted(counts.items())])
        out.print(f"wrote {csv_out}")


QUERY_COLUMNS = ("queries", "rows", "hits", "refused", "not_covered", "disclosures_asked", "disclosures_answered")


def _query_counts(events: list[broker_pb2.AuditEvent]) -> dict[tuple[str, str], Counter[str]]:
    """Per (querier, month): what the caller may see of queries (its own, or those hitting its entries)
    and of disclosure requests and answers."""
    counts: dict[tuple[str, str], Counter[str]] = {}
    for e in events:
        if not e.metadata:
            continue
        r = json.loads(e.metadata)
        month = dt.datetime.fromtimestamp(e.at_ms / 1000, dt.UTC).strftime("%Y-%m")
        event, kind = r.get("event"), r.get("kind")
        if event == "query":
            c = counts.setdefault((r["sender"], month), Counter())
            c["queries"] += 1
            c["rows"] += int(r["rows"])
            c["hits"] += int(r["hits"])
        elif event == "query.holder":
            c = counts.setdefault((r["sender"], month), Counter())
            c["hits"] += int(r["hits"])
            c["not_covered"] += int(r["not_covered"])
        elif event == "send" and kind == MessageKind.QUERY_HIT:
            counts.setdefault((r["sender"], month), Counter())["refused"] += 1
        elif event == "send" and kind == MessageKind.DISCLOSURE_REQUEST and r.get("decision") == "accepted":
            counts.setdefault((r["sender"], month), Counter())["disclosures_asked"] += 1
        elif event == "send" and kind == MessageKind.DISCLOSURE_RESPONSE and r.get("decision") == "accepted":
            for querier in r.get("recipients", []):
                counts.setdefault((querier, month), Counter())["disclosures_answered"] += 1
    return counts


FLAG_WORDS = {broker_pb2.HOLDER_FLAG_BURST: N_("burst"),
              broker_pb2.HOLDER_FLAG_ENTRIES_WITHOUT_EVALUATIONS: N_("more entries than evaluations"),
              broker_pb2.HOLDER_FLAG_EVALUATIONS_WITHOUT_ENTRIES: N_("evaluations without entries"),
              broker_pb2.HOLDER_FLAG_NEAR_QUOTA: N_("near its quota")}


@app.command("directory-report")
def directory_report(
    node_config: NodeOpt,
    days: Annotated[int, typer.Option(min=1, max=366, help="Days of history before today to compare with.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per holder (for scripts).")] = False,
) -> None:
    """Per holder: directory entries and new registrations against its history and its evaluation counts,
    with what stands out (data-protection officers only: per-holder counts are small case numbers)."""
    async def run() -> broker_pb2.DirectoryReportResponse:
        _cfg, client = _client(node_config)
        try:
            return await client.directory_report(days)
        finally:
            await client.close()

    report = _called(run)
    if as_json:
        for h in report.holders:
            print(json.dumps({"holder": h.holder, "entries": h.entries, "entry_quota": h.entry_quota,
                              "registered_today": h.registered_today, "registered_before": h.registered_before,
                              "median_day": h.median_day, "evaluations": h.evaluations,
                              "flags": [broker_pb2.HolderFlag.Name(f).removeprefix("HOLDER_FLAG_").lower()
                                        for f in h.flags]}))
        return
    table = Table(title=_("Directory activity per holder (today and the {days} days before)").format(days=report.days))
    for col in (N_("holder"), N_("entries"), N_("quota"), N_("new today"), N_("new before"), N_("median per day"),
                N_("evaluations"), N_("stands out")):
        table.add_column(_(col))
    for h in report.holders:
        table.add_row(h.holder, str(h.entries), str(h.entry_quota), str(h.registered_today),
                      str(h.registered_before), str(h.median_day), str(h.evaluations),
                      ", ".join(_(FLAG_WORDS[f]) for f in h.flags if f in FLAG_WORDS) or "-")
    out.print(table)


def _called(run: Callable[[], Coroutine[Any, Any, broker_pb2.DirectoryReportResponse]]
            ) -> broker_pb2.DirectoryReportResponse:
    from olievlek.errors import TransportError

    try:
        return asyncio.run(run())
    except TransportError as exc:
        out.print(escape(exc.message), highlight=False)
        raise typer.Exit(1) from None


@app.command("proof")
def proof(node_config: NodeOpt,
          leaf: Annotated[int | None, typer.Option(help="Prove the inclusion of this event (one of yours).")] = None,
          since: Annotated[int | None, typer.Option(help="Prove consistency from this tree size.")] = None) -> None:
    """Print and check an inclusion proof of one of your events, or a consistency proof."""

    async def run() -> None:
        cfg, client = _client(node_config)
        try:
            _key, head = await _signed_head(cfg, client)
            if leaf is not None:
                events, _ = await _events(client)
                event = next((e for e in events if e.index == leaf), None)
                if event is None:
                    raise VerificationError(f"event {leaf} is not one you may see", field="audit")
                path = list((await client.inclusion(leaf, head.size)).proof)
                verify_inclusion(leaf_of(event.salt, event.metadata), leaf, head.size, path, head.root)
                out.print(f"leaf {leaf} is included in the signed tree of size {head.size}:")
                for p in path:
                    out.print(f"  {p.hex()}")
            if since is not None:
                c = await client.consistency(since, head.size)
                old_root = full_root(list((await client.audit_leaves(0, since)).leaf_hashes))
                verify_consistency(since, head.size, list(c.proof), old_root, head.root)
                out.print(f"the tree of size {head.size} extends the tree of size {since}:")
                for p in c.proof:
                    out.print(f"  {p.hex()}")
        finally:
            await client.close()

    _checked(run, "PROOF FAILED")


@app.command("replay")
def replay(node_config: NodeOpt, policy: Annotated[Path, typer.Option("--policy", help="Proposed bundle.")]) -> None:
    """Re-decide the retained window's logged decisions under a proposed bundle; list what would change.

    This covers only the events still retained and visible to you, and only decisions whose
    inputs were logged (accepted sends carry their recipients; refusals before parsing do not).
    """
    proposed = Bundle.load(policy)
    _cfg, events, _ = _visible(node_config)
    changed = considered = 0
    for r in _rows(events):
        if r.get("event") != "send" or not r.get("recipients"):
            continue
        considered += 1
        d = proposed.decide(Request(
            kind=r["kind"], sender=OrgId(r["sender"]), recipients=tuple(OrgId(x) for x in r["recipients"]),
            rule_id=r["rule"], present_fields=frozenset(r.get("fields", [])), phase=r.get("phase"),
            risk_level=r.get("risk_level"), concerns=frozenset(r.get("concerns", [])), purpose=r.get("purpose")))
        now = "accepted" if d.allowed else "refused"
        if now != r["decision"]:
            changed += 1
            out.print(f"leaf {r['index']}: {r['sender']} {r['kind']} via {r['rule']} was {r['decision']}, "
                      + escape(f"would be {now} [{d.reason}] {d.message}"), highlight=False)
    out.print(f"{considered} logged decision(s) replayed (retained window only); {changed} would change")
