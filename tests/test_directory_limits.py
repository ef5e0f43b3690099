"""Directory entries that are bounded and accountable, played as a planting municipality would: it signs
registrations for pseudonyms it has no case for and sends them to a real broker over mTLS (the broker's
clock is the test's, so hours and days pass); the officer reads the outlier report with the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from olievlek.broker.server import BrokerServer
from olievlek.node.broker_client import BrokerClient
from olievlek.node.pseudonym_client import PseudonymClient
from olievlek.node.store import NodeStore

from olievlek import envelope, wire
from olievlek.directory import sign_statement
from olievlek.normalise import nrn_input
from olievlek.policy import Bundle
from olievlek.policy.signing import load_signing_key, sign_bundle
from olievlek.trust import TrustAnchor
from olievlek.v1 import broker_pb2, envelope_pb2, summary_pb2

from .conftest import Pki, broker_config, start_operators
from .envelopes import signer
from .federations import cli

pytestmark = pytest.mark.timeout(120)
START = int(dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC).timestamp() * 1000)
HOUR, DAY = 3_600_000, 86_400_000


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> int:
        return self.now


def _limit(fed: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """The administrators sign the bundle with ``edit`` applied (before the broker starts)."""
    meta = fed / "bundle" / "bundle.yaml"
    doc = yaml.safe_load(meta.read_text())
    edit(doc)
    meta.write_text(yaml.safe_dump(doc, sort_keys=False))
    for i in (1, 2):
        sign_bundle(fed / "bundle", load_signing_key(fed / "admins" / f"admin{i}.key"))


@pytest.fixture
async def clocked(pki: Pki, tmp_path: Path, policy_dir: Path) -> AsyncIterator[tuple[BrokerServer, Clock]]:
    def tight(doc: dict[str, Any]) -> None:
        doc["directory"]["entry_limits"] = {"municipality": {"entries": 5, "per_hour": 3, "per_day": 4}}
        doc["directory"]["max_coverage"] = 2

    _limit(policy_dir, tight)
    clock = Clock()
    server = BrokerServer(broker_config(pki, tmp_path), clock)
    await server.start()
    yield server, clock
    await server.stop(0)


def _pseudonym(i: int) -> bytes:
    return bytes([1, 200, i % 256, i // 256]) + bytes(28)


def _statement(holder: str, pseudonym: bytes, kind: str, rule: str, purpose: str, until_ms: int
               ) -> summary_pb2.CoverageStatement:
    return summary_pb2.CoverageStatement(subject_pseudonym=pseudonym, holder=holder, recipient_kind=kind,
                                         purpose=purpose, rule_id=rule, expires_at_ms=until_ms)


def _register(pki: Pki, holder: str, pseudonym: bytes, at_ms: int,
              statements: list[summary_pb2.CoverageStatement] | None = None) -> bytes:
    me = signer(pki, holder)
    body = envelope_pb2.EnvelopeBody(
        idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_DIRECTORY_REGISTER, sender=holder,
        purpose=envelope_pb2.PURPOSE_REFERENCE_DIRECTORY, rule_id="directory-register", created_at_ms=at_ms,
        directory_register=summary_pb2.DirectoryRegister(
            subject_pseudonym=pseudonym, contact_id=f"{holder}-livc",
            coverage=[sign_statement(me.key, s) for s in statements or []]))
    return envelope.seal(body, me)


async def _send(pki: Pki, port: int, holder: str, raw: bytes) -> broker_pb2.SendResponse:
    client = BrokerClient(f"127.0.0.1:{port}", pki.tls(holder))
    try:
        return await client.send(raw)
    finally:
        await client.close()


async def _outcome(pki: Pki, port: int, holder: str, i: int, at_ms: int) -> str:
    """ "accepted", or the refusal's code as its recorded leaf says."""
    resp = await _send(pki, port, holder, _register(pki, holder, _pseudonym(i), at_ms))
    if resp.WhichOneof("outcome") == "receipt":
        return "accepted"
    leaf = json.loads(resp.refusal.audit.metadata)
    assert leaf["decision"] == "refused" and resp.refusal.detail
    return str(leaf["reason"])


async def test_a_quota_and_the_rates_are_hit_and_recorded(pki: Pki, clocked: tuple[BrokerServer, Clock]) -> None:
    broker, clock = clocked
    port = broker.port
    # 3 new entries an hour, 4 a day, 5 kept at most (the test bundle).
    assert [await _outcome(pki, port, "gent", i, clock.now) for i in range(4)] == \
        ["accepted"] * 3 + ["rate_limited"]
    assert await _outcome(pki, port, "gent", 0, clock.now) == "accepted"  # replacing an entry adds nothing
    clock.now += HOUR
    assert [await _outcome(pki, port, "gent", i, clock.now) for i in (3, 4)] == ["accepted", "rate_limited"]
    clock.now += DAY
    assert [await _outcome(pki, port, "gent", i, clock.now) for i in (4, 5)] == ["accepted", "budget_exceeded"]
    assert await _outcome(pki, port, "antwerpen", 9, clock.now) == "accepted"  # per holder
    resp = await _send(pki, port, "gent", _register(pki, "gent", _pseudonym(6), clock.now))
    assert "keeps 5 directory entries" in resp.refusal.detail and resp.refusal.rule_id == "directory-register"
    client = BrokerClient(f"127.0.0.1:{port}", pki.tls("gent"))
    try:
        listed = (await client.directory_entries(b"", 100)).entries
        assert len(listed) == 5
    finally:
        await client.close()


async def test_bad_coverage_statements_are_ignored_and_listed(pki: Pki, clocked: tuple[BrokerServer, Clock]) -> None:
    broker, clock = clocked
    p = _pseudonym(77)
    bundle_end = int(Bundle.load(broker.config.bundle).expires.timestamp() * 1000)
    statements = [
        _statement("gent", p, "federal_liaison", "hit-query", "hit_no_hit_check", bundle_end),
        _statement("gent", p, "federal_liaison", "hit-query", "hit_no_hit_check", bundle_end - DAY),  # a copy
        _statement("gent", p, "federal_liaison", "hit-query", "hit_no_hit_check",
                   int(dt.datetime(2100, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)),  # outlives the bundle
        _statement("gent", p, "municipality", "move-alert", "continuity_of_follow_up", bundle_end),  # nobody asks
        _statement("gent", p, "federal_liaison", "disclosure-request", "disclosure_on_request", bundle_end),
        _statement("gent", p, "justice_house", "hit-query", "hit_no_hit_check", bundle_end),  # beyond the cap of 2
    ]
    resp = await _send(pki, broker.port, "gent", _register(pki, "gent", p, clock.now, statements))
    leaf = json.loads(resp.receipt.audit.metadata)
    assert leaf["coverage"] == 2
    assert [x.split(": ", 1)[0] for x in leaf["ignored"]] == ["coverage[1]", "coverage[2]", "coverage[3]",
                                                              "coverage[5]"]
    words = " | ".join(leaf["ignored"])
    for expected in ("the same flag as coverage[0]", "outlives the bundle", "lets nobody ask",
                     "beyond the bundle's 2 statements per entry"):
        assert expected in words, words
    client = BrokerClient(f"127.0.0.1:{broker.port}", pki.tls("gent"))
    try:
        [entry] = [e for e in (await client.directory_entries(b"", 100)).entries if e.subject_pseudonym == p]
    finally:
        await client.close()
    assert len(entry.coverage) == 2  # kept once, capped: what queries read


def _officer_config(pki: Pki, tmp_path: Path, port: int) -> Path:
    """The monitor's (VVSG, the bundle's data-protection officer) node configuration, as it runs the CLI."""
    org = pki.org("vvsg")
    path = tmp_path / "vvsg" / "node.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "kek.hex").write_text("00" * 32)
    path.write_text(yaml.safe_dump({
        "org_id": "vvsg", "kind": "monitor", "broker": f"127.0.0.1:{port}", "ca": str(pki.root / "ca.pem"),
        "crl": str(pki.root / "crl.pem"), "tls_cert": str(org.tls_cert), "tls_key": str(org.tls_key),
        "sign_cert": str(org.sign_cert), "sign_key": str(org.sign_key),
        "bundle": str(tmp_path / "federation" / "bundle"), "roots": str(tmp_path / "federation" / "roots"),
        "pseudonymisers": ["127.0.0.1:1", "127.0.0.1:2"], "log_public_key": str(tmp_path / "federation" / "log.pub"),
        "database": "node.sqlite", "socket": "node.sock", "kek_file": "kek.hex",
        "users": [{"uid": os.getuid(), "role": "regisseur"}]}))
    return path


async def test_the_officers_report_flags_a_planting_burst(
        pki: Pki, tmp_path: Path, policy_dir: Path) -> None:
    def roomy(doc: dict[str, Any]) -> None:
        doc["directory"]["entry_limits"] = {"municipality": {"entries": 500, "per_hour": 100, "per_day": 200}}

    _limit(policy_dir, roomy)
    clock = Clock()
    clock.now = int(dt.datetime.now(dt.UTC).timestamp() * 1000) - 10 * DAY
    broker = BrokerServer(broker_config(pki, tmp_path), clock)
    await broker.start()
    ops = await start_operators(pki, tmp_path, broker.port)
    store = await NodeStore.open(tmp_path / "antwerpen-pseudonyms.sqlite")
    antwerpen = PseudonymClient([f"127.0.0.1:{o.port}" for o in ops], pki.tls("antwerpen"),
                                TrustAnchor.load(pki.root / "ca.pem", pki.root / "crl.pem"), store,
                                Bundle.load(policy_dir / "bundle").pseudonymisation)
    try:
        serial = 0
        for _day in range(10):  # both register one or two a day; antwerpen pseudonymises what it registers
            for holder, n in (("gent", 1), ("antwerpen", 2)):
                for _ in range(n):
                    serial += 1
                    if holder == "antwerpen":
                        first = f"80010{serial:04d}"
                        await antwerpen.pseudonymise([nrn_input(first + f"{97 - int(first) % 97:02d}")])
                    assert await _outcome(pki, broker.port, holder, serial, clock.now) == "accepted"
            clock.now += DAY
        clock.now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        for i in range(60):  # today gent plants sixty people it has no case for
            assert await _outcome(pki, broker.port, "gent", 1000 + i, clock.now) == "accepted"
        for op in ops:
            await op.push_report()  # the operators' signed counts reach the broker
        config = _officer_config(pki, tmp_path, broker.port)
        r = await asyncio.to_thread(cli, "audit", "directory-report", "--node-config", str(config), "--days", "14",
                                    "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        rows = {x["holder"]: x for x in map(json.loads, r.stdout.splitlines())}
        assert (rows["gent"]["registered_today"], rows["gent"]["median_day"], rows["gent"]["entries"]) == (60, 1, 70)
        assert set(rows["gent"]["flags"]) == {"burst", "entries_without_evaluations"}
        assert rows["antwerpen"]["flags"] == [] and rows["antwerpen"]["evaluations"] >= 20  # the control
        assert rows["leuven"]["entries"] == 0 and rows["leuven"]["flags"] == []
        # In Dutch, as an officer reads it.
        nl = await asyncio.to_thread(cli, "--lang", "nl", "audit", "directory-report", "--node-config", str(config))
        assert nl.returncode == 0 and "piek" in nl.stdout and "houder" in nl.stdout, nl.stdout
        # Nobody else: per-holder counts are small case numbers.
        client = BrokerClient(f"127.0.0.1:{broker.port}", pki.tls("gent"))
        try:
            with pytest.raises(Exception, match="NOT_AN_OFFICER"):
                await client.directory_report(14)
        finally:
            await client.close()
    finally:
        await antwerpen.close()
        await store.close()
        for op in ops:
            await op.stop()
        await broker.stop(0)
