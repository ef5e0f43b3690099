"""A throwaway PostgreSQL cluster for the tests: Debian's PostgreSQL 15 binaries (never from PATH), run as
the unprivileged ``postgres`` user (PostgreSQL refuses root, and CI runs as root), data and socket in a
directory made in the system temporary directory and given to that user, on a free port (never 5432, where
Debian's own cluster may live). One cluster per test session; each test gets a database of its own."""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .tools import shared_dir, unavailable

PG_USER = "postgres"
_names = itertools.count(1)


def bindir() -> Path:
    for candidate in (Path("/usr/lib/postgresql/15/bin"),):
        if (candidate / "initdb").exists():
            return candidate
    try:
        found = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True,
                                    timeout=10).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        unavailable("needs the Debian package postgresql (PostgreSQL 15): make test installs it as root")
    if not (found / "initdb").exists():
        unavailable(f"pg_config names {found}, which has no initdb: install the Debian package postgresql")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    return port if port != 5432 else _free_port()


def _as_postgres(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", PG_USER, "--", *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


@dataclass(frozen=True)
class Cluster:
    socket_dir: Path
    port: int
    bins: Path
    data: Path

    def crash(self) -> None:
        """As a power cut: no shutdown checkpoint; in-flight transactions are lost."""
        r = _as_postgres(self.bins / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        assert r.returncode == 0, r.stdout + r.stderr

    def start(self, settings: str = "") -> None:
        """``settings``: more ``-c name=value`` options, after (and so over) the defaults."""
        r = _as_postgres(self.bins / "pg_ctl", "-D", self.data, "-l", self.socket_dir / "log", "-w", "-t", "60",
                         "-o", f"-p {self.port} -k {self.socket_dir} -c listen_addresses='' -c fsync=off {settings}",
                         "start")
        assert r.returncode == 0, r.stdout + r.stderr + (self.socket_dir / "log").read_text(errors="replace")

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user={PG_USER} dbname={dbname}"

    def new_database(self) -> str:
        """A fresh, empty database; its connection string."""
        import psycopg

        name = f"t{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.conninfo(name)


@contextlib.contextmanager
def throwaway_cluster(prefix: str, start: bool = True) -> Iterator[Cluster]:
    """A new cluster in a directory of its own (``start=False``: initialised only, for the caller to set up and
    start); stopped as by a power cut and removed afterwards."""
    bins = bindir()
    base = shared_dir(prefix, owner=PG_USER, mode=0o700)
    cluster = Cluster(base, _free_port(), bins, base / "data")
    try:
        r = _as_postgres(bins / "initdb", "-D", cluster.data, "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-sync")
        assert r.returncode == 0, r.stdout + r.stderr
        if start:
            cluster.start()
        yield cluster
    finally:
        _as_postgres(bins / "pg_ctl", "-D", cluster.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        unavailable("needs root to run PostgreSQL as its own unprivileged user (CI runs as root)")
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        unavailable("no postgres user: install the Debian package postgresql")
    with throwaway_cluster("olv-pg-") as cluster:
        yield cluster
