"""A throwaway replicated PostgreSQL for the tests: one etcd member and two PostgreSQL 15 servers under Patroni
- a primary and a synchronous standby (``synchronous_mode``), ``use_pg_rewind`` and data checksums, so a lost
primary's host rejoins as a replica - all as the unprivileged ``postgres`` user, in a directory of their own
made in the system temporary directory, on free ports, with a scope of their own. Lab timings (``ttl`` 10 s,
``loop_wait`` 2 s, ``retry_timeout`` 4 s; etcd's heartbeat 250 ms, election 2.5 s) keep a failover under 15 s.

A host is lost by killing its Patroni (its process group) and its PostgreSQL - the postmaster and every process
it started - together (Patroni starts the postmaster in a session of its own, and each PostgreSQL child is a
session of its own too): the leader key then expires in etcd and Patroni
promotes the synchronous standby, which holds every acknowledged commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .postgres import PG_USER, _free_port, bindir
from .tools import require, shared_dir

PASSWORD = "olievlek-test"  # every connection is from 127.0.0.1 and trusted; Patroni insists on one


@dataclass
class Member:
    name: str
    pg_port: int
    api_port: int
    data: Path
    config: Path
    proc: subprocess.Popen[bytes] | None = None

    def status(self) -> dict[str, object]:
        """Patroni's own view of this member (``role``: master/primary or replica; ``state``), or {} if down."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/patroni", timeout=2) as r:
                return dict(json.loads(r.read()))
        except (OSError, ValueError):
            return {}

    def is_primary(self) -> bool:
        status = self.status()
        return status.get("role") in ("master", "primary") and status.get("state") == "running"

    def is_replica(self) -> bool:
        status = self.status()
        return status.get("role") == "replica" and status.get("state") == "running"


@dataclass
class PatroniCluster:
    base: Path
    scope: str
    etcd_port: int
    members: list[Member]
    etcd: subprocess.Popen[bytes] | None = None
    lost: list[str] = field(default_factory=list)

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq's multi-host form: whichever member is the read-write primary."""
        hosts = ",".join("127.0.0.1" for _ in self.members)
        ports = ",".join(str(m.pg_port) for m in self.members)
        return (f"host={hosts} port={ports} user={PG_USER} password={PASSWORD} dbname={dbname} "
                "target_session_attrs=read-write connect_timeout=2")

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def primary(self, timeout: float = 60.0) -> Member:
        wait_until(lambda: any(m.is_primary() for m in self.members), timeout, "a primary")
        return next(m for m in self.members if m.is_primary())

    def synchronous(self, timeout: float = 60.0) -> None:
        """Wait until a synchronous standby is in place (a failover then loses no acknowledged commit)."""
        def has_sync() -> bool:
            for m in self.members:
                with contextlib.suppress(OSError, ValueError):
                    with urllib.request.urlopen(f"http://127.0.0.1:{m.api_port}/cluster", timeout=2) as r:
                        roles = [x.get("role") for x in json.loads(r.read()).get("members", [])]
                        return "sync_standby" in roles
            return False
        wait_until(has_sync, timeout, "a synchronous standby")

    def start(self, member: Member) -> None:
        log = (self.base / f"{member.name}.log").open("ab")
        # The working directory is the cluster's own: the postgres user may not enter the caller's (a CI checkout
        # in a 0700 temporary directory), and initdb and pg_ctl, run by Patroni, fail where they cannot.
        member.proc = subprocess.Popen(["runuser", "-u", PG_USER, "--", "patroni", str(member.config)],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                       cwd=self.base)

    def lose_host(self, member: Member) -> None:
        """The member's host is gone: its Patroni and its PostgreSQL are killed together, no clean-up."""
        postmaster = _postmaster(member)
        if member.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(member.proc.pid, signal.SIGKILL)
            member.proc.wait(timeout=10)
            member.proc = None
        if postmaster is not None:  # and every process it started (each PostgreSQL child is a session of its own)
            for pid in [postmaster, *_children(postmaster)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.lost.append(member.name)

    def kill_postmaster(self, member: Member) -> None:
        """kill -9 of the postmaster alone: Patroni, still running, starts it again in place."""
        postmaster = _postmaster(member)
        assert postmaster is not None, f"{member.name} runs no PostgreSQL"
        os.kill(postmaster, signal.SIGKILL)

    def new_database(self) -> str:
        """A fresh database on the primary (replicated to the standby); its multi-host DSN."""
        import psycopg

        name = f"t{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.base.glob("*.log")))


def _postmaster(member: Member) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((member.data / "postmaster.pid").read_text().splitlines()[0])
    return None


def _children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                found.append(int(stat.parent.name))
    return found


def wait_until(ok: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.2)


def _member_config(base: Path, scope: str, etcd_port: int, member: Member, bins: Path) -> dict[str, object]:
    return {
        "scope": scope, "namespace": "/olievlek-test/", "name": member.name,
        "restapi": {"listen": f"127.0.0.1:{member.api_port}", "connect_address": f"127.0.0.1:{member.api_port}"},
        "etcd3": {"hosts": [f"127.0.0.1:{etcd_port}"]},
        "bootstrap": {
            "dcs": {"ttl": 10, "loop_wait": 2, "retry_timeout": 4, "maximum_lag_on_failover": 1 << 20,
                    "synchronous_mode": True,
                    "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                   "parameters": {"wal_log_hints": "on", "max_wal_senders": 5,
                                                  "max_replication_slots": 5, "hot_standby": "on"}}},
            "initdb": [{"encoding": "UTF8"}, "data-checksums", {"auth": "trust"}],
            "pg_hba": ["local all all trust", "host all all 127.0.0.1/32 trust",
                       "host replication all 127.0.0.1/32 trust"],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{member.pg_port}", "connect_address": f"127.0.0.1:{member.pg_port}",
            "data_dir": str(member.data), "bin_dir": str(bins), "pgpass": str(base / f"pgpass-{member.name}"),
            "authentication": {"superuser": {"username": PG_USER, "password": PASSWORD},
                               "replication": {"username": PG_USER, "password": PASSWORD},
                               "rewind": {"username": PG_USER, "password": PASSWORD}},
            "parameters": {"unix_socket_directories": str(base), "fsync": "off"},
        },
    }


@contextlib.contextmanager
def patroni_cluster(members: int = 2) -> Iterator[PatroniCluster]:
    """A running cluster with a primary and a synchronous standby; everything stopped and removed after."""
    require("patroni", "etcd")
    bins = bindir()
    base = shared_dir("olv-patroni-", owner=PG_USER, mode=0o700)
    scope = f"olv-{secrets.token_hex(4)}"
    cluster = PatroniCluster(base, scope, _free_port(), [])
    peer = _free_port()
    try:
        etcd_log = (base / "etcd.log").open("ab")
        cluster.etcd = subprocess.Popen(
            ["runuser", "-u", PG_USER, "--", "etcd", "--name", "e1", "--data-dir", str(base / "etcd"),
             "--listen-client-urls", f"http://127.0.0.1:{cluster.etcd_port}",
             "--advertise-client-urls", f"http://127.0.0.1:{cluster.etcd_port}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls",
             f"http://127.0.0.1:{peer}", "--initial-cluster", f"e1=http://127.0.0.1:{peer}",
             "--initial-cluster-state", "new", "--heartbeat-interval", "250", "--election-timeout", "2500"],
            stdin=subprocess.DEVNULL, stdout=etcd_log, stderr=etcd_log, start_new_session=True, cwd=base)
        for i in range(1, members + 1):
            m = Member(f"pg{i}", _free_port(), _free_port(), base / f"pg{i}", base / f"pg{i}.yml")
            m.config.write_text(yaml.safe_dump(_member_config(base, scope, cluster.etcd_port, m, bins)))
            shutil.chown(m.config, PG_USER)
            cluster.members.append(m)
        cluster.start(cluster.members[0])
        cluster.primary(90)
        for m in cluster.members[1:]:
            cluster.start(m)
        wait_until(lambda: all(m.is_replica() for m in cluster.members[1:]), 90, "running replicas")
        cluster.synchronous(60)
        yield cluster
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.logs()}") from None
    finally:
        for m in cluster.members:
            cluster.lose_host(m)
        if cluster.etcd is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(cluster.etcd.pid, signal.SIGKILL)
            cluster.etcd.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)
