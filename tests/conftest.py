"""Shared fixtures: a throwaway federation PKI, in-process broker and nodes on loopback.

Everything is real: the PKI is our own ``olievlek.pki`` code, servers are
grpcio aio servers with mTLS on 127.0.0.1 port 0, stores are SQLite files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os

# Tests read the English texts; the Dutch ones (the default for users) are tested where they are shown.
os.environ["OLIEVLEK_LANG"] = "en"
import random
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from olievlek.broker.config import BrokerConfig
from olievlek.broker.server import BrokerServer
from olievlek.cli.federation import operator_key_entry, provision_policy, witness_entry
from olievlek.node.config import NodeConfig
from olievlek.node.server import NodeServer
from olievlek.pseudonymiser.config import PseudonymiserConfig
from olievlek.pseudonymiser.server import PseudonymiserServer
from olievlek.pseudonymiser.service import keygen
from olievlek.pseudonymiser.storage.store import PseudonymiserStore

from olievlek import logs
from olievlek.fieldcrypt import KeyEncryptionKey
from olievlek.identity import OrgId, OrgIdentity, OrgKind
from olievlek.pki import CertificateAuthority, OrgCredentials
from olievlek.policy.signing import keygen as keygen_log
from olievlek.pseudonym import domain_name
from olievlek.transport import TlsFiles

from .no_skips import pytest_sessionfinish  # noqa: F401 - the hook: under CI, any skip fails the run
from .postgres import postgres_cluster  # noqa: F401 - the session's throwaway PostgreSQL cluster

settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent
WITNESS = "witness-1"
WITNESS_IDENTITY = OrgIdentity(OrgKind.WITNESS, OrgId(WITNESS))  # the test federation's witness
WITNESS_KEY_NAME = "witness.test/olievlek"
FLANDERS = REPO / "policies" / "flanders"
ORGS = ("gent", "antwerpen", "leuven")


@pytest.fixture(autouse=True)
def _seeded_random(request: pytest.FixtureRequest) -> None:
    seed = int(os.environ.get("OLIEVLEK_TEST_SEED", "20261129"))
    random.seed(seed)
    print(f"random seed {seed} ({request.node.nodeid})")


@pytest.fixture(autouse=True, scope="session")
def _json_logs() -> None:
    logs.configure(json=True)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """Route this test's structured logs to a file it can read (and scan)."""
    path = tmp_path / "test-logs.jsonl"
    with path.open("w") as f:
        logs.configure(json=True, stream=f)
        try:
            yield path
        finally:
            logs.configure(json=True)


@dataclass
class Pki:
    """A test federation's PKI directory and credentials."""

    root: Path
    ca: CertificateAuthority

    def org(self, org_id: str) -> OrgCredentials:
        d = self.root / "orgs" / org_id
        return OrgCredentials(d / "tls.pem", d / "tls.key", d / "sign.pem", d / "sign.key")

    def tls(self, org_id: str) -> TlsFiles:
        c = self.org(org_id)
        return TlsFiles(self.root / "ca.pem", c.tls_cert, c.tls_key)


def make_pki(root: Path) -> Pki:
    ca = CertificateAuthority.init(root)
    ca.issue_server("broker", ["localhost", "127.0.0.1"])
    for org in ORGS:
        ca.issue_org(OrgIdentity(OrgKind.MUNICIPALITY, OrgId(org)))
    ca.issue_org(OrgIdentity(OrgKind.JUSTICE_HOUSE, OrgId("jh-antwerpen")))
    ca.issue_org(OrgIdentity(OrgKind.FEDERAL_LIAISON, OrgId("fed-liaison")))
    ca.issue_org(OrgIdentity(OrgKind.MONITOR, OrgId("vvsg")))
    ca.issue_org(OrgIdentity(OrgKind.MUNICIPALITY, OrgId("mechelen")))
    ca.issue_org(OrgIdentity(OrgKind.MUNICIPALITY, OrgId("livc-zennevallei")))  # serves three NIS codes
    for share in (1, 2):
        ca.issue_server(f"pseudonymiser-{share}", ["localhost", "127.0.0.1"])
        ca.issue_org(OrgIdentity(OrgKind.PSEUDONYMISER, OrgId(f"pseudonymiser-{share}")))
    ca.issue_org(WITNESS_IDENTITY)
    ca.issue_server(WITNESS, ["localhost", "127.0.0.1"])  # its tlog-witness HTTPS endpoint
    return Pki(root, ca)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def policy_dir(tmp_path: Path, pki: Pki) -> Path:
    """A signed copy of the default bundle with its roots (and the test PKI's witness), under
    tmp_path/federation."""
    provision_policy(tmp_path / "federation", FLANDERS,
                     witnesses=[witness_entry(WITNESS_IDENTITY, WITNESS_KEY_NAME, pki.org(WITNESS).sign_cert)],
                     operator_keys=operator_keys(tmp_path))
    keygen_log(tmp_path / "federation" / "log")
    return tmp_path / "federation"


def operator_keys(workdir: Path, epoch: int = 1) -> list[dict[str, object]]:
    """Each operator generates its routing and monitoring shares in its own store (as ``start_operators`` will
    open it); the bundle entries name their sums. In a thread: a sync fixture must not touch the test's loop."""
    async def gen() -> list[dict[str, object]]:
        points: dict[int, list[bytes]] = {}
        for share in (1, 2):
            store = await PseudonymiserStore.open(workdir / f"pseudonymiser-{share}" / "store.sqlite")
            for domain in (1, 2):
                points.setdefault(domain, []).append((await keygen(store, domain, epoch)).public)
            await store.close()
        holders = [f"pseudonymiser/pseudonymiser-{share}" for share in (1, 2)]
        return [operator_key_entry(domain_name(d), epoch, p, holders) for d, p in points.items()]
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, gen()).result()


def broker_config(pki: Pki, workdir: Path, listen: str = "127.0.0.1:0") -> BrokerConfig:
    return BrokerConfig(
        listen=listen,
        tls=TlsFiles(pki.root / "ca.pem", pki.root / "servers/broker/tls.pem", pki.root / "servers/broker/tls.key"),
        crl=pki.root / "crl.pem",
        bundle=workdir / "federation" / "bundle",
        roots=workdir / "federation" / "roots",
        database=workdir / "broker" / "broker.sqlite",
        log_key=workdir / "federation" / "log.key",
        ready_file=None,
    )


def node_config(pki: Pki, workdir: Path, org: str, broker_port: int, operators: tuple[str, str]) -> NodeConfig:
    c = pki.org(org)
    kek = workdir / org / "kek.hex"
    if not kek.exists():
        KeyEncryptionKey.generate(kek)
    return NodeConfig(
        org_id=org, kind=OrgKind.MUNICIPALITY, broker=(f"127.0.0.1:{broker_port}",),
        tls=TlsFiles(pki.root / "ca.pem", c.tls_cert, c.tls_key), sign_cert=c.sign_cert, sign_key=c.sign_key,
        crl=pki.root / "crl.pem", bundle=workdir / "federation" / "bundle",
        roots=workdir / "federation" / "roots", database=workdir / org / "node.sqlite",
        log_public_key=workdir / "federation" / "log.pub",
        socket=workdir / org / "node.sock", pseudonymisers=operators, ready_file=None, kek_file=kek,
        administrators=frozenset({os.getuid()}), users=((os.getuid(), "regisseur", ""),),
    )


def operator_config(pki: Pki, workdir: Path, share: int, broker_port: int | None = None) -> PseudonymiserConfig:
    server = pki.root / "servers" / f"pseudonymiser-{share}"
    org = pki.org(f"pseudonymiser-{share}")
    return PseudonymiserConfig(
        org_id=f"pseudonymiser-{share}", share=share, listen="127.0.0.1:0",
        server_tls=TlsFiles(pki.root / "ca.pem", server / "tls.pem", server / "tls.key"),
        client_tls=TlsFiles(pki.root / "ca.pem", org.tls_cert, org.tls_key),
        sign_cert=org.sign_cert, sign_key=org.sign_key, crl=pki.root / "crl.pem",
        bundle=workdir / "federation" / "bundle", roots=workdir / "federation" / "roots",
        database=workdir / f"pseudonymiser-{share}" / "store.sqlite",
        broker=(f"127.0.0.1:{broker_port}",) if broker_port else (), report_interval_s=3600, ready_file=None,
    )


async def start_operators(pki: Pki, workdir: Path, broker_port: int | None = None) -> list[PseudonymiserServer]:
    """Two operators, each generating its own routing and monitoring shares first."""
    servers = []
    for share in (1, 2):
        cfg = operator_config(pki, workdir, share, broker_port)
        store = await PseudonymiserStore.open(cfg.database)
        for domain in (1, 2):  # generated with the bundle (``operator_keys``) unless the test made no bundle keys
            if await store.active_share(domain) is None:
                await keygen(store, domain, 1)
        await store.close()
        server = PseudonymiserServer(cfg)
        await server.start()
        servers.append(server)
    return servers


@pytest.fixture
async def operators(pki: Pki, tmp_path: Path, policy_dir: Path) -> AsyncIterator[list[PseudonymiserServer]]:
    servers = await start_operators(pki, tmp_path)
    yield servers
    for s in servers:
        await s.stop()


@pytest.fixture
async def broker(pki: Pki, tmp_path: Path, policy_dir: Path) -> AsyncIterator[BrokerServer]:
    server = BrokerServer(broker_config(pki, tmp_path))
    await server.start()
    yield server
    await server.stop(0)


class NodeFactory:
    """Starts in-process nodes and stops them all at teardown."""

    def __init__(self, pki: Pki, workdir: Path, operators: tuple[str, str]) -> None:
        self.pki, self.workdir, self.operators = pki, workdir, operators
        self.running: list[NodeServer] = []

    async def start(self, org: str, broker_port: int, **settings: Any) -> NodeServer:
        """An in-process node; ``settings`` override NodeConfig fields (keepalive, grace, ...)."""
        (self.workdir / org).mkdir(parents=True, exist_ok=True)
        config = dataclasses.replace(node_config(self.pki, self.workdir, org, broker_port, self.operators), **settings)
        node = NodeServer(config)
        await node.start()
        self.running.append(node)
        return node

    async def stop(self, node: NodeServer) -> None:
        await node.stop()
        self.running.remove(node)


@pytest.fixture
async def nodes(pki: Pki, tmp_path: Path, operators: list[PseudonymiserServer],
                policy_dir: Path) -> AsyncIterator[NodeFactory]:
    factory = NodeFactory(pki, tmp_path, (f"127.0.0.1:{operators[0].port}", f"127.0.0.1:{operators[1].port}"))
    yield factory
    for node in list(factory.running):
        await factory.stop(node)
