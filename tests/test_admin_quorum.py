"""No administrator acts alone: a role grant waits for a second administrator who was one before it was asked.

The report: a node administrator (who may never read case contents) made a second account, gave it the
regisseur role and read identities through it. Here real local users run the real CLI against a node (as in
``test_roles.py``): the grant alone is refused or waits, the requester cannot confirm it, neither can an
administrator made after the request, and only a different administrator of before confirms it. A node
configured with a single administrator grants at once, countersigned in the grant log the data-protection
officer reads (``olievlek user grants``), which notices a changed entry.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from olievlek.broker.server import BrokerServer
from olievlek.node.server import NodeServer
from olievlek.node.store import NodeStore

from .conftest import NodeFactory
from .federations import cli
from .test_roles import GROUP, as_user, local_accounts, traversable  # noqa: F401 - traversable: a fixture
from .tools import shared_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PERSON = {"national_number": "85.07.30-033.28", "given_names": "Canary", "family_name": "Kanarie"}
ROLES = ("first", "second", "extra", "late")  # two administrators, the account they add, one made later


@pytest.fixture(scope="module")
def people(traversable: None) -> Iterator[dict[str, object]]:  # noqa: F811 - the fixture imported above
    with local_accounts("olq", ROLES) as made:
        GROUP["name"] = str(made["group"])
        yield made


class Node:
    """A node whose socket the test's local users reach, and the CLI as each of them."""

    def __init__(self, people: dict[str, object], socket: Path) -> None:
        self.uid = {r: int(people[r]) for r in ROLES}  # type: ignore[call-overload]
        self.names = {r: str(people[f"name:{r}"]) for r in ROLES}
        self.socket = str(socket)

    async def run(self, who: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``olievlek <args> --socket S`` as the local user ``who``."""
        return await as_user(self.names[who], *args, "--socket", self.socket)

    async def reads_identities(self, who: str) -> bool:
        r = await self.run(who, "case", "show", "--case", "1", "--purpose", "follow-up")
        return r.returncode == 0 and "Kanarie" in r.stdout


async def _start(nodes: NodeFactory, broker: BrokerServer, people: dict[str, object], shared: Path,
                 administrators: tuple[str, ...], **settings: object) -> tuple[Node, NodeServer]:
    sock = shared / "gent.sock"
    node = Node(people, sock)
    server = await nodes.start("gent", broker.port, socket=sock, socket_group=str(people["group"]),
                               administrators=frozenset(node.uid[a] for a in administrators), **settings)
    # The test process is the node's first regisseur, configured at install (conftest's node_config).
    r = await asyncio.to_thread(cli, "case", "open", "--socket", str(sock), "--phase", "follow-up",
                                stdin=json.dumps(PERSON))
    assert r.returncode == 0 and "case 1 opened" in r.stdout, r.stdout + r.stderr
    return node, server


def _requests_logged(server: NodeServer) -> list[tuple[int, str, str]]:
    """(uid, operation, outcome) of the node's request log."""
    with sqlite3.connect(server.config.database) as conn:
        rows = conn.execute("SELECT uid, request, outcome FROM local_requests ORDER BY id").fetchall()
    return [(int(u), str(op), str(o)) for u, op, o in rows]


@pytest.fixture
def shared() -> Iterator[Path]:
    path = shared_dir("olv-quorum-", mode=0o711)  # others pass through to the socket, cannot list
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_a_grant_waits_for_a_second_administrator_of_before(people: dict[str, object], broker: BrokerServer,
                                                                    nodes: NodeFactory, shared: Path) -> None:
    node, server = await _start(nodes, broker, people, shared, ("first", "second"))
    uid = node.uid

    # The first administrator makes the extra account regisseur: only a request, nothing granted.
    r = await node.run("first", "user", "add", "--uid", str(uid["extra"]), "--role", "regisseur")
    assert r.returncode == 0 and "role request 1" in r.stdout and "waits for another administrator" in r.stdout, \
        r.stdout + r.stderr
    assert not await node.reads_identities("extra")
    r = await node.run("extra", "case", "list")
    assert r.returncode == 2 and "is not a user of this node" in r.stderr

    # ... and cannot confirm it themselves.
    r = await node.run("first", "user", "confirm", "--request", "1")
    assert r.returncode == 2 and "[own_request]" in r.stderr and "made role request 1" in r.stderr, r.stderr
    assert not await node.reads_identities("extra")

    # An administrator made after the request (requested by one, confirmed by the other) cannot confirm it.
    r = await node.run("first", "user", "add", "--uid", str(uid["late"]), "--role", "administrator")
    assert r.returncode == 0 and "role request 2" in r.stdout, r.stdout + r.stderr
    r = await node.run("second", "user", "confirm", "--request", "2")
    assert r.returncode == 0 and f"confirmed by uid {uid['second']}" in r.stdout, r.stdout + r.stderr
    r = await node.run("late", "user", "pending")
    assert r.returncode == 0 and str(uid["extra"]) in r.stdout, r.stdout + r.stderr
    r = await node.run("late", "user", "confirm", "--request", "1")
    assert r.returncode == 2 and "[administrator_after_request]" in r.stderr, r.stderr
    assert f"uid {uid['late']} was not an administrator when role request 1 was made" in r.stderr
    assert not await node.reads_identities("extra")

    # A different administrator who was one before confirms: now the role holds.
    r = await node.run("second", "user", "confirm", "--request", "1")
    assert r.returncode == 0 and f"uid {uid['extra']} is regisseur, confirmed by uid {uid['second']}" in r.stdout, \
        r.stdout + r.stderr
    assert await node.reads_identities("extra")
    r = await node.run("second", "user", "confirm", "--request", "1")
    assert r.returncode == 2 and "[request_decided]" in r.stderr
    r = await node.run("second", "user", "pending")
    assert "no role requests wait" in r.stdout, r.stdout

    # The grant log names requester and confirmer, each entry countersigned by the node.
    r = await node.run("first", "user", "grants")
    assert r.returncode == 0 and r.stdout.count("valid") == 2 and "INVALID" not in r.stdout, r.stdout + r.stderr

    # Every refusal is in the request log with its code, like `forbidden`.
    logged = _requests_logged(server)
    assert (uid["first"], "user_confirm", "own_request") in logged
    assert (uid["late"], "user_confirm", "administrator_after_request") in logged
    assert (uid["second"], "user_confirm", "request_decided") in logged


async def test_one_administrator_cannot_grant_alone(people: dict[str, object], broker: BrokerServer,
                                                    nodes: NodeFactory, shared: Path) -> None:
    node, server = await _start(nodes, broker, people, shared, ("first",))
    r = await node.run("first", "user", "add", "--uid", str(node.uid["extra"]), "--role", "regisseur")
    assert r.returncode == 2 and "[no_second_administrator]" in r.stderr, r.stdout + r.stderr
    assert "single_administrator" in r.stderr  # says what would make it possible
    # Nor through an administrator account of their own making: that grant needs the second one too.
    r = await node.run("first", "user", "add", "--uid", str(node.uid["late"]), "--role", "administrator")
    assert r.returncode == 2 and "[no_second_administrator]" in r.stderr
    assert not await node.reads_identities("extra")
    r = await node.run("late", "user", "list")
    assert r.returncode == 2 and "is not a user of this node" in r.stderr
    assert (node.uid["first"], "user_add", "no_second_administrator") in _requests_logged(server)


async def test_an_unconfirmed_request_expires(people: dict[str, object], broker: BrokerServer, nodes: NodeFactory,
                                              shared: Path) -> None:
    node, _server = await _start(nodes, broker, people, shared, ("first", "second"), role_request_ttl_s=0.5)
    r = await node.run("first", "user", "add", "--uid", str(node.uid["extra"]), "--role", "regisseur")
    assert r.returncode == 0 and "role request 1" in r.stdout, r.stdout + r.stderr
    await asyncio.sleep(1.0)
    r = await node.run("second", "user", "confirm", "--request", "1")
    assert r.returncode == 2 and "[request_expired]" in r.stderr, r.stderr
    assert not await node.reads_identities("extra")


async def test_a_single_administrator_grants_countersigned_for_the_dpo(
        people: dict[str, object], broker: BrokerServer, nodes: NodeFactory, shared: Path, log_file: Path) -> None:
    node, server = await _start(nodes, broker, people, shared, ("first",), single_administrator=True)
    r = await node.run("first", "user", "add", "--uid", str(node.uid["extra"]), "--role", "regisseur")
    assert r.returncode == 0 and "single administrator: countersigned in the grant log" in r.stdout, \
        r.stdout + r.stderr
    assert await node.reads_identities("extra")

    # The data-protection officer (here the node's regisseur) reads the grant log: who, by whom, alone.
    r = await asyncio.to_thread(cli, "user", "grants", "--socket", node.socket)
    assert r.returncode == 0, r.stdout + r.stderr
    row = next(line for line in r.stdout.splitlines() if str(node.uid["extra"]) in line)
    assert "regisseur" in row and str(node.uid["first"]) in row and "single administrator" in row
    assert "valid" in row and "INVALID" not in row
    assert any(json.loads(line).get("event") == "user.granted_alone" for line in log_file.read_text().splitlines())
    # Checked against the node's signing certificate as the DPO holds it, too.
    r = await asyncio.to_thread(cli, "user", "grants", "--socket", node.socket,
                                "--sign-cert", str(server.config.sign_cert))
    assert r.returncode == 0 and "INVALID" not in r.stdout, r.stdout + r.stderr

    # Whoever edits the grant log afterwards (another uid, say) is caught by the countersignature.
    with sqlite3.connect(server.config.database) as conn:
        conn.execute("UPDATE role_grants SET uid = ?", (node.uid["late"],))
    r = await asyncio.to_thread(cli, "user", "grants", "--socket", node.socket)
    assert r.returncode == 1 and "INVALID" in r.stdout and "do not verify" in r.stdout, r.stdout + r.stderr


@pytest.mark.timeout(60)
async def test_a_store_of_the_previous_version_opens_with_the_role_tables(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    store = await NodeStore.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:  # as the build before migrations left it at version 6: no role tables
        conn.execute("DROP TABLE role_grants")
        conn.execute("DROP TABLE role_requests")
        conn.execute("DROP TABLE schema_migrations")
        conn.execute("PRAGMA user_version = 6")
    store = await NodeStore.open(path)
    try:
        assert await store.role_requests() == [] and await store.role_grants() == []
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2, 3]
