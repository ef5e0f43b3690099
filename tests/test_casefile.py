"""The encrypted case file (issue 8, first slice): sealed fields, the key check at start-up, moved
ciphertexts, the access log, the blind index — through the node's local API."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path

import pytest
from olievlek.node.server import NodeServer

from olievlek.errors import ConfigError, LocalApiError
from olievlek.fieldcrypt import KeyEncryptionKey
from olievlek.v1 import local_pb2, summary_pb2

from .canary import forms, scan
from .conftest import NodeFactory
from .envelopes import local

pytestmark = pytest.mark.timeout(60)

PERSON = local_pb2.Identity(national_number="85.07.30-033.28", given_names="Canary", family_name="Kanarie",
                            birth_date="1985-07-30", address="Kanarieweg 7")
OTHER = local_pb2.Identity(national_number="93.05.18-223.61", given_names="Ander", family_name="Persoon")


async def _open(node: NodeServer, identity: local_pb2.Identity) -> int:
    r = await local(node, local_pb2.LocalRequest(case_open=local_pb2.CaseOpenRequest(
        identity=identity, phase=summary_pb2.PHASE_FOLLOW_UP, concerns=[summary_pb2.CONCERN_CATEGORY_LEFT_WING])))
    assert r.WhichOneof("response") == "case_open", r
    return int(r.case_open.case_id)


async def _show(node: NodeServer, case_id: int) -> local_pb2.LocalResponse:
    return await local(node, local_pb2.LocalRequest(case_show=local_pb2.CaseShowRequest(
        case_id=case_id, purpose=local_pb2.ACCESS_PURPOSE_FOLLOW_UP)))


async def test_fields_are_sealed_and_open_only_with_a_logged_purpose(nodes: NodeFactory, tmp_path: Path) -> None:
    gent = await nodes.start("gent", 1)  # no broker needed for the case file
    case_id = await _open(gent, PERSON)
    db = gent.config.database
    # While the node runs: the database, its WAL and shared memory hold no identity.
    needles = {**forms("85073003328"), "name": b"Kanarie", "street": b"Kanarieweg"}
    files = {db, Path(f"{db}-wal"), Path(f"{db}-shm")}
    assert any(p.exists() and p.stat().st_size for p in files)
    assert [hit for hit in scan(db.parent, needles) if hit[0] in files] == []
    # Positive control: the node gives the identity back, for a stated purpose, and logs the read.
    r = await _show(gent, case_id)
    assert r.case_show.identity == local_pb2.Identity(national_number="85073003328", given_names="Canary",
                                                      family_name="Kanarie", birth_date="1985-07-30",
                                                      address="Kanarieweg 7")
    with pytest.raises(LocalApiError) as missing:
        await local(gent, local_pb2.LocalRequest(case_show=local_pb2.CaseShowRequest(case_id=case_id)))
    assert missing.value.remote_code == "missing_purpose"
    log = (await local(gent, local_pb2.LocalRequest(access_log=local_pb2.AccessLogRequest()))).access_log.entries
    assert len(log) == 1 and log[0].case_id == case_id and log[0].uid == os.getuid()
    assert list(log[0].fields) == ["national_number", "given_names", "family_name", "birth_date", "address"]
    assert log[0].purpose == local_pb2.ACCESS_PURPOSE_FOLLOW_UP
    listed = (await local(gent, local_pb2.LocalRequest(case_list=local_pb2.CaseListRequest()))).case_list.cases
    assert [c.case_id for c in listed] == [case_id]  # a list opens nothing, so logs nothing
    assert len((await local(gent, local_pb2.LocalRequest(access_log=local_pb2.AccessLogRequest())))
               .access_log.entries) == 1
    # The blind index finds the subject by number without storing the number.
    assert gent.casefile is not None
    assert await gent.casefile.find("85073003328") == [1]
    assert await gent.casefile.find("93051822361") == []


async def test_a_ciphertext_moved_to_another_row_or_column_does_not_open(nodes: NodeFactory) -> None:
    gent = await nodes.start("gent", 1)
    first, second = await _open(gent, PERSON), await _open(gent, OTHER)
    await nodes.stop(gent)
    db = gent.config.database
    conn = sqlite3.connect(db)
    try:
        (a,), (b,) = conn.execute("SELECT family_name FROM subjects ORDER BY id").fetchall()
        conn.execute("UPDATE subjects SET family_name = ? WHERE id = 1", (b,))  # another row's ciphertext
        given, family = conn.execute("SELECT given_names, family_name FROM subjects WHERE id = 2").fetchone()
        conn.execute("UPDATE subjects SET given_names = ?, family_name = ? WHERE id = 2", (family, given))  # columns
        conn.commit()
    finally:
        conn.close()
    gent = await nodes.start("gent", 1)
    assert a != b
    for case_id, field in ((first, "subjects.family_name of row 1"), (second, "subjects.given_names of row 2")):
        with pytest.raises(LocalApiError) as refused:
            await _show(gent, case_id)
        assert refused.value.remote_code == "decryption" and field in refused.value.message
        assert "Kanarie" not in refused.value.message and "Persoon" not in refused.value.message


async def test_a_wrong_or_exposed_key_encryption_key_is_a_clear_error_at_start_up(
        nodes: NodeFactory, tmp_path: Path) -> None:
    gent = await nodes.start("gent", 1)
    await _open(gent, PERSON)
    config = gent.config
    await nodes.stop(gent)
    other = tmp_path / "other.kek"
    KeyEncryptionKey.generate(other)
    with pytest.raises(ConfigError, match="does not match the one this database was created with"):
        await NodeServer(dataclasses.replace(config, kek_file=other)).start()
    other.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by group or others"):
        await NodeServer(dataclasses.replace(config, kek_file=other)).start()
    with pytest.raises(ConfigError, match="OLIEVLEK_TEST_KEK is not set"):
        await NodeServer(dataclasses.replace(config, kek_file=None, kek_env="OLIEVLEK_TEST_KEK")).start()
    assert config.kek_file is not None
    os.environ["OLIEVLEK_TEST_KEK"] = config.kek_file.read_text().strip()
    try:  # the same key from an environment variable works
        node = NodeServer(dataclasses.replace(config, kek_file=None, kek_env="OLIEVLEK_TEST_KEK"))
        await node.start()
        assert "OLIEVLEK_TEST_KEK" not in os.environ  # read once, then gone from the environment
        assert (await _show(node, 1)).case_show.identity.family_name == "Kanarie"
        await node.stop()
    finally:
        os.environ.pop("OLIEVLEK_TEST_KEK", None)


async def test_subject_export_gives_everything_held_and_is_logged(nodes: NodeFactory) -> None:
    import json

    gent = await nodes.start("gent", 1)
    case_id = await _open(gent, PERSON)
    r = await local(gent, local_pb2.LocalRequest(subject_export=local_pb2.SubjectExportRequest(case_id=case_id)))
    doc = json.loads(r.subject_export.document)
    assert doc["holder"] == "gent" and doc["identity"]["familyName"] == "Kanarie"
    assert doc["status"] == "open" and doc["lawful_basis"] == "default"
    assert doc["notes"] == [] and doc["phase_history"] == [] and doc["agreements"] == []
    assert doc["identity"]["nationalNumber"] == "85073003328" and doc["case"]["caseId"] == str(case_id)
    assert doc["sent_summaries"] == []
    log = (await local(gent, local_pb2.LocalRequest(access_log=local_pb2.AccessLogRequest()))).access_log.entries
    assert [e.purpose for e in log] == [local_pb2.ACCESS_PURPOSE_ACCESS_REQUEST]


async def test_phase_changes_are_dated_and_notes_are_sealed_and_logged(nodes: NodeFactory) -> None:
    gent = await nodes.start("gent", 1)
    case_id = await _open(gent, PERSON)
    await local(gent, local_pb2.LocalRequest(case_update=local_pb2.CaseUpdateRequest(
        case_id=case_id, phase=summary_pb2.PHASE_PRE_ANALYSIS, note="Gesprek met Kanarie op school")))
    with pytest.raises(LocalApiError) as closing:
        await local(gent, local_pb2.LocalRequest(case_update=local_pb2.CaseUpdateRequest(
            case_id=case_id, phase=summary_pb2.PHASE_CLOSED)))
    assert closing.value.remote_code == "use_close"
    db = gent.config.database
    files = {db, Path(f"{db}-wal"), Path(f"{db}-shm")}
    assert [h for h in scan(db.parent, {"note": b"Gesprek met"}) if h[0] in files] == []  # sealed at rest
    shown = (await _show(gent, case_id)).case_show
    assert [n.text for n in shown.notes] == ["Gesprek met Kanarie op school"] and shown.status == "open"
    [change] = shown.history
    assert (change.from_phase, change.to_phase, change.uid) == (
        summary_pb2.PHASE_FOLLOW_UP, summary_pb2.PHASE_PRE_ANALYSIS, os.getuid())
    log = (await local(gent, local_pb2.LocalRequest(access_log=local_pb2.AccessLogRequest()))).access_log.entries
    assert "notes" in log[-1].fields


async def test_agreements_are_recorded_scoped_and_withdrawn(nodes: NodeFactory) -> None:
    import time as _time

    gent = await nodes.start("gent", 1)
    case_id = await _open(gent, PERSON)
    until = int(_time.time() * 1000) + 86_400_000

    def req(**kw: object) -> local_pb2.LocalRequest:
        return local_pb2.LocalRequest(agreement=local_pb2.AgreementRequest(**kw))  # type: ignore[arg-type]

    for bad, code in ((dict(recipient_kinds=["spy"], purposes=["hit_no_hit_check"]), "bad_scope"),
                      (dict(recipient_kinds=["federal_liaison"], purposes=["hit_no_hit_check"],
                            evidence_ref="Signed by Kanarie"), "bad_evidence_ref")):
        with pytest.raises(LocalApiError) as refused:
            await local(gent, req(agreement=local_pb2.Agreement(case_id=case_id, valid_until_ms=until,
                                                                **{"evidence_ref": "gent-1", **bad})))
        assert refused.value.remote_code == code and "Kanarie" not in refused.value.message
    r = await local(gent, req(agreement=local_pb2.Agreement(
        case_id=case_id, recipient_kinds=["federal_liaison"], purposes=["hit_no_hit_check"], valid_until_ms=until,
        evidence_ref="gent-2026-0042")))
    [a] = r.agreement.agreements
    assert a.withdrawn_ms == 0 and list(a.purposes) == ["hit_no_hit_check"]
    r = await local(gent, req(agreement=local_pb2.Agreement(agreement_id=a.agreement_id), withdraw=True))
    assert r.agreement.agreements[0].withdrawn_ms > 0


async def test_an_administrator_cannot_give_themselves_a_role(nodes: NodeFactory) -> None:
    gent = await nodes.start("gent", 1)
    with pytest.raises(LocalApiError) as refused:
        await local(gent, local_pb2.LocalRequest(user_add=local_pb2.UserAddRequest(user=local_pb2.User(
            uid=os.getuid(), role=local_pb2.USER_ROLE_REGISSEUR))))
    assert refused.value.remote_code == "own_roles"


async def test_a_symlinked_or_foreign_key_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.kek"
    KeyEncryptionKey.generate(real)
    link = tmp_path / "link.kek"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="not a symlink"):
        KeyEncryptionKey.load(link, None)
    assert KeyEncryptionKey.load(real, None).check_value()  # the file itself is fine


async def test_row_binding_alone_stops_a_swap_under_the_same_key(nodes: NodeFactory) -> None:
    """Two notes of one case share its data key: only the associated data (row id) tells them apart."""
    gent = await nodes.start("gent", 1)
    case_id = await _open(gent, PERSON)
    for text in ("first note", "second note"):
        await local(gent, local_pb2.LocalRequest(case_update=local_pb2.CaseUpdateRequest(case_id=case_id, note=text)))
    await nodes.stop(gent)
    conn = sqlite3.connect(gent.config.database)
    try:
        (a,), (b,) = conn.execute("SELECT body FROM case_notes ORDER BY id").fetchall()
        conn.execute("UPDATE case_notes SET body = ? WHERE id = 1", (b,))
        conn.execute("UPDATE case_notes SET body = ? WHERE id = 2", (a,))
        conn.commit()
    finally:
        conn.close()
    gent = await nodes.start("gent", 1)
    with pytest.raises(LocalApiError) as refused:
        await _show(gent, case_id)
    assert refused.value.remote_code == "decryption" and "case_notes.body of row 1" in refused.value.message
