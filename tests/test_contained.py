"""A misbehaving operator or a rolled-back policy is contained: operator keys come from the bundle, and
versions never go back at a node or a pseudonymiser (real operators over mTLS, real nodes, the CLI)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from olievlek.broker.server import BrokerServer
from olievlek.node.server import NodeServer
from olievlek.node.store import NodeStore
from olievlek.pseudonymiser.server import PseudonymiserServer
from olievlek.pseudonymiser.service import keygen
from olievlek.pseudonymiser.storage.store import PseudonymiserStore

from olievlek import voprf
from olievlek.identity import OrgId, OrgIdentity, OrgKind
from olievlek.policy.rollback import RollbackError
from olievlek.policy.signing import load_signing_key, sign_bundle

from .conftest import NodeFactory, Pki, operator_config, start_operators
from .federations import cli

pytestmark = pytest.mark.timeout(120)
PERSON = {"national_number": "85073003328", "given_names": "Canary", "family_name": "Vogel"}


@pytest.fixture
def short() -> Iterator[Path]:
    """Unix sockets need short paths."""
    with tempfile.TemporaryDirectory(prefix="olv-c-") as d:
        yield Path(d)


async def _open_case(node: NodeServer) -> tuple[int, str]:
    """``olievlek case open`` as a regisseur does: identity on stdin."""
    r = await asyncio.to_thread(cli, "--lang", "en", "case", "open", "--socket", str(node.config.socket),
                                "--phase", "follow-up", stdin=json.dumps(PERSON))
    return r.returncode, r.stdout + r.stderr


async def _operator(pki: Pki, workdir: Path, share: int, *, store_from: Path | None = None,
                    signer: str | None = None) -> PseudonymiserServer:
    """An operator serving share ``share``: its own fresh key (a rogue key space), or a copy of another
    operator's store, signing as ``signer`` (a CA-issued pseudonymiser identity)."""
    cfg = operator_config(pki, workdir, share)
    database = workdir / f"op-{share}-{signer or 'own'}.sqlite"
    if store_from is not None:
        shutil.copyfile(store_from, database)
    else:
        store = await PseudonymiserStore.open(database)
        for domain in (1, 2):
            await keygen(store, domain, 1)
        await store.close()
    if signer is not None:
        org = pki.org(signer)
        cfg = dataclasses.replace(cfg, sign_cert=org.sign_cert, sign_key=org.sign_key)
    server = PseudonymiserServer(dataclasses.replace(cfg, database=database))
    await server.start()
    return server


async def _node_with(pki: Pki, tmp_path: Path, short: Path, broker: BrokerServer,
                     ops: list[PseudonymiserServer], org: str = "gent") -> tuple[NodeFactory, NodeServer]:
    factory = NodeFactory(pki, tmp_path, (f"127.0.0.1:{ops[0].port}", f"127.0.0.1:{ops[1].port}"))
    node = await factory.start(org, broker.port, socket=short / f"{org}.sock")
    return factory, node


async def test_a_rogue_key_space_and_a_signer_not_named_for_its_share_are_refused(
        pki: Pki, tmp_path: Path, short: Path, policy_dir: Path, broker: BrokerServer,
        operators: list[PseudonymiserServer]) -> None:
    # Both operators' certificates are the federation's, but their shares are not the bundle's key.
    rogue = [await _operator(pki, tmp_path, share) for share in (1, 2)]
    # An operator the CA certified, answering for share 1 with share 1's own scalar.
    pki.ca.issue_org(OrgIdentity(OrgKind.PSEUDONYMISER, OrgId("rogue")))
    stolen = await _operator(pki, tmp_path, 1, store_from=operators[0].config.database, signer="rogue")
    # Operator 2 answering for share 1 (and 1 for 2): each signs the other's share.
    crossed = [await _operator(pki, tmp_path, 1, store_from=operators[0].config.database, signer="pseudonymiser-2"),
               await _operator(pki, tmp_path, 2, store_from=operators[1].config.database, signer="pseudonymiser-1")]
    try:
        cases = [(rogue, "do not add up to the bundle's key for domain routing epoch 1"),
                 ([stolen, operators[1]], "pseudonymiser/rogue answered for share 1, which the bundle gives to "
                                          "pseudonymiser/pseudonymiser-1"),
                 (crossed, "pseudonymiser/pseudonymiser-2 answered for share 1")]
        for (ops, words), org in zip(cases, ("gent", "antwerpen", "leuven"), strict=True):
            factory, node = await _node_with(pki, tmp_path, short, broker, ops, org)
            code, text = await _open_case(node)
            assert code != 0 and words in text, text
            assert PERSON["family_name"] not in text and PERSON["national_number"] not in text
            await factory.stop(node)
            store = await NodeStore.open(node.config.database)
            assert await store.cases() == [] and await store.pinned_keys() == [], "nothing under a foreign key"
            await store.close()
        # Positive control: the bundle's operators give a pseudonym, and the case opens.
        factory, node = await _node_with(pki, tmp_path, short, broker, operators, "mechelen")
        code, text = await _open_case(node)
        assert code == 0, text
        await factory.stop(node)
    finally:
        for s in [*rogue, stolen, *crossed]:
            await s.stop()


async def test_a_pinned_key_that_differs_from_the_bundles_raises_the_alarm_at_start(
        pki: Pki, tmp_path: Path, short: Path, policy_dir: Path, broker: BrokerServer,
        operators: list[PseudonymiserServer], log_file: Path) -> None:
    # A node that pinned a rogue operator's key on first use (before the bundle named the keys).
    (tmp_path / "gent").mkdir()
    store = await NodeStore.open(tmp_path / "gent" / "node.sqlite")
    rogue_key = voprf.mul_base(voprf.random_scalar())
    await store.pin_key(1, 1, rogue_key)
    await store.close()
    factory, node = await _node_with(pki, tmp_path, short, broker, operators)
    alarms = node.metrics.registry.get_sample_value("olievlek_node_audit_alarms_total",
                                                    {"reason": "pseudonym_key_differs"})
    await factory.stop(node)
    assert alarms == 1
    lines = [json.loads(x) for x in log_file.read_text().splitlines() if "audit.alarm" in x]
    assert [(x["reason"], x["domain"], x["epoch"]) for x in lines] == [("pseudonym_key_differs", "routing", 1)]
    # Positive control: a node whose pinned key is the bundle's starts without an alarm.
    factory, node = await _node_with(pki, tmp_path, short, broker, operators, org="antwerpen")
    code, text = await _open_case(node)  # the node keeps the key it used: the bundle's
    assert code == 0, text
    await factory.stop(node)
    factory, node = await _node_with(pki, tmp_path, short, broker, operators, org="antwerpen")
    assert not node.metrics.registry.get_sample_value("olievlek_node_audit_alarms_total",
                                                      {"reason": "pseudonym_key_differs"})
    await factory.stop(node)


def _bump_bundle(fed: Path, version: int) -> None:
    """The administrators sign a new bundle version (both keys of the 2-of-2 root)."""
    meta = fed / "bundle" / "bundle.yaml"
    doc = yaml.safe_load(meta.read_text())
    doc["version"] = version
    meta.write_text(yaml.safe_dump(doc, sort_keys=False))
    for i in (1, 2):
        sign_bundle(fed / "bundle", load_signing_key(fed / "admins" / f"admin{i}.key"))


def _rotate_root(fed: Path) -> None:
    """``olievlek policy root rotate``: root version 2 under the same administrators."""
    keys = [str(fed / "admins" / f"admin{i}") for i in (1, 2)]
    r = cli("policy", "root", "rotate", "--roots", str(fed / "roots"),
            *(a for k in keys for a in ("--key", k + ".pub")),
            *(a for k in keys for a in ("--sign-with", k + ".key")))
    assert r.returncode == 0, r.stdout + r.stderr


async def test_versions_never_go_back_at_a_node_or_a_pseudonymiser(
        pki: Pki, tmp_path: Path, short: Path, policy_dir: Path, broker: BrokerServer) -> None:
    fed = policy_dir
    v1 = tmp_path / "bundle-v1"
    shutil.copytree(fed / "bundle", v1)
    ops = await start_operators(pki, tmp_path)  # accept bundle 1 under root 1
    factory, node = await _node_with(pki, tmp_path, short, broker, ops)
    await factory.stop(node)
    for s in ops:
        await s.stop()
    _bump_bundle(fed, 2)
    _rotate_root(fed)
    ops = await start_operators(pki, tmp_path)  # a restart: bundle 2 under root 2 accepted
    factory, node = await _node_with(pki, tmp_path, short, broker, ops)
    await factory.stop(node)
    for s in ops:
        await s.stop()

    shutil.rmtree(fed / "bundle")
    shutil.copytree(v1, fed / "bundle")  # the older, validly signed bundle back
    with pytest.raises(RollbackError, match="bundle flanders version 1 is older than version 2 accepted before"):
        await start_operators(pki, tmp_path)
    with pytest.raises(RollbackError, match="bundle flanders version 1 is older than version 2 accepted before"):
        await factory.start("gent", broker.port, socket=short / "gent.sock")

    _bump_bundle(fed, 3)
    (fed / "roots" / "2.root.json").unlink()  # root 1 alone verifies the chain again
    with pytest.raises(RollbackError, match="root version 1 is older than root version 2 accepted before"):
        await start_operators(pki, tmp_path)
    with pytest.raises(RollbackError, match="root version 1 is older than root version 2 accepted before"):
        await factory.start("gent", broker.port, socket=short / "gent.sock")
    # Positive control: an operator and a node that never accepted root 2 start under root 1 and bundle 3.
    fresh = PseudonymiserServer(dataclasses.replace(operator_config(pki, tmp_path, 1),
                                                    database=tmp_path / "fresh-operator.sqlite"))
    await fresh.start()
    await fresh.stop()
    node = await factory.start("antwerpen", broker.port, socket=short / "antwerpen.sock")
    await factory.stop(node)
