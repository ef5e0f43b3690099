"""SQLite plumbing shared by every service: one connection, WAL, explicit transactions.

Settings, asserted on every connection at start-up:
- ``journal_mode=WAL``: readers do not block the writer, and a crash leaves
  either the old or the new state;
- ``synchronous=FULL``: a committed transaction survives power loss, which is
  what lets the broker answer a receipt only after its commit;
- ``foreign_keys=ON``.

Each service owns one writer connection and serialises transactions on it
with a lock, so statements of two coroutines never interleave inside one
transaction; reads outside a transaction go to a second, read-only
connection, which WAL lets run while a write transaction is open (a reader
sees the last committed state). Nothing inside ``transaction()`` may await
the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from olievlek import logs
from olievlek.errors import ConfigError
from olievlek.storage.migrations import Migrations, migrate_sqlite_file

Row = tuple[Any, ...]
T = TypeVar("T")
Migration = Callable[[sqlite3.Connection], None]  # takes a file from version n to n + 1, in its transaction


class Txn:
    """A transaction in progress; only statements, no network."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns lastrowid."""
        async with self._conn.execute(sql, params) as cur:
            return int(cur.lastrowid or 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the raw connection inside SQLite's own thread: many statements for one hop
        (each ``execute`` above is a round trip to that thread). ``fn`` must not touch the event loop.

        Uses aiosqlite's ``_execute`` (pinned in constraints.txt): aiosqlite has no public way to run a
        function in its thread.
        """
        raw = self._conn._connection
        assert raw is not None
        run_in_thread: Callable[..., Awaitable[T]] = self._conn._execute
        return await run_in_thread(fn, raw)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._conn.execute(sql, params) as cur:
            row = await cur.fetchone()
            return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._conn.execute(sql, params) as cur:
            return [tuple(r) for r in await cur.fetchall()]


class Database:
    """One SQLite file behind a writer and a reader connection."""

    engine = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._reader = conn  # until open() has the schema in place
        self._lock = asyncio.Lock()
        # One statement at a time on the reader: overlapping statements would share (and keep open)
        # one read snapshot, and a read after a commit could miss it.
        self._read_lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: Path, schema: Iterable[str] | Migrations, *, version: int = 0,
                   secure_delete: bool = False, migrations: Mapping[int, Migration] | None = None) -> Database:
        """Open (creating) the file; ``secure_delete`` overwrites deleted content with zeros, for
        stores that erase personal data.

        ``schema`` is a store's ``Migrations`` (``olievlek.storage.migrations``: numbered SQL files, applied
        before the connections open, what was applied logged), or - for tests and benches - plain
        statements with the version rules below.

        ``version`` is the schema version this build writes (kept in ``PRAGMA user_version``). A file of an
        older version is brought up to it by ``migrations`` (``migrations[n]`` takes version n to n + 1),
        each step in one transaction that also sets the new version; a file that no step chain reaches - or
        one newer than this build - is refused with a clear error rather than half-used.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(schema, Migrations):
            await asyncio.to_thread(_migrate_file, path, schema)
        db = cls(await cls._connect(path), path)
        try:
            if secure_delete:
                await db._conn.execute("PRAGMA secure_delete=ON")
            if version:
                await db._check_version(version, migrations or {})
            async with db.transaction() as tx:
                for stmt in schema if not isinstance(schema, Migrations) else ():
                    await tx.execute(stmt)
            db._reader = await cls._connect(path, read_only=True)
        except BaseException:
            await db._conn.close()
            raise
        return db

    async def _check_version(self, version: int, migrations: Mapping[int, Migration]) -> None:
        async with self._conn.execute("PRAGMA user_version") as cur:
            found = int((await cur.fetchone() or (0,))[0])
        async with self._conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'") as cur:
            tables = int((await cur.fetchone() or (0,))[0])
        if found == 0 and tables == 0:
            await self._conn.execute(f"PRAGMA user_version = {int(version)}")
            return
        if found > version or any(step not in migrations for step in range(found, version)):
            raise ConfigError(f"{self.path}: database schema version {found or 'unversioned'}, this build uses "
                              f"version {version} and has no migration from it: keep the old build or start afresh")
        for step in range(found, version):
            async with self.transaction() as tx:
                await tx.run(migrations[step])
                await tx.execute(f"PRAGMA user_version = {step + 1}")

    @staticmethod
    async def _connect(path: Path, read_only: bool = False) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=FULL")
            await conn.execute("PRAGMA foreign_keys=ON")
            if read_only:
                await conn.execute("PRAGMA query_only=ON")
            await _assert_settings(conn, path)
        except BaseException:
            await conn.close()
            raise
        return conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Txn]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any exception, cancellation included.

        A task cancelled while BEGIN or COMMIT is in flight still has that statement
        run by aiosqlite's thread; the rollback is queued behind it and shielded, so
        the connection never stays inside a stale transaction.
        """
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                yield Txn(self._conn)
                await self._conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await asyncio.shield(self._rollback())
                raise

    async def _rollback(self) -> None:
        # Unconditional: statements run in order on aiosqlite's thread, so this lands after a
        # BEGIN that was still queued; "no transaction is active" is suppressed by the caller.
        await self._conn.execute("ROLLBACK")

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read of committed state, not waiting for a write transaction in progress."""
        async with self._read_lock:
            return await Txn(self._reader).fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._read_lock:
            return await Txn(self._reader).fetchone(sql, params)

    async def checkpoint_truncate(self, attempts: int = 50, pause_s: float = 0.05) -> None:
        """Copy the WAL into the database and truncate it, on the writer connection; retried until
        SQLite reports no busy frames (a reader holding an old snapshot), so erased content is gone
        from the WAL too.

        Raises:
            ConfigError: still busy after ``attempts`` tries.
        """
        for _ in range(attempts):
            async with self._lock:
                async with self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
                    busy, _log, _done = await cur.fetchone() or (1, 0, 0)
            if int(busy) == 0:
                return
            await asyncio.sleep(pause_s)
        raise ConfigError(f"{self.path}: the WAL checkpoint stayed busy; erased content may remain in the WAL")

    async def close(self) -> None:
        async with self._lock:
            if self._reader is not self._conn:
                await self._reader.close()
            await self._conn.close()


async def _assert_settings(conn: aiosqlite.Connection, path: Path) -> None:
    async with conn.execute("PRAGMA journal_mode") as cur:
        mode = (await cur.fetchone() or ("",))[0]
    async with conn.execute("PRAGMA synchronous") as cur:
        sync = (await cur.fetchone() or (0,))[0]
    if str(mode).lower() != "wal" or int(sync) != 2:
        raise ConfigError(f"{path}: expected WAL and synchronous=FULL, got {mode} and {sync}")


def _migrate_file(path: Path, migrations: Migrations) -> None:
    """Bring the file to the newest migration (its own connection, closed before the service's open)."""
    _at, applied = migrate_sqlite_file(path, migrations)
    for step in applied:
        logs.get("store").info("store.migrated", store=migrations.store, version=step.version, name=step.name)
