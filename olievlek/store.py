"""SQLite plumbing shared by every service: one connection, WAL, explicit transactions.

Settings, asserted on every connection at start-up:
- ``journal_mode=WAL``: readers do not block the writer, and a crash leaves
  either the old or the new state;
- ``synchronous=FULL``: a committed transaction survives power loss, which is
  what lets the broker answer a receipt only after its commit;
- ``foreign_keys=ON``.

Each service owns one connection and serialises transactions on it with a
lock, so statements of two coroutines never interleave inside one
transaction. Nothing inside ``transaction()`` may await the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from olievlek.errors import ConfigError

Row = tuple[Any, ...]


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

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._conn.execute(sql, params) as cur:
            row = await cur.fetchone()
            return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._conn.execute(sql, params) as cur:
            return [tuple(r) for r in await cur.fetchall()]


class Database:
    """One SQLite file behind one connection."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: Path, schema: Iterable[str]) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        db = cls(conn, path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await db._assert_settings()
        async with db.transaction() as tx:
            for stmt in schema:
                await tx.execute(stmt)
        return db

    async def _assert_settings(self) -> None:
        async with self._conn.execute("PRAGMA journal_mode") as cur:
            mode = (await cur.fetchone() or ("",))[0]
        async with self._conn.execute("PRAGMA synchronous") as cur:
            sync = (await cur.fetchone() or (0,))[0]
        if str(mode).lower() != "wal" or int(sync) != 2:
            raise ConfigError(f"{self.path}: expected WAL and synchronous=FULL, got {mode} and {sync}")

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
        async with self._lock:
            return await Txn(self._conn).fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._lock:
            return await Txn(self._conn).fetchone(sql, params)

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()
