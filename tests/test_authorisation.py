"""The authorisation matrix, whole: every broker RPC as every kind of caller, and the document agrees.

Callers: an organisation of each kind the bundle has, the bundle's witness, and identities the federation
CA issued that are not members - one absent from the bundle, and ids that collide with members' under any
pattern (``g__t``: ``_`` is a LIKE wildcard; ``pseudonymiser/vvsg`` and ``witness/gent``: a member's id
with another kind). For every read the test asserts the exact set of events returned.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from olievlek.broker.access import MATRIX, NODE_KINDS
from olievlek.broker.server import BrokerServer

from olievlek import transport, wire
from olievlek.identity import OrgId, OrgIdentity, OrgKind
from olievlek.transport import TlsFiles
from olievlek.v1 import broker_pb2, broker_pb2_grpc

from .authorisation_tables import broker_table, node_table
from .conftest import WITNESS, Pki
from .envelopes import body, seal_bytes, send_envelope, signer, summary

pytestmark = pytest.mark.timeout(120)
DOC = Path(__file__).resolve().parent.parent / "docs" / "authorisation.md"

MEMBERS = {"municipality/gent": "gent", "federal_liaison/fed-liaison": "fed-liaison",
           "justice_house/jh-antwerpen": "jh-antwerpen", "monitor/vvsg": "vvsg", f"witness/{WITNESS}": WITNESS,
           "pseudonymiser/pseudonymiser-1": "pseudonymiser-1"}
STRANGERS = ("municipality/ghost", "municipality/g__t", "pseudonymiser/vvsg", "witness/gent", "monitor/gent")


def test_the_document_shows_the_matrix_the_code_enforces() -> None:
    text = DOC.read_text()
    assert broker_table() in text, f"docs/authorisation.md is out of date; the broker table is now:\n{broker_table()}"
    assert node_table() in text, f"docs/authorisation.md is out of date; the node table is now:\n{node_table()}"


def test_every_broker_rpc_has_a_row() -> None:
    assert set(MATRIX) == set(broker_pb2.DESCRIPTOR.services_by_name["Broker"].methods_by_name)


def _tls(pki: Pki, identity: str) -> TlsFiles:
    if identity in MEMBERS:
        return pki.tls(MEMBERS[identity])
    kind, _, org = identity.partition("/")
    creds = pki.ca.issue_org(OrgIdentity(OrgKind(kind), OrgId(org)), out=pki.root / "strangers" / kind / org)
    return TlsFiles(pki.root / "ca.pem", creds.tls_cert, creds.tls_key)


def _allowed(rpc: str, identity: str) -> bool:
    kind = OrgKind(identity.partition("/")[0])
    row = MATRIX[rpc]
    return identity in MEMBERS and (row.kinds is None or kind in row.kinds) and (
        not row.officers or identity == "monitor/vvsg")  # vvsg: the flanders bundle's officer


async def _read(stub: broker_pb2_grpc.BrokerStub, rpc: str, size: int, bundle: bytes) -> object:
    requests = {"GetHead": broker_pb2.GetHeadRequest(), "AuditLeaves": broker_pb2.AuditRange(),
                "GetBundle": broker_pb2.GetBundleRequest(digest=bundle),
                "AuditEvents": broker_pb2.AuditRange(), "DirectoryEntries": broker_pb2.DirectoryEntriesRequest(),
                "GetConsistency": broker_pb2.ConsistencyRequest(from_size=1, to_size=size),
                "GetInclusion": broker_pb2.InclusionRequest(index=0, size=size),
                "DirectoryReport": broker_pb2.DirectoryReportRequest()}
    try:
        return await getattr(stub, rpc)(requests[rpc], timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc


async def _subscribe(stub: broker_pb2_grpc.BrokerStub) -> grpc.aio.AioRpcError | None:
    """None when the stream stays open (allowed); the error when it is refused."""
    call = stub.Subscribe()
    try:
        await asyncio.wait_for(call.read(), 0.5)
    except TimeoutError:
        return None
    except grpc.aio.AioRpcError as exc:
        return exc
    finally:
        call.cancel()
    return None


async def test_every_rpc_as_every_kind_of_caller(pki: Pki, broker: BrokerServer) -> None:
    await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
    bad_rule = body(sender="leuven", rule_id="no-such-rule", summary_msg=summary(contact_id="leuven-livc"))
    refused = await send_envelope(pki, broker.port, seal_bytes(wire.encode(bad_rule), signer(pki, "leuven")),
                                  org="leuven")
    assert refused.WhichOneof("outcome") == "refusal"
    assert broker.service is not None
    everything = [(i, m) for i, _, m, _ in await broker.service.committer.audit.visible_events(None, 0, 1000)]
    head = await broker.service.committer.audit.head()
    assert head is not None
    # Each identity reads its events before it makes recorded calls of its own (which add its refusals).
    expected_events = {"municipality/gent": [i for i, m in everything if m and b'"sender":"gent"' in m]}
    assert len(expected_events["municipality/gent"]) == 1 and len(everything) == 3

    reads = [rpc for rpc, row in MATRIX.items() if not row.recorded and rpc != "Subscribe"]
    for identity in (*MEMBERS, *STRANGERS):
        async with transport.secure_channel(f"127.0.0.1:{broker.port}", _tls(pki, identity)) as channel:
            stub = broker_pb2_grpc.BrokerStub(channel)
            for rpc in reads:
                result = await _read(stub, rpc, head.size, bytes.fromhex(broker.service.bundle.digest))
                where = f"{identity} {rpc}"
                if _allowed(rpc, identity):
                    assert not isinstance(result, grpc.aio.AioRpcError), (where, result)
                    if rpc == "AuditEvents":  # exactly what this identity is party to, none of a colliding id's
                        assert isinstance(result, broker_pb2.AuditEventsResponse)
                        indices = [e.index for e in result.events]
                        if identity == "monitor/vvsg":  # the officer: every event, the refusals made so far too
                            assert indices == list(range(len(indices))) and len(indices) > len(everything), where
                        else:
                            assert indices == expected_events.get(identity, []), where
                else:
                    assert isinstance(result, grpc.aio.AioRpcError), (where, result)
                    assert result.code() == grpc.StatusCode.PERMISSION_DENIED, where
                    code = ("NOT_A_MEMBER" if identity in STRANGERS else "NOT_AN_OFFICER" if MATRIX[rpc].officers
                            and OrgKind(identity.partition("/")[0]) in (MATRIX[rpc].kinds or ()) else "WRONG_KIND")
                    assert transport.refusal_code_of(result) == code, where
            stream = await _subscribe(stub)
            if _allowed("Subscribe", identity):
                assert stream is None, (identity, stream)
            else:
                assert stream is not None and stream.code() == grpc.StatusCode.PERMISSION_DENIED, identity
            # Recorded calls: a refusal with a code and a leaf, never a bare status.
            report = await stub.ReportEvaluations(broker_pb2.EvaluationReport(), timeout=10)
            cosignature = await stub.PostCosignature(broker_pb2.Cosignature(), timeout=10)
            assert not report.stored and report.refusal.code and report.refusal.audit.leaf_index
            assert not cosignature.stored and cosignature.refusal.code and cosignature.refusal.audit.leaf_index
            matrix_code = {"ReportEvaluations": report.refusal.code, "PostCosignature": cosignature.refusal.code}
            for rpc, code in matrix_code.items():
                kind_ok = OrgKind(identity.partition("/")[0]) in (MATRIX[rpc].kinds or NODE_KINDS)
                if identity in STRANGERS:
                    assert code == broker_pb2.REFUSAL_CODE_NOT_A_MEMBER, (identity, rpc)
                elif not kind_ok:
                    assert code == broker_pb2.REFUSAL_CODE_WRONG_KIND, (identity, rpc)
                else:  # the right caller with an empty request: refused for what is wrong with it
                    assert code not in (broker_pb2.REFUSAL_CODE_WRONG_KIND, broker_pb2.REFUSAL_CODE_NOT_A_MEMBER)
            send = await stub.Send(broker_pb2.SendRequest(envelope=b"\x0a\x00"), timeout=10)
            assert send.WhichOneof("outcome") == "refusal" and send.refusal.audit.leaf_index, identity
    # Every refusal of a recorded call is visible to exactly the identity that made it.
    for identity in STRANGERS:
        leaves = await broker.service.committer.audit.visible_events(identity, 0, 1000)
        assert len(leaves) == 3 and all(json.loads(m or b"{}")["sender"] == identity.partition("/")[2]
                                        for _, _, m, _ in leaves), identity


def test_every_local_operation_as_every_role() -> None:
    from olievlek.node.access import ALLOWED, Caller, Forbidden, authorise

    from olievlek.v1 import local_pb2

    roles = (local_pb2.USER_ROLE_REGISSEUR, local_pb2.USER_ROLE_TABLE_MEMBER, local_pb2.USER_ROLE_ADMINISTRATOR)
    for op, allowed in ALLOWED.items():
        for role in roles:
            caller = Caller(1000, frozenset({role}), frozenset())
            if role in allowed:
                authorise(caller, op)
            else:
                with pytest.raises(Forbidden):
                    authorise(caller, op)
        with pytest.raises(Forbidden, match="not a user of this node"):
            authorise(Caller(1001, frozenset(), frozenset()), op)
    with pytest.raises(Forbidden):  # an operation nobody may run: an unknown one
        authorise(Caller(1000, frozenset(roles), frozenset()), "drop_database")
