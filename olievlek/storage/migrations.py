"""Schema migrations: numbered SQL files per store and engine, applied in order, each in one transaction.

A store keeps its migrations as ``<package>/migrations/<engine>/NNNN_what.sql``; migration 1 is the schema
of the first release that had users (commit 395f065: broker 7, node 5, pseudonymiser 1; the witness came
later), the later files what each change since added. The applied versions are rows of
``schema_migrations``; a database that records a version this build does not know is refused - a newer
build wrote it, and running this one over it would half-use its data. Databases written before this
runner carry their version in SQLite's ``PRAGMA user_version`` (or, the witness, none at all); ``legacy``
maps what they hold onto the migration they correspond to, once, at the first start.

Only SQL: a migration that has to transform data does it in SQL, so the same file reads the same on every
machine and ``--dry-run`` can show exactly what will run.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from olievlek.errors import ConfigError

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
TABLE = "schema_migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class Migrations:
    """One store's migrations for one engine, and how to read a database from before this runner."""

    store: str
    steps: tuple[Migration, ...]
    legacy_user_version: dict[int, int] = field(default_factory=dict)  # PRAGMA user_version -> migration
    legacy_tables: tuple[str, ...] = ()  # unversioned, but these tables exist: migration 1 is in place

    @property
    def latest(self) -> int:
        return self.steps[-1].version if self.steps else 0


def load(package: str, store: str, engine: str = "sqlite", *, legacy_user_version: dict[int, int] | None = None,
         legacy_tables: tuple[str, ...] = ()) -> Migrations:
    """The migrations under ``<package>/migrations/<engine>``, numbered 1, 2, 3 ... without a gap.

    Raises:
        ConfigError: a file is misnamed or a number is missing or repeated (a packaging mistake).
    """
    folder = resources.files(package).joinpath("migrations", engine)
    steps = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        m = _FILE.match(entry.name)
        if m is None:
            raise ConfigError(f"{store} migration {entry.name}: not NNNN_name.sql")
        steps.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    if [s.version for s in steps] != list(range(1, len(steps) + 1)):
        raise ConfigError(f"{store} migrations are not numbered 1..{len(steps)}: {[s.version for s in steps]}")
    return Migrations(store, tuple(steps), legacy_user_version or {}, legacy_tables)


class _Engine:
    """What the runner needs of a connection, on SQLite (``sqlite3``) or PostgreSQL (``psycopg``, sync)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.sqlite = isinstance(conn, sqlite3.Connection)

    def tables(self) -> set[str]:
        sql = ("SELECT name FROM sqlite_master WHERE type = 'table'" if self.sqlite else
               "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {str(r[0]) for r in self.conn.execute(sql).fetchall()}

    def scalar(self, sql: str) -> Any:
        row = self.conn.execute(sql).fetchone()
        return row[0] if row else None

    def user_version(self) -> int:
        return int(self.scalar("PRAGMA user_version")) if self.sqlite else 0

    def apply(self, script: str, version: int) -> None:
        """``script`` and the version row in one transaction; on PostgreSQL under a lock, so two brokers
        starting at once apply each migration once."""
        if self.sqlite:
            try:
                self.conn.executescript(f"BEGIN; {script}\n; COMMIT;")
            except sqlite3.Error:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            return
        with self.conn.transaction():
            self.conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK})")
            self.conn.execute(_table_sql())
            if self.conn.execute(f"SELECT 1 FROM {TABLE} WHERE version = %s", (version,)).fetchone():  # noqa: S608
                return  # another process applied it while we waited for the lock
            self.conn.execute(script)


_LOCK = 0x6F6C6976  # "oliv": the advisory lock that serialises migrations of one PostgreSQL database


def current(conn: Any, m: Migrations) -> int:
    """The migration the database is at (0: empty); ``conn`` a ``sqlite3`` or ``psycopg`` connection.

    Raises:
        ConfigError: written by a newer build, or by an old one this build cannot read.
    """
    engine = _Engine(conn)
    tables = engine.tables()
    if TABLE in tables:
        found = int(engine.scalar(f"SELECT MAX(version) FROM {TABLE}") or 0)  # noqa: S608 - a constant
    elif not tables:
        return 0
    else:
        user_version = engine.user_version()
        if user_version in m.legacy_user_version:
            found = m.legacy_user_version[user_version]
        elif user_version == 0 and m.legacy_tables and set(m.legacy_tables) <= tables:
            found = 1
        else:
            raise ConfigError(f"{m.store} database: schema version {user_version or 'unversioned'} from before "
                              "migrations, which this build cannot read: keep the old build or start afresh")
    if found > m.latest:
        raise ConfigError(f"{m.store} database is at migration {found}, newer than this build's {m.latest}: "
                          "a newer build wrote it; run that build")
    return found


def pending(conn: Any, m: Migrations) -> list[Migration]:
    at = current(conn, m)
    return [s for s in m.steps if s.version > at]


def migrate(conn: Any, m: Migrations) -> list[Migration]:
    """Apply what is pending, each migration in one transaction with its version row; what was applied.

    A database from before the runner first gets the version table recording where it is, in the same
    transaction as the first migration (or alone, when nothing is pending).
    """
    engine = _Engine(conn)
    at = current(conn, m)
    todo = [s for s in m.steps if s.version > at]
    adopt = at > 0 and TABLE not in engine.tables()
    if adopt and not todo:
        engine.apply(f"{_table_sql()} {_rows_sql(range(1, at + 1))}", at)
    for i, step in enumerate(todo):
        prefix = f"{_table_sql()} {_rows_sql(range(1, at + 1))}" if adopt and i == 0 else _table_sql()
        try:
            engine.apply(f"{prefix}\n{step.sql}\n;{_rows_sql([step.version])}", step.version)
        except Exception as exc:  # sqlite3.Error or psycopg.Error: the engine rolled the transaction back
            raise ConfigError(f"{m.store} migration {step.version} ({step.name}) failed: {exc}; nothing of it "
                              "was applied") from None
    return todo


def _table_sql() -> str:
    return f"CREATE TABLE IF NOT EXISTS {TABLE} (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL);"


def _rows_sql(versions: range | list[int]) -> str:
    now = int(time.time() * 1000)
    return " ".join(f"INSERT INTO {TABLE} (version, applied_ms) VALUES ({int(v)}, {now});"  # noqa: S608 - integers
                    for v in versions)


def migrate_sqlite_file(path: Path, m: Migrations, *, dry_run: bool = False) -> tuple[int, list[Migration]]:
    """(the migration the file was at, what was applied - or, dry, would be) for an SQLite file."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        at = current(conn, m)
        return at, pending(conn, m) if dry_run else migrate(conn, m)
    finally:
        conn.close()
