"""PostgreSQL behind the ``Database``/``Txn`` interface of the SQLite plumbing (``olievlek/storage/sqlite.py``).

The broker's statements are written in the SQL both engines read (``INSERT ... ON CONFLICT``, no
``INSERT OR ...``); the only translation is the parameter style, ``?`` to ``%s`` - as Synapse's storage
engines do. Like aiosqlite, each connection lives in a thread of its own and every statement (or a whole
synchronous step, ``Txn.run``) is one hop to that thread: one writer connection, serialised by a lock, whose
transactions are explicit ``BEGIN`` ... ``COMMIT``, and one reader connection (autocommit: every read sees the
last committed state). The session settings are part of the guarantees: ``synchronous_commit = on`` (a
receipt is answered only after a durable commit), statement and idle-in-transaction timeouts.

The schema comes from the store's PostgreSQL migrations, applied under an advisory lock before the
connections are handed out. Nothing here calls another olievlek service; a transaction holds only statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from olievlek import logs
from olievlek.errors import ConfigError, ConnectionLost, StoreUnavailable
from olievlek.lifecycle import read_outcome
from olievlek.storage.sqlite import Database, Txn

from .migrations import Migrations, migrate

log = logs.get("store")
Row = tuple[Any, ...]
T = TypeVar("T")
STATEMENT_TIMEOUT_MS = 30_000
CALL_TIMEOUT_S = STATEMENT_TIMEOUT_MS / 1000 + 5  # a call longer than any statement: the network is silent
START_WAIT_S = 60.0  # at start, how long a broker waits for its database (a failover takes 10-45 s)
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000


def _sql(sql: str, params: Sequence[Any] | None) -> tuple[str, Sequence[Any] | None]:
    """SQLite's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled); booleans as integers, as
    SQLite stores them."""
    if not params:
        return sql, None
    return sql.replace("%", "%%").replace("?", "%s"), [int(p) if isinstance(p, bool) else p for p in params]


class _Cursor:
    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    def fetchone(self) -> Row | None:
        row = self._cur.fetchone() if self._cur.description else None
        return tuple(row) if row is not None else None

    def fetchall(self) -> list[Row]:
        return [tuple(r) for r in self._cur.fetchall()] if self._cur.description else []

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)


class SyncConnection:
    """What a synchronous step (``Txn.run``) may call: the subset of ``sqlite3.Connection`` the steps use."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        cur = self._conn.cursor()
        q, p = _sql(sql, params)
        cur.execute(q, p)
        return _Cursor(cur)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        q, _ = _sql(sql, rows[0])
        with self._conn.cursor() as cur:
            cur.executemany(q, [_sql(sql, r)[1] or () for r in rows])


class _Thread:
    """One connection in one thread: every call is a hop there, in order.

    A connection PostgreSQL dropped (a restart, a failover) is replaced - but only where nothing is in
    flight on it: before a read, and before a transaction's ``BEGIN``. A transaction whose connection died
    fails as a whole (its commit never happened; callers retry, idempotently), never half on a new one.
    """

    def __init__(self, conn: psycopg.Connection[Any], reconnect: Callable[[], psycopg.Connection[Any]],
                 timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.conn = conn
        self._reconnect = reconnect
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="olievlek-pg")
        self.timeout_s = timeout_s

    async def call(self, fn: Callable[[psycopg.Connection[Any]], T], fresh: bool = False) -> T:
        """``fresh``: a point where nothing is in flight, so a dropped connection may be replaced first."""
        def run(_: object) -> T:
            if fresh and (self.conn.broken or self.conn.closed):
                with contextlib.suppress(psycopg.Error):
                    self.conn.close()
                self.conn = self._reconnect()
            return fn(self.conn)

        done = asyncio.get_running_loop().run_in_executor(self._pool, run, None)
        done.add_done_callback(read_outcome)  # a caller cancelled meanwhile leaves its outcome unread
        # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow the caller's cancellation when the call
        # ends at the same moment, and a background loop cancelled at stop would then run on for ever.
        finished, _ = await asyncio.wait({done}, timeout=self.timeout_s)
        if not finished:
            # A silent network (no answer, no reset) would hold the call forever: give up the connection under
            # it, so the call fails (``ConnectionLost`` before COMMIT) and the next one connects afresh.
            log.warning("store.call_timed_out", timeout_s=self.timeout_s)
            _shut_down(self.conn)
        return await done

    async def close(self) -> None:
        await self.call(lambda c: c.close())
        self._pool.shutdown(wait=True)


def _lost(exc: BaseException) -> bool:
    """A failure that leaves the transaction uncommitted and may pass once the database is back: the connection
    lost or refused, the server shutting down, a statement cancelled, or a read-only server (a primary demoted
    by a failover)."""
    return isinstance(exc, (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction))


async def _call(thread: _Thread, fn: Callable[[psycopg.Connection[Any]], T], lost: type[StoreUnavailable],
                fresh: bool = False, what: str = "PostgreSQL") -> T:
    """``thread.call``, where a lost connection raises ``lost``, never a driver error: ``ConnectionLost`` before
    COMMIT (nothing committed; run it again), ``StoreUnavailable`` for a read or at COMMIT (whether it committed
    is not known)."""
    try:
        return await thread.call(fn, fresh)
    except Exception as exc:
        if _lost(exc):
            raise lost(f"{what}: {exc}") from exc
        raise


async def _in_transaction(thread: _Thread, fn: Callable[[psycopg.Connection[Any]], T], fresh: bool = False) -> T:
    """One call before COMMIT."""
    return await _call(thread, fn, ConnectionLost, fresh)


def _shut_down(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down from outside its thread: a call blocked on it returns with an error."""
    with contextlib.suppress(Exception):
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


class PgTxn(Txn):
    """A transaction in progress on the writer connection; only statements, no network call to a service.
    (A ``Txn`` by type: every method is its own, on PostgreSQL.)"""

    def __init__(self, thread: _Thread) -> None:
        self._t = thread

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        await _in_transaction(self._t, lambda c: SyncConnection(c).execute(sql, params))
        return 0  # no lastrowid on PostgreSQL: a statement that needs its row's id says RETURNING

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        await _in_transaction(self._t, lambda c: SyncConnection(c).executemany(sql, rows))

    async def run(self, fn: Callable[[Any], T]) -> T:
        return await _in_transaction(self._t, lambda c: fn(SyncConnection(c)))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return await _in_transaction(self._t, lambda c: SyncConnection(c).execute(sql, params).fetchone())

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await _in_transaction(self._t, lambda c: SyncConnection(c).execute(sql, params).fetchall())


def _connect(dsn: str, timeout_s: float) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout_s)))
    conn.execute("SET synchronous_commit = on")
    conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_TIMEOUT_MS}")
    return conn


def _not_there_yet(exc: psycopg.OperationalError) -> bool:
    """A failure to connect that waiting may cure: refused, no socket, starting up or shutting down, or no
    read-write server yet during a failover. libpq gives most of these no SQLSTATE, so its words decide; a
    certificate, TLS or password problem never cures by waiting."""
    text = str(exc)
    if any(word in text.lower() for word in ("certificate", "ssl", "password", "authentication")):
        return False
    return exc.sqlstate in ("57P03", "57P01") or any(word in text for word in _NOT_THERE_YET)


_NOT_THERE_YET = ("Connection refused", "No such file or directory", "is starting up", "is shutting down",
                  "session is read-only", "timeout expired", "server closed the connection")


def redacted(dsn: str) -> str:
    """The DSN for messages: without its password."""
    return " ".join(p for p in dsn.split() if not p.startswith("password="))


class PgDatabase(Database):
    """One PostgreSQL database behind a writer and a reader connection (a ``Database`` by type: every method
    the stores use is its own, on PostgreSQL)."""

    engine = "postgresql"

    def __init__(self, writer: _Thread, reader: _Thread, dsn: str) -> None:
        self._w, self._r = writer, reader
        self._lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self.path = Path(redacted(dsn))  # for messages, as the SQLite file's path is

    @classmethod
    async def connect(cls, dsn: str, migrations: Migrations, timeout_s: float = 10.0,
                      wait_s: float = START_WAIT_S, call_timeout_s: float = CALL_TIMEOUT_S) -> PgDatabase:
        """Connect, apply the store's pending PostgreSQL migrations, and hand out the connections. A database
        that is not there yet - refused, starting up, or no read-write server among the DSN's hosts during a
        failover - is waited for, up to ``wait_s``.

        Raises:
            ConfigError: unreachable after ``wait_s``, refused for another reason (a password, a privilege), or
                a migration failed (naming which).
        """
        def connect_and_migrate() -> tuple[psycopg.Connection[Any], psycopg.Connection[Any]]:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s))) as conn:
                        migrate(conn, migrations)
                    return _connect(dsn, timeout_s), _connect(dsn, timeout_s)
                except psycopg.OperationalError as exc:
                    if not _not_there_yet(exc) or time.monotonic() > deadline:
                        raise ConfigError(f"PostgreSQL {redacted(dsn)}: {exc}") from None
                    log.warning("store.waiting_for_postgresql", detail=str(exc).splitlines()[0][:200])
                    time.sleep(1.0)
                except psycopg.Error as exc:
                    raise ConfigError(f"PostgreSQL {redacted(dsn)}: {exc}") from None

        writer, reader = await asyncio.to_thread(connect_and_migrate)
        again = functools.partial(_connect, dsn, timeout_s)
        return cls(_Thread(writer, again, call_timeout_s), _Thread(reader, again, call_timeout_s), dsn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Txn]:
        """``BEGIN`` ... ``COMMIT`` on the writer; rolled back on any exception, cancellation included. Losing
        the connection before COMMIT raises ``ConnectionLost`` (run it again); during COMMIT, ``StoreUnavailable``
        (whether it committed is not known)."""
        async with self._lock:
            try:
                await _in_transaction(self._w, lambda c: c.execute("BEGIN"), fresh=True)
                yield PgTxn(self._w)
                # Lost here, committed or not is unknown: the callers' idempotent retries settle it.
                await _call(self._w, lambda c: c.execute("COMMIT"), StoreUnavailable,
                            what="PostgreSQL lost at COMMIT")
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    await asyncio.shield(self._w.call(lambda c: c.execute("ROLLBACK")))
                raise

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._read(lambda c: SyncConnection(c).execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return await self._read(lambda c: SyncConnection(c).execute(sql, params).fetchone())

    async def _read(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """A read on the reader connection; the database away is ``StoreUnavailable``, never a driver error."""
        async with self._read_lock:
            return await _call(self._r, fn, StoreUnavailable, fresh=True)

    async def close(self) -> None:
        async with self._lock:
            await self._r.close()
            await self._w.close()
