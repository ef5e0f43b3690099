"""The findings of the December 2026 attack session, one test each, through the real entry points.

Each test here was run against the code before the fix and seen failing (the issue note lists how). They
use only the gRPC services, the local socket and the files a service reads, as an attacker holding a
certificate from the federation's own CA would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from olievlek.broker.server import BrokerServer
from olievlek.node.server import NodeServer

from olievlek import transport, voprf, wire
from olievlek.envelope import SIGNING_CONTEXT, env_of
from olievlek.framing import write_frame
from olievlek.identity import OrgId, OrgIdentity, OrgKind
from olievlek.pki import OrgCredentials
from olievlek.transport import TlsFiles
from olievlek.v1 import (
    broker_pb2,
    broker_pb2_grpc,
    envelope_pb2,
    pseudonymiser_pb2,
    pseudonymiser_pb2_grpc,
    summary_pb2,
)

from .conftest import NodeFactory, Pki, broker_config
from .envelopes import PSEUDONYM, body, open_and_alert, seal_bytes, send_envelope, signer

pytestmark = pytest.mark.timeout(120)


def issue(pki: Pki, kind: OrgKind, org_id: str, folder: str) -> OrgCredentials:
    """A certificate from the federation's own CA, for any identity (members or not), in its own folder."""
    return pki.ca.issue_org(OrgIdentity(kind, OrgId(org_id)), out=pki.root / "extra" / folder)


def tls_of(pki: Pki, creds: OrgCredentials) -> TlsFiles:
    return TlsFiles(pki.root / "ca.pem", creds.tls_cert, creds.tls_key)


async def call(port: int, tls: TlsFiles, method: str, request: object) -> object:
    """One unary call as ``tls``; an error comes back as the AioRpcError itself."""
    async with transport.secure_channel(f"127.0.0.1:{port}", tls) as channel:
        try:
            return await getattr(broker_pb2_grpc.BrokerStub(channel), method)(request, timeout=20)
        except grpc.aio.AioRpcError as exc:
            return exc


def refusal_code(result: object) -> str:
    assert isinstance(result, grpc.aio.AioRpcError), result
    assert result.code() != grpc.StatusCode.UNKNOWN, result
    return transport.refusal_code_of(result)


# -- audit events leaked across organisations -------------------------------------------------------
async def test_audit_events_are_visible_by_exact_identity_only(pki: Pki, broker: BrokerServer) -> None:
    await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
    wildcard = issue(pki, OrgKind.MUNICIPALITY, "g__t", "g__t")  # `_` is a LIKE wildcard and legal in an id
    other_kind = issue(pki, OrgKind.PSEUDONYMISER, "vvsg", "pseudonymiser-vvsg")  # the officer's id, other kind
    for creds in (wildcard, other_kind):
        result = await call(broker.port, tls_of(pki, creds), "AuditEvents", broker_pb2.AuditRange(limit=100))
        assert refusal_code(result) == "NOT_A_MEMBER"
    # Positive control: Gent itself reads its own send.
    own = await call(broker.port, pki.tls("gent"), "AuditEvents", broker_pb2.AuditRange(limit=100))
    assert isinstance(own, broker_pb2.AuditEventsResponse)
    assert [json.loads(e.metadata)["event"] for e in own.events] == ["send"]


async def test_audit_pages_are_capped_and_continue_with_a_cursor(pki: Pki, broker: BrokerServer) -> None:
    s = signer(pki, "gent")
    # 1,152 accepted alerts, more than one page, sent within seconds under the default rate limits: a
    # burst of more than ten times the documented peak (20 envelopes/s) passes.
    for _ in range(9):
        raws = [seal_bytes(wire.encode(body()), s) for _ in range(128)]
        async with transport.secure_channel(f"127.0.0.1:{broker.port}", pki.tls("gent")) as channel:
            answer = await broker_pb2_grpc.BrokerStub(channel).SendBatch(
                broker_pb2.SendBatchRequest(envelopes=raws), timeout=60)
        assert all(r.WhichOneof("outcome") == "receipt" for r in answer.responses)
    page = await call(broker.port, pki.tls("gent"), "AuditEvents", broker_pb2.AuditRange(limit=10_000))
    assert isinstance(page, broker_pb2.AuditEventsResponse)
    assert len(page.events) == 1000 and page.next_index == page.events[-1].index + 1
    rest = await call(broker.port, pki.tls("gent"), "AuditEvents", broker_pb2.AuditRange(from_index=page.next_index))
    assert isinstance(rest, broker_pb2.AuditEventsResponse) and len(rest.events) == 152 and rest.next_index == 0
    too_many = await call(broker.port, pki.tls("gent"), "AuditLeaves", broker_pb2.AuditRange(limit=20_000))
    assert refusal_code(too_many) == "INVALID_FIELD"  # the wire contract bounds a page to 10,000


# -- inputs that ended in UNKNOWN -----------------------------------------------------------------------
def _unparseable_subject(cert_pem: bytes) -> bytes:
    """The DER of a valid signing certificate whose subject no longer parses (a byte of its UTF8String)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = bytearray(cert.public_bytes(Encoding.DER))
    subject = cert.subject.public_bytes()
    at = bytes(der).find(subject) + subject.find(b"\x0c") + 2
    der[at] = 0xFF
    return bytes(der)


def _two_holders(pki: Pki) -> bytes:
    b = envelope_pb2.EnvelopeBody(
        idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_DISCLOSURE_REQUEST, sender="fed-liaison",
        recipients=["gent", "antwerpen"], purpose=envelope_pb2.PURPOSE_DISCLOSURE_ON_REQUEST,
        rule_id="disclosure-request", created_at_ms=int(time.time() * 1000))
    b.disclosure_request.subject_pseudonym = PSEUDONYM
    b.disclosure_request.requested.append(summary_pb2.DISCLOSABLE_FIELD_PHASE)
    b.disclosure_request.file_ref, b.disclosure_request.legal_basis = "fed-2026-1", "law-30-07-2018-art5"
    return seal_bytes(wire.encode(b), signer(pki, "fed-liaison"))


def _response_to_two(pki: Pki) -> bytes:
    b = envelope_pb2.EnvelopeBody(
        idempotency_key=wire.new_token(), kind=envelope_pb2.MESSAGE_KIND_DISCLOSURE_RESPONSE, sender="gent",
        recipients=["fed-liaison", "jh-antwerpen"], purpose=envelope_pb2.PURPOSE_DISCLOSURE_ON_REQUEST,
        rule_id="disclosure-response", created_at_ms=int(time.time() * 1000))
    b.disclosure_response.subject_pseudonym = PSEUDONYM
    b.disclosure_response.decision = summary_pb2.DISCLOSURE_DECISION_DENIED
    b.disclosure_response.reason = summary_pb2.DENIAL_REASON_EXPIRED
    return seal_bytes(wire.encode(b), signer(pki, "gent"))


@pytest.mark.parametrize("case", ["unparseable-signer-subject", "disclosure-request-to-two-holders",
                                  "disclosure-response-to-two-recipients"])
async def test_an_input_that_failed_while_prepared_is_a_recorded_refusal(case: str, pki: Pki,
                                                                         broker: BrokerServer) -> None:
    if case == "unparseable-signer-subject":
        s, b = signer(pki, "gent"), wire.encode(body())
        raw = wire.encode(envelope_pb2.Envelope(body=b, signature=s.key.sign(SIGNING_CONTEXT + b),
                                                signer_certificate=_unparseable_subject(
                                                    pki.org("gent").sign_cert.read_bytes())))
        sender = "gent"
    elif case == "disclosure-request-to-two-holders":
        raw, sender = _two_holders(pki), "fed-liaison"
    else:
        raw, sender = _response_to_two(pki), "gent"
    good = seal_bytes(wire.encode(body()), signer(pki, "gent")) if sender == "gent" else None
    async with transport.secure_channel(f"127.0.0.1:{broker.port}", pki.tls(sender)) as channel:
        stub = broker_pb2_grpc.BrokerStub(channel)
        single = await stub.Send(broker_pb2.SendRequest(envelope=raw), timeout=20)
        batch = await stub.SendBatch(broker_pb2.SendBatchRequest(envelopes=[raw, *([good] if good else [])]),
                                     timeout=20)
    assert single.WhichOneof("outcome") == "refusal" and single.refusal.code != 0
    assert single.refusal.audit.leaf_index > 0  # recorded: a leaf, proven to the sender
    assert batch.responses[0].WhichOneof("outcome") == "refusal"
    if good:  # a bad item leaves the others' answers intact
        assert batch.responses[1].WhichOneof("outcome") == "receipt"
    assert broker.service is not None
    assert any(d.decision == "refused" for d in await broker.service.store.decisions())


@pytest.mark.parametrize("content", ["[1, 2]", '{"bundle_digest": null, "signatures": 7}', "{ not json"],
                         ids=["a-list", "wrong-shapes", "not-json"])
async def test_a_malformed_signatures_file_on_reload_is_a_recorded_refusal(content: str, broker: BrokerServer,
                                                                           policy_dir: Path) -> None:
    assert broker.service is not None and broker._store is not None
    good = broker.service.bundle
    (policy_dir / "bundle" / "signatures.json").write_text(content)
    assert await broker.reload_policy() is False
    assert broker.service.bundle is good  # the last good bundle stays enforced
    rows = await broker._store._db.fetchall("SELECT outcome, reason FROM policy_loads ORDER BY id")
    assert rows[-1][0] == "refused" and rows[-1][1]  # with its reason
    events = await broker.service.committer.audit.visible_events(None, 0, 100)
    last = json.loads(events[-1][2] or b"{}")
    assert last["event"] == "policy.load" and last["outcome"] == "refused"


# -- the pseudonymisers -------------------------------------------------------------------------------
async def _evaluate(port: int, tls: TlsFiles, blinded: list[bytes]) -> pseudonymiser_pb2.EvaluateResponse:
    async with transport.secure_channel(f"127.0.0.1:{port}", tls) as channel:
        response: pseudonymiser_pb2.EvaluateResponse = await pseudonymiser_pb2_grpc.PseudonymiserStub(
            channel).Evaluate(pseudonymiser_pb2.EvaluateRequest(domain=pseudonymiser_pb2.DOMAIN_ROUTING,
                                                                blinded=blinded), timeout=20)
        return response


async def test_the_pseudonymisers_refuse_non_canonical_elements_and_unknown_callers(
        pki: Pki, operators: list[object]) -> None:
    port = operators[0].port  # type: ignore[attr-defined]
    element = voprf.hash_to_group(b"canary", voprf.MODE_VOPRF)
    high = bytes(element[:31]) + bytes([element[31] | 0x80])  # bit 255 set: the same element, another encoding
    identity_high = bytes(31) + b"\x80"
    assert (await _evaluate(port, pki.tls("gent"), [element])).WhichOneof("outcome") == "evaluation"  # control
    for blinded in (high, identity_high):
        answer = await _evaluate(port, pki.tls("gent"), [blinded])
        assert answer.refused.code == pseudonymiser_pb2.EVALUATE_REFUSAL_INVALID_ELEMENT, answer
    ghost = issue(pki, OrgKind.MUNICIPALITY, "ghost", "ghost")  # CA-issued, allowed kind, not in the bundle
    answer = await _evaluate(port, tls_of(pki, ghost), [element])
    assert answer.WhichOneof("outcome") == "refused"
    assert pseudonymiser_pb2.EvaluateRefusal.Name(answer.refused.code) == "EVALUATE_REFUSAL_NOT_A_MEMBER"


# -- weaker checks outside Send ----------------------------------------------------------------------------
async def test_an_older_revocation_list_does_not_readmit_a_revoked_organisation(pki: Pki,
                                                                                broker: BrokerServer) -> None:
    crl = pki.root / "crl.pem"
    before = crl.read_bytes()
    ok = await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
    assert ok.WhichOneof("outcome") == "receipt"
    for serial in pki.ca.serials_of("municipality/gent"):
        pki.ca.revoke(serial)
    refused = await call(broker.port, pki.tls("gent"), "GetHead", broker_pb2.GetHeadRequest())
    assert refusal_code(refused) == "UNAUTHENTICATED"
    crl.write_bytes(before)  # validly signed by the CA, but older: a rollback
    again = await call(broker.port, pki.tls("gent"), "GetHead", broker_pb2.GetHeadRequest())
    assert refusal_code(again) == "UNAUTHENTICATED"


async def test_revocation_errors_name_no_server_path(pki: Pki, broker: BrokerServer) -> None:
    (pki.root / "crl.pem").write_text("not a CRL")
    result = await call(broker.port, pki.tls("gent"), "GetHead", broker_pb2.GetHeadRequest())
    assert isinstance(result, grpc.aio.AioRpcError) and result.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "/" not in (result.details() or "") and "revocation" in (result.details() or "")


async def test_cosignatures_count_only_from_the_bundles_witnesses(pki: Pki, broker: BrokerServer) -> None:
    from olievlek.audit.cosign import cosign

    assert broker.service is not None
    head = await broker.service.committer.audit.head()
    assert head is not None
    impostor = signer(pki, "vvsg")  # monitor/vvsg, not a witness
    result = await call(broker.port, pki.tls("vvsg"), "PostCosignature",
                        cosign(head, "vvsg", "vvsg.example/w", impostor.key, 1796664026))
    assert isinstance(result, broker_pb2.CosignatureAck) and not result.stored
    assert result.refusal.audit.leaf_index > 0  # recorded
    assert await broker.service.store.cosignatures(head.size) == []


async def test_an_alert_to_oneself_is_refused(pki: Pki, broker: BrokerServer) -> None:
    answer = await send_envelope(pki, broker.port, seal_bytes(wire.encode(body(recipients=("gent",))),
                                                              signer(pki, "gent")))
    assert answer.WhichOneof("outcome") == "refusal"
    assert broker_pb2.RefusalCode.Name(answer.refusal.code) == "REFUSAL_CODE_SELF_ADDRESSED"


# -- bounded cost of abuse -------------------------------------------------------------------------------------
async def test_a_refusal_flood_is_bounded_and_covered_by_its_aggregated_leaf(pki: Pki, tmp_path: Path,
                                                                              policy_dir: Path) -> None:
    from olievlek.broker.service import Limits

    from olievlek.ratelimit import Limit

    limits = Limits(calls=Limit(1000, 1000), refusals=Limit(5, 60), refusal_interval_ms=60_000, individual_refusals=5)
    server = BrokerServer(dataclasses.replace(broker_config(pki, tmp_path), limits=limits))
    await server.start()
    assert server.service is not None
    try:
        flood: list[bytes] = [seal_bytes(wire.encode(body(sender="leuven", rule_id="no-such-rule")),
                                         signer(pki, "leuven")) for _ in range(200)]
        sent, limited, aggregated = [], 0, {}
        async with transport.secure_channel(f"127.0.0.1:{server.port}", pki.tls("leuven")) as channel:
            stub = broker_pb2_grpc.BrokerStub(channel)
            for raw in flood:
                try:
                    r = await stub.Send(broker_pb2.SendRequest(envelope=raw), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert transport.retry_after_of(exc) is not None  # RetryInfo: when to come back
                    limited += 1
                    if limited == 3:  # each is held back before its answer: an abuser gets a few a second
                        break
                    continue
                sent.append(raw)
                if r.refusal.aggregated_interval_ms:
                    aggregated.setdefault(r.refusal.aggregated_interval_ms, []).append(raw)
        # A bystander is never held back by the flood.
        for _ in range(20):
            ok = await send_envelope(pki, server.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
            assert ok.WhichOneof("outcome") == "receipt"
        assert limited > 0 and aggregated
        await server.service.flush_refusals(server.service.now() + 60_000)  # as when the interval has ended
        rows = await server.service.committer.audit.visible_events("municipality/leuven", 0, 1000)
        individual = [at for _, _, m, at in rows if m and json.loads(m)["event"] == "send"]
        combined = [json.loads(m) for _, _, m, _ in rows if m and json.loads(m)["event"] == "refusals.aggregated"]
        per_interval: dict[int, int] = {}
        for at in individual:
            per_interval[at // 60_000] = per_interval.get(at // 60_000, 0) + 1
        assert max(per_interval.values()) <= 5  # the first few of an interval get a leaf each ...
        assert len(individual) + len(combined) < len(sent) // 2  # ... the rest share one: bounded storage
        for interval, raws in aggregated.items():
            [leaf] = [e for e in combined if e["interval_start_ms"] == interval]
            chain = bytes(32)
            for raw in raws:  # the sender that kept what it sent recomputes the chain
                chain = hashlib.sha256(chain + env_of(raw)).digest()
            assert leaf["count"] == len(raws) and leaf["chain"] == chain.hex() and leaf["codes"]
    finally:
        await server.stop(0)


async def test_malformed_local_frames_are_logged_once_without_traceback(
        broker: BrokerServer, nodes: NodeFactory, log_file: Path) -> None:
    gent = await nodes.start("gent", broker.port)
    for _ in range(50):
        reader, writer = await asyncio.open_unix_connection(str(gent.config.socket))
        await write_frame(writer, b"\xff\x01garbage")
        await reader.read(4096)
        writer.close()
    logged = log_file.read_text()
    assert "Traceback" not in logged and '"exception"' not in logged
    assert 1 <= logged.count("local.client_error") <= 2


async def test_a_burst_of_ten_times_the_peak_passes_and_a_rate_limited_sender_waits_and_delivers(
        pki: Pki, tmp_path: Path, policy_dir: Path, nodes: NodeFactory) -> None:
    from olievlek.broker.service import Limits

    from olievlek.ratelimit import Limit

    # A tiny call limit, so the node meets RESOURCE_EXHAUSTED and must honour the delay (RetryInfo).
    server = BrokerServer(dataclasses.replace(broker_config(pki, tmp_path), limits=Limits(calls=Limit(3, 3))))
    await server.start()
    try:
        gent: NodeServer = await nodes.start("gent", server.port)
        answers = [await open_and_alert(gent, nrn, no_wait=True) for nrn in
                   ("85.07.30-033.28", "93.05.18-223.61", "85.07.30-035.26", "85.07.30-037.24",
                    "90.02.01-997.04", "90.02.01-999.02")]
        assert len(answers) == 6
        from olievlek.v1 import local_pb2

        from .envelopes import local

        for _ in range(300):
            items = (await local(gent, local_pb2.LocalRequest(outbox_list=local_pb2.OutboxListRequest()))
                     ).outbox_list.items
            if items and all(i.status == local_pb2.OUTBOX_STATUS_ACCEPTED for i in items):
                break
            await asyncio.sleep(0.1)
        assert [i.status for i in items] == [local_pb2.OUTBOX_STATUS_ACCEPTED] * len(items)
        assert server.metrics is not None
        limited = sum(s.value for metric in server.metrics.registry.collect() for s in metric.samples
                      if s.name == "olievlek_broker_refused_calls_total" and s.labels.get("code") == "RATE_LIMITED")
        assert limited > 0  # the node was held back, waited as told, and every alert still arrived
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        await server.stop(0)
    shutil.rmtree(tmp_path / "broker", ignore_errors=True)


# -- bundle format 2: officers and witnesses by full identity ------------------------------------------
def _bundle_with(tmp_path: Path, **changes: object) -> Path:
    import yaml

    from .conftest import FLANDERS

    bundle = tmp_path / "bundle"
    shutil.copytree(FLANDERS, bundle)
    meta = yaml.safe_load((bundle / "bundle.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    (bundle / "bundle.yaml").write_text(yaml.safe_dump(meta))
    return bundle


def test_a_bare_officer_id_is_refused_in_format_2_naming_the_entry(tmp_path: Path) -> None:
    from olievlek.policy import Bundle
    from olievlek.policy.diagnostics import BundleError

    with pytest.raises(BundleError, match=r"bundle.yaml:\d+:\d+: error: data protection officer 'vvsg'"):
        Bundle.load(_bundle_with(tmp_path, data_protection_officers=["vvsg"]))
    with pytest.raises(BundleError, match="not an organisation of this bundle with that kind"):
        Bundle.load(_bundle_with(tmp_path / "b", data_protection_officers=["pseudonymiser/vvsg"]))


def test_a_format_1_bundle_loads_but_its_officers_grant_nothing(tmp_path: Path) -> None:
    from olievlek.identity import OrgId, OrgIdentity, OrgKind
    from olievlek.policy import Bundle

    old = Bundle.load(_bundle_with(tmp_path, format=None, witnesses=None, data_protection_officers=["vvsg"]))
    assert old.format == 1 and old.data_protection_officers == frozenset()
    assert not old.is_officer(OrgIdentity(OrgKind.MONITOR, OrgId("vvsg")))
    assert any("grant nothing until the bundle is re-signed in format 2" in w.message for w in old.warnings)
    from .federations import cli

    r = cli("policy", "check", str(tmp_path / "bundle"))
    assert r.returncode == 0 and "grant nothing" in r.stdout


def test_a_witness_quorum_beyond_the_witnesses_named_is_refused(tmp_path: Path) -> None:
    from olievlek.policy import Bundle
    from olievlek.policy.diagnostics import BundleError

    member = {"identity": "witness/w1", "key_name": "w1.example/log", "key": "ab" * 32}
    with pytest.raises(BundleError, match="witness quorum 2 is more than the 1 witnesses named"):
        Bundle.load(_bundle_with(tmp_path, witnesses={"quorum": 2, "members": [member]}))


def test_a_node_whose_bundle_names_no_witnesses_keeps_its_own_and_says_so() -> None:
    from olievlek.audit.cosign import effective_witnesses
    from olievlek.policy.model import WitnessKey, WitnessPolicy

    own = (WitnessKey("witness/w1", "w1.example/log", bytes(32)),)
    policy, quorum, diagnostic = effective_witnesses(WitnessPolicy(), own, 1)
    assert quorum == 1 and policy.members == own and "names no witnesses" in diagnostic
    bundle = WitnessPolicy(2, (*own, WitnessKey("witness/w2", "w2.example/log", bytes(32))))
    assert effective_witnesses(bundle, (), 1)[1] == 2  # the bundle's quorum; a node may only raise it
    assert effective_witnesses(bundle, (), 0)[1] == 2
    assert effective_witnesses(WitnessPolicy(), (), 0)[1] == 0 and "none are configured" in effective_witnesses(
        WitnessPolicy(), (), 0)[2]
