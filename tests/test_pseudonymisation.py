"""The oblivious two-operator pseudonymisation end to end over mTLS gRPC."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from olievlek.broker.server import BrokerServer
from olievlek.node.pseudonym_client import PseudonymClient, PseudonymisationRefused
from olievlek.node.store import NodeStore
from olievlek.pseudonymiser.server import PseudonymiserServer
from olievlek.pseudonymiser.service import keygen, refresh

from olievlek import pseudonym, voprf
from olievlek.errors import InvalidIdentifier, VerificationError
from olievlek.identity import OrgId, OrgIdentity, OrgKind
from olievlek.normalise import fallback_input, normalise_name, nrn_input
from olievlek.policy import Bundle
from olievlek.policy.model import OperatorKey, PseudonymisationPolicy
from olievlek.transport import TlsFiles
from olievlek.trust import TrustAnchor
from olievlek.v1 import pseudonymiser_pb2 as pb

from .canary import forms, scan
from .conftest import Pki, start_operators

pytestmark = pytest.mark.timeout(60)
CANARY = "85073003328"


_opened: list[tuple[PseudonymClient, NodeStore]] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close every client and store a test opened, inside the test's own event loop."""
    yield
    while _opened:
        client, store = _opened.pop()
        await client.close()
        await store.close()


async def client_for(pki: Pki, ops: list[PseudonymiserServer], tmp_path: Path, org: str,
                     tls: TlsFiles | None = None, keys: PseudonymisationPolicy | None = None) -> PseudonymClient:
    store = await NodeStore.open(tmp_path / f"{org}-{id(ops)}.sqlite")
    trust = TrustAnchor.load(pki.root / "ca.pem", pki.root / "crl.pem")
    keys = keys or Bundle.load(tmp_path / "federation" / "bundle").pseudonymisation
    client = PseudonymClient([f"127.0.0.1:{o.port}" for o in ops], tls or pki.tls(org), trust, store, keys)
    _opened.append((client, store))
    return client


async def test_same_identifier_same_pseudonym_across_nodes_and_domains_unlinkable(
    pki: Pki, operators: list[PseudonymiserServer], tmp_path: Path
) -> None:
    gent = await client_for(pki, operators, tmp_path, "gent")
    antwerpen = await client_for(pki, operators, tmp_path, "antwerpen")
    a = await gent.pseudonymise([nrn_input("85.07.30-033.28")])
    b = await antwerpen.pseudonymise([nrn_input("85073003328")])
    assert a.pseudonyms == b.pseudonyms and len(a.pseudonyms[0]) == 32 and a.pseudonyms[0][0] == 1
    other = await gent.pseudonymise([nrn_input("93.05.18-223.61")])
    assert other.pseudonyms != a.pseudonyms
    monitoring = await gent.pseudonymise([nrn_input(CANARY)], domain=pb.DOMAIN_MONITORING)
    assert monitoring.pseudonyms[0] != a.pseudonyms[0]
    assert monitoring.pseudonyms[0][1:] != a.pseudonyms[0][1:]


async def test_refresh_keeps_pseudonyms_and_a_new_epoch_changes_them(
    pki: Pki, operators: list[PseudonymiserServer], tmp_path: Path
) -> None:
    client = await client_for(pki, operators, tmp_path, "gent")
    before = (await client.pseudonymise([nrn_input(CANARY)])).pseudonyms[0]
    delta = voprf.random_scalar()
    s1, s2 = (o.service for o in operators)
    assert s1 is not None and s2 is not None
    old_public = (await s1.store.active_share(pb.DOMAIN_ROUTING)).public  # type: ignore[union-attr]
    await refresh(s1.store, pb.DOMAIN_ROUTING, delta, +1)
    await refresh(s2.store, pb.DOMAIN_ROUTING, delta, -1)
    assert (await s1.store.active_share(pb.DOMAIN_ROUTING)).public != old_public  # type: ignore[union-attr]
    assert (await client.pseudonymise([nrn_input(CANARY)])).pseudonyms[0] == before
    k1 = await keygen(s1.store, pb.DOMAIN_ROUTING, 2)
    k2 = await keygen(s2.store, pb.DOMAIN_ROUTING, 2)
    with pytest.raises(VerificationError, match="names no operator key for domain routing epoch 2"):
        await client.pseudonymise([nrn_input(CANARY)])
    old = Bundle.load(tmp_path / "federation" / "bundle").pseudonymisation
    new = dataclasses.replace(old, keys=(*old.keys, OperatorKey("routing", 2, voprf.add(k1.public, k2.public),
                                                                old.keys[0].holders)))  # the next bundle
    client = await client_for(pki, operators, tmp_path, "gent-2", tls=pki.tls("gent"), keys=new)
    after = (await client.pseudonymise([nrn_input(CANARY)])).pseudonyms[0]
    assert after[0] == 2 and after[1:] != before[1:]


async def test_a_swapped_share_is_caught(pki: Pki, operators: list[PseudonymiserServer], tmp_path: Path) -> None:
    client = await client_for(pki, operators, tmp_path, "gent")
    await client.pseudonymise([nrn_input(CANARY)])
    s2 = operators[1].service
    assert s2 is not None
    share = await s2.store.active_share(pb.DOMAIN_ROUTING)
    assert share is not None
    rogue = voprf.random_scalar()
    from olievlek.pseudonymiser.storage.store import Share

    await s2.store.put_share(Share(share.domain, share.epoch, rogue, voprf.mul_base(rogue), share.created_ms))
    with pytest.raises(VerificationError, match="do not add up to the bundle's key for domain routing epoch 1"):
        await client.pseudonymise([nrn_input(CANARY)])


async def test_one_operator_alone_does_not_reproduce_a_pseudonym(
    pki: Pki, operators: list[PseudonymiserServer], tmp_path: Path
) -> None:
    client = await client_for(pki, operators, tmp_path, "gent")
    full = (await client.pseudonymise([nrn_input(CANARY)])).pseudonyms[0]
    for op in operators:
        assert op.service is not None
        share = await op.service.store.active_share(pb.DOMAIN_ROUTING)
        assert share is not None
        inp = nrn_input(CANARY).value
        r, blinded = voprf.blind(inp)
        alone = voprf.finalize(inp, r, voprf.mul(share.scalar, blinded))
        assert bytes([1]) + alone[:31] != full


async def test_budgets_domains_and_warnings(pki: Pki, operators: list[PseudonymiserServer], tmp_path: Path) -> None:
    client = await client_for(pki, operators, tmp_path, "gent")
    with pytest.raises(PseudonymisationRefused, match="batch_too_large"):
        await client.pseudonymise([nrn_input(CANARY)] * 101)  # municipality batch is 100
    for op in operators:  # use up to just under the hourly budget of 200
        assert op.service is not None
        await op.service.store.count("gent", "municipality", pb.DOMAIN_ROUTING, 199, _now())
    with pytest.raises(PseudonymisationRefused, match=r"budget_exceeded.*199/200 this hour"):
        await client.pseudonymise([nrn_input(CANARY)] * 2)
    monitor = pki.ca.issue_org(OrgIdentity(OrgKind.MONITOR, OrgId("vvsg")))
    vvsg = await client_for(pki, operators, tmp_path, "vvsg",
                            TlsFiles(pki.root / "ca.pem", monitor.tls_cert, monitor.tls_key))
    with pytest.raises(PseudonymisationRefused, match=r"domain_not_allowed.*monitor may not evaluate"):
        await vvsg.pseudonymise([nrn_input(CANARY)])


async def test_half_budget_sets_the_warning(pki: Pki, operators: list[PseudonymiserServer], tmp_path: Path) -> None:
    client = await client_for(pki, operators, tmp_path, "antwerpen")
    for op in operators:
        assert op.service is not None
        await op.service.store.count("antwerpen", "municipality", pb.DOMAIN_ROUTING, 150, _now() - 2 * 3_600_000)
        await op.service.store.count("antwerpen", "municipality", pb.DOMAIN_ROUTING, 350, _now() - 3_600_000)
    result = await client.pseudonymise([nrn_input(CANARY)])
    assert sorted(result.warnings) == ["pseudonymiser-1", "pseudonymiser-2"]


def _now() -> int:
    from olievlek.clock import now_ms

    return now_ms()


async def test_operators_refuse_invalid_elements(pki: Pki, operators: list[PseudonymiserServer]) -> None:
    from olievlek import transport
    from olievlek.v1 import pseudonymiser_pb2_grpc

    async with transport.secure_channel(f"127.0.0.1:{operators[0].port}", pki.tls("gent")) as ch:
        resp = await pseudonymiser_pb2_grpc.PseudonymiserStub(ch).Evaluate(
            pb.EvaluateRequest(domain=pb.DOMAIN_ROUTING, blinded=[b"\xff" * 32]), timeout=5)
    assert resp.refused.code == pb.EVALUATE_REFUSAL_INVALID_ELEMENT


async def test_operator_store_and_logs_hold_no_identifier_or_group_element(
    pki: Pki, tmp_path: Path, policy_dir: Path, broker: BrokerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from olievlek.node import pseudonym_client

    from olievlek import logs

    seen: list[pseudonym.Prepared] = []

    def recording_prepare(inputs: list[object]) -> pseudonym.Prepared:
        p = pseudonym.prepare(inputs)  # type: ignore[arg-type]
        seen.append(p)
        return p

    monkeypatch.setattr(pseudonym_client, "prepare", recording_prepare)
    log_file = (tmp_path / "operator-logs.txt").open("w")
    logs.configure(json=True, stream=log_file)
    ops = await start_operators(pki, tmp_path, broker.port)
    try:
        client = await client_for(pki, ops, tmp_path, "gent")
        inputs = [nrn_input("85.07.30-033.28"), fallback_input("Kanarie", "Canary", "1985-07-30")]
        result = await client.pseudonymise(inputs)
        for op in ops:
            assert await op.push_report()
    finally:
        for op in ops:
            await op.stop()
        log_file.close()
        logs.configure(json=True)
    assert broker._store is not None
    rows = await broker._store._db.fetchall(
        "SELECT operator, org_id, domain, requests, evaluations FROM evaluation_reports ORDER BY operator")
    assert rows == [("pseudonymiser-1", "gent", 1, 1, 2), ("pseudonymiser-2", "gent", 1, 1, 2)]
    leaves = await broker._store.db.fetchall(
        "SELECT orgs FROM audit_events WHERE CAST(meta AS TEXT) LIKE '%pseudonymiser.counts%' ORDER BY idx")
    assert [r[0] for r in leaves] == ["municipality/gent,pseudonymiser/pseudonymiser-1",  # each report is a leaf
                                      "municipality/gent,pseudonymiser/pseudonymiser-2"]
    captured = (tmp_path / "operator-logs.txt").read_text()
    operator_files = tmp_path / "operators"
    operator_files.mkdir()
    for share in (1, 2):
        for f in (tmp_path / f"pseudonymiser-{share}").iterdir():
            (operator_files / f"{share}-{f.name}").write_bytes(f.read_bytes())
    (operator_files / "logs.txt").write_text(captured)
    assert "evaluate.done" in captured  # the operators' logs were captured
    [prepared] = seen
    needles = forms(CANARY) | {"name": b"kanarie", "pseudonym-0": result.pseudonyms[0],
                               "pseudonym-1": result.pseudonyms[1],
                               "pseudonym-hex": result.pseudonyms[0].hex().encode()}
    for i, b in enumerate(prepared.blinded):
        needles[f"blinded-{i}"] = b
        needles[f"blinded-hex-{i}"] = b.hex().encode()
        needles[f"input-{i}"] = prepared.inputs[i].value
    assert scan(operator_files, needles) == []
    # Positive control: a deliberate leak in the same place is caught.
    (operator_files / "leak.bin").write_bytes(b"x" + result.pseudonyms[0])
    assert scan(operator_files, needles) == [(operator_files / "leak.bin", "pseudonym-0")]


@given(st.text(alphabet=st.characters(codec="utf-8", categories=["L", "M", "Zs", "Pd"]), max_size=40))
def test_name_normalisation_is_idempotent(raw: str) -> None:
    once = normalise_name(raw)
    assert normalise_name(once) == once
    assert once == once.strip() and "  " not in once


def test_fallback_identity_normalisation() -> None:
    a = fallback_input("Van den Berg-Janssens", "Zoë  Marie", "1990-02-00")
    b = fallback_input("VAN DEN BERG JANSSENS", "zoe marie", "1990-02-00")
    assert a == b and a.probable and not nrn_input(CANARY).probable
    with pytest.raises(InvalidIdentifier, match="YYYY-MM-DD"):
        fallback_input("A", "B", "30/07/1985")


async def test_concurrent_batches(pki: Pki, operators: list[PseudonymiserServer], tmp_path: Path) -> None:
    client = await client_for(pki, operators, tmp_path, "leuven")
    batches = await asyncio.gather(*(client.pseudonymise([nrn_input("93.05.18-223.61")]) for _ in range(5)))
    assert len({b.pseudonyms for b in batches}) == 1
