"""Users, roles and need-to-know at a node, with real local users running the real CLI.

The test creates a group and four users (regisseur, table member, administrator, stranger), serves the
node's socket to that group, and runs `olievlek` as each of them through ``setpriv``. It
needs root and useradd (CI runs as root) and an interpreter those users can run; otherwise it cannot run
(a failure under CI, ``tests/tools.py``) and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from olievlek.broker.server import BrokerServer

from .conftest import NodeFactory
from .tools import require, require_root, shared_dir, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PERSON = {"national_number": "85.07.30-033.28", "given_names": "Canary", "family_name": "Kanarie"}
SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
# Debian's interpreter of the same version reaches our packages when the venv's own (under /root) cannot.
BOOT = (f"import site, sys; site.addsitedir({str(SITE)!r}); from olievlek.cli.app import run; "
        "sys.argv[0] = 'olievlek'; run()")


def _sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def traversable() -> Iterator[None]:
    """Other users must reach the checkout and the venv (a clean clone may sit in a 0700 temporary
    directory): add search permission (o+x, never read) to the folders above them, and take it back after."""
    changed: list[tuple[Path, int]] = []
    for folder in {*REPO.parents, REPO, *SITE.parents}:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
            changed.append((folder, mode))
    try:
        yield
    finally:
        for folder, mode in changed:
            folder.chmod(mode)


@contextlib.contextmanager
def local_accounts(prefix: str, roles: tuple[str, ...]) -> Iterator[dict[str, int]]:
    """A group and one local user per role (named ``<prefix><pid><role[:3]>``), removed afterwards: uid per
    role, ``group``, and ``name:<role>`` per role."""
    require("useradd", "groupadd")
    require_root("the test creates local users")
    tag = f"{prefix}{os.getpid() % 100000}"
    group = f"{tag}g"
    names = {role: f"{tag}{role[:3]}" for role in roles}
    if _sh("groupadd", group).returncode != 0:
        unavailable(f"cannot create a group here: {_sh('groupadd', group).stderr.strip()}")
    try:
        for name in names.values():
            r = _sh("useradd", "-M", "-N", "-g", group, "-s", "/usr/sbin/nologin", name)
            if r.returncode != 0:
                unavailable(f"cannot create local users here: {r.stderr.strip()}")
        uids = {role: int(_sh("id", "-u", name).stdout) for role, name in names.items()}
        yield {**uids, "group": group, **{f"name:{k}": v for k, v in names.items()}}  # type: ignore[dict-item]
    finally:
        for name in names.values():
            _sh("userdel", name)
        _sh("groupdel", group)


@pytest.fixture(scope="module")
def accounts(traversable: None) -> Iterator[dict[str, int]]:
    with local_accounts("olv", ("regisseur", "table", "admin", "stranger")) as made:
        yield made


GROUP: dict[str, str] = {}


def _as(user: str) -> list[str]:
    """Run as ``user`` with the shared group (the parent's groups would be kept unless told) - through
    setpriv, not subprocess's ``user=``: that makes Python fork this multithreaded, gRPC-serving process
    instead of spawning, and gRPC's fork handlers then sometimes crash the child before it runs."""
    return ["setpriv", f"--reuid={user}", f"--regid={GROUP['name']}", f"--groups={GROUP['name']}", "--"]


def _interpreter(user: str) -> list[str]:
    why = []
    for candidate in ([sys.executable, "-m", "olievlek"], ["/usr/bin/python3", "-c", BOOT]):
        try:
            r = subprocess.run([*_as(user), *candidate, "--help"], capture_output=True, text=True, timeout=60,
                               check=False, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
        except OSError as exc:  # not executable by that user (e.g. an interpreter under /root)
            why.append(f"{candidate[0]}: {exc}")
            continue
        if r.returncode == 0:
            return candidate
        why.append(f"{candidate[0]}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    unavailable(f"no Python interpreter with olievlek's packages is runnable by the local user {user}: "
                + " | ".join(why))


_found: dict[str, list[str]] = {}


async def as_user(user: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as another local user, in a thread (the node under test serves on this event loop)."""
    return await asyncio.to_thread(_run_as, user, *args, stdin=stdin)


def _run_as(user: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if user not in _found:
        _found[user] = _interpreter(user)
    return subprocess.run([*_as(user), *_found[user], *args],
                          input=stdin, capture_output=True, text=True,
                          timeout=60, check=False, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "COLUMNS": "200",
                                                          "OLIEVLEK_LANG": "en"})


async def test_roles_and_need_to_know_through_the_cli(accounts: dict[str, object], broker: BrokerServer,
                                                       nodes: NodeFactory) -> None:
    names = {k.split(":")[1]: str(v) for k, v in accounts.items() if k.startswith("name:")}
    GROUP["name"] = str(accounts["group"])
    uid = {k: int(v) for k, v in accounts.items() if not k.startswith("name:") and k != "group"}  # type: ignore[call-overload]
    shared = shared_dir("olv-roles-", mode=0o711)  # others may pass through to the socket, not list
    try:
        sock = shared / "gent.sock"
        await nodes.start("gent", broker.port, socket=sock, socket_group=str(accounts["group"]),
                          administrators=frozenset({uid["admin"]}),
                          users=((uid["regisseur"], "regisseur", ""), (uid["table"], "table-member", "police")))
        s = str(sock)
        r = await as_user(names["regisseur"], "case", "open", "--socket", s, "--phase", "follow-up",
                    stdin=json.dumps(PERSON))
        assert r.returncode == 0 and "case 1 opened" in r.stdout, r.stdout + r.stderr

        # A table member sees no case they are not assigned to (and cannot tell it exists).
        r = await as_user(names["table"], "case", "list", "--socket", s)
        assert "no cases" in r.stdout, r.stdout + r.stderr
        r = await as_user(names["table"], "case", "show", "--socket", s, "--case", "1", "--purpose", "table-meeting")
        assert r.returncode == 2 and "no case 1 that you are assigned to" in r.stderr and "Kanarie" not in r.stdout
        r = await as_user(names["table"], "case", "open", "--socket", s, stdin=json.dumps(PERSON))
        assert r.returncode == 2 and "may not case_open" in r.stderr

        r = await as_user(names["regisseur"], "case", "assign", "--socket", s, "--case", "1",
                          "--uid", str(uid["table"]))
        assert r.returncode == 0 and str(uid["table"]) in r.stdout, r.stdout + r.stderr
        r = await as_user(names["table"], "case", "show", "--socket", s, "--case", "1", "--purpose", "table-meeting")
        assert r.returncode == 0 and "Kanarie" in r.stdout, r.stdout + r.stderr

        # The administrator manages users and reads the access log, never case contents.
        r = await as_user(names["admin"], "case", "show", "--socket", s, "--case", "1", "--purpose", "supervision")
        assert r.returncode == 2 and "forbidden" in r.stderr and "Kanarie" not in r.stdout
        r = await as_user(names["admin"], "case", "list", "--socket", s)
        assert r.returncode == 2 and "forbidden" in r.stderr
        r = await as_user(names["admin"], "user", "list", "--socket", s)
        assert r.returncode == 0 and str(uid["table"]) in r.stdout and "table-member" in r.stdout
        r = await as_user(names["admin"], "case", "access-log", "--socket", s)
        assert r.returncode == 0 and str(uid["table"]) in r.stdout and "table-meeting" in r.stdout
        assert str(uid["admin"]) not in r.stdout  # the refused read opened nothing, so logged no access

        # Someone who is no user of the node gets nothing but the reason.
        r = await as_user(names["stranger"], "case", "list", "--socket", s)
        assert r.returncode == 2 and "is not a user of this node" in r.stderr
        r = await as_user(names["regisseur"], "user", "add", "--socket", s, "--uid", str(uid["stranger"]),
                    "--role", "regisseur")
        assert r.returncode == 2 and "may not user_add" in r.stderr
        # The node's only administrator cannot make another account regisseur on their own (the report:
        # an administrator read identities through a second account).
        r = await as_user(names["admin"], "user", "add", "--socket", s, "--uid", str(uid["stranger"]),
                          "--role", "regisseur")
        assert r.returncode == 2 and "no_second_administrator" in r.stderr, r.stdout + r.stderr
        r = await as_user(names["stranger"], "case", "list", "--socket", s)
        assert r.returncode == 2 and "is not a user of this node" in r.stderr
    finally:
        for n in list(nodes.running):
            await nodes.stop(n)
        shutil.rmtree(shared, ignore_errors=True)
