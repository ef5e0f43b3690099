"""The reference directory at the broker: who holds which pseudonym, with which verified coverage.

An entry is (pseudonym, holder, contact, registered at, covers); nothing else
about the person or the case. ``covers`` is the compact form of the holder's
verified coverage flags that queries read (``olievlek.directory.covered``); the
signed statements themselves are kept in ``coverage`` as evidence and are read
only when a holder re-verifies its own entries. Writes are synchronous steps
run inside the accepting transaction (``Txn.run``), so an entry changes exactly
when the envelope that changes it is accepted, and never twice.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from olievlek.directory import Cover, covers_string
from olievlek.policy.model import EntryLimit
from olievlek.storage.sqlite import Database
from olievlek.v1 import summary_pb2

# Its tables: broker/storage/migrations/sqlite/*.sql (directory, coverage, open_requests, query_usage, register_usage).


@dataclass(frozen=True, slots=True)
class Registration:
    """A verified directory.register: the entry and the statements that passed verification."""

    pseudonym: bytes
    holder: str
    contact_id: str
    covers: list[Cover]
    evidence: list[summary_pb2.SignedCoverage]


def register_step(c: sqlite3.Connection, reg: Registration, at_ms: int) -> None:
    """Insert or replace the holder's entry; its earlier coverage is replaced, not merged."""
    c.execute("INSERT INTO directory (pseudonym, holder, contact_id, registered_ms, covers) VALUES (?, ?, ?, ?, ?)"
              " ON CONFLICT (pseudonym, holder) DO UPDATE SET contact_id = excluded.contact_id,"
              " registered_ms = excluded.registered_ms, covers = excluded.covers",
              (reg.pseudonym, reg.holder, reg.contact_id, at_ms, covers_string(reg.covers)))
    c.execute("DELETE FROM coverage WHERE holder = ? AND pseudonym = ?", (reg.holder, reg.pseudonym))
    c.executemany("INSERT INTO coverage (holder, pseudonym, position, statement, signature) VALUES (?, ?, ?, ?, ?)",
                  [(reg.holder, reg.pseudonym, i, s.statement, s.signature) for i, s in enumerate(reg.evidence)])


@dataclass(frozen=True, slots=True)
class OverLimit:
    """A registration the holder's limit refuses: "entries", or the period of a rate ("h:…", "d:…")."""

    what: str
    used: int
    limit: int


def admit_step(c: sqlite3.Connection, holder: str, pseudonym: bytes, limit: EntryLimit,
               periods: tuple[str, str]) -> OverLimit | None:
    """Count a new entry against the holder's limits, or return the first it would exceed (nothing counted).

    Replacing an entry the holder already keeps adds nothing, so it is always admitted: a node re-registers
    all its entries when the bundle changes.
    """
    if c.execute("SELECT 1 FROM directory WHERE pseudonym = ? AND holder = ?", (pseudonym, holder)).fetchone():
        return None
    held = int(c.execute("SELECT COUNT(*) FROM directory WHERE holder = ?", (holder,)).fetchone()[0])
    if held >= limit.entries:
        return OverLimit("entries", held, limit.entries)
    for period, most in zip(periods, (limit.per_hour, limit.per_day), strict=True):
        row = c.execute("SELECT entries FROM register_usage WHERE holder = ? AND period = ?",
                        (holder, period)).fetchone()
        used = int(row[0]) if row else 0
        if used >= most:
            return OverLimit(period, used, most)
    for period in periods:
        c.execute("INSERT INTO register_usage (holder, period, entries) VALUES (?, ?, 1)"
                  " ON CONFLICT (holder, period) DO UPDATE SET entries = register_usage.entries + 1", (holder, period))
    # Hours only matter while they last; days stay, as history.
    c.execute("DELETE FROM register_usage WHERE holder = ? AND period LIKE 'h:%' AND period < ?",
              (holder, periods[0]))
    return None


def withdraw_step(c: sqlite3.Connection, holder: str, pseudonym: bytes) -> None:
    c.execute("DELETE FROM directory WHERE pseudonym = ? AND holder = ?", (pseudonym, holder))
    c.execute("DELETE FROM coverage WHERE holder = ? AND pseudonym = ?", (holder, pseudonym))


def request_step(c: sqlite3.Connection, requester: str, holder: str, pseudonym: bytes, at_ms: int,
                 asking: bool) -> None:
    """Open a disclosure request (it was routed), or close it (it was answered)."""
    if asking:
        c.execute("INSERT INTO open_requests (requester, holder, pseudonym, at_ms) VALUES (?, ?, ?, ?)"
                  " ON CONFLICT DO NOTHING",
                  (requester, holder, pseudonym, at_ms))
    else:
        c.execute("DELETE FROM open_requests WHERE requester = ? AND holder = ? AND pseudonym = ?",
                  (requester, holder, pseudonym))


def close_requests_before(c: sqlite3.Connection, cutoff_ms: int) -> int:
    return int(c.execute("DELETE FROM open_requests WHERE at_ms < ?", (cutoff_ms,)).rowcount)


async def has_requests_before(db: Database, cutoff_ms: int) -> bool:
    return await db.fetchone("SELECT 1 FROM open_requests WHERE at_ms < ? LIMIT 1", (cutoff_ms,)) is not None


async def open_request(db: Database, requester: str, holder: str, pseudonym: bytes) -> bool:
    row = await db.fetchone("SELECT 1 FROM open_requests WHERE requester = ? AND holder = ? AND pseudonym = ?",
                            (requester, holder, pseudonym))
    return row is not None


@dataclass(frozen=True, slots=True)
class OverBudget:
    """A query budget that would be exceeded: its period ("d:2026-12-07" or "m:2026-12"), rows used, limit."""

    period: str
    used: int
    limit: int


def use_budget_step(c: sqlite3.Connection, org: str, periods: tuple[str, str], rows: int,
                    limits: tuple[int, int]) -> OverBudget | None:
    """Count ``rows`` against the day's and month's budget, or return the first that would be exceeded
    (then nothing is counted)."""
    for period, limit in zip(periods, limits, strict=True):
        row = c.execute("SELECT rows FROM query_usage WHERE org = ? AND period = ?", (org, period)).fetchone()
        used = int(row[0]) if row else 0
        if used + rows > limit:
            return OverBudget(period, used, limit)
    for period in periods:
        c.execute("INSERT INTO query_usage (org, period, rows) VALUES (?, ?, ?)"
                  " ON CONFLICT (org, period) DO UPDATE SET rows = query_usage.rows + excluded.rows",
                  (org, period, rows))
    return None


async def holder_counts(db: Database, since_day: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Entries kept per holder, and new entries per holder and UTC day ('d:YYYY-MM-DD') from ``since_day`` on."""
    entries = {str(h): int(n) for h, n in await db.fetchall("SELECT holder, COUNT(*) FROM directory GROUP BY holder")}
    days: dict[str, dict[str, int]] = {}
    for holder, period, n in await db.fetchall(
            "SELECT holder, period, entries FROM register_usage WHERE period LIKE 'd:%' AND period >= ?",
            (since_day,)):
        days.setdefault(str(holder), {})[str(period)] = int(n)
    return entries, days


Entry = tuple[str, str, str]  # (holder, contact id, covers)


async def lookup(db: Database, pseudonyms: list[bytes]) -> dict[bytes, list[Entry]]:
    """Every entry of these pseudonyms, in one indexed read on the read-only connection."""
    marks = ",".join("?" * len(pseudonyms))
    rows = await db.fetchall(
        f"SELECT pseudonym, holder, contact_id, covers FROM directory WHERE pseudonym IN ({marks})",  # noqa: S608
        tuple(pseudonyms))
    found: dict[bytes, list[Entry]] = {}
    for p, holder, contact, covers in rows:
        found.setdefault(bytes(p), []).append((holder, contact, covers))
    return found


async def entry_of(db: Database, pseudonym: bytes, holder: str) -> str | None:
    """The ``covers`` of one holder's entry, or None when it holds no such entry."""
    row = await db.fetchone("SELECT covers FROM directory WHERE pseudonym = ? AND holder = ?", (pseudonym, holder))
    return str(row[0]) if row else None


OwnEntry = tuple[bytes, str, int, str, list[summary_pb2.SignedCoverage]]  # (pseudonym, contact, at, covers, evidence)


async def own_entries(db: Database, holder: str, after: bytes, limit: int) -> list[OwnEntry]:
    """A holder's own entries (never anyone else's), in pseudonym order, with what queries read of
    them (covers) and the evidence."""
    rows = await db.fetchall(
        "SELECT pseudonym, contact_id, registered_ms, covers FROM directory WHERE holder = ? AND pseudonym > ?"
        " ORDER BY pseudonym LIMIT ?", (holder, after, limit))
    out: list[OwnEntry] = []
    for p, contact, at, covers in rows:
        ev = await db.fetchall("SELECT statement, signature FROM coverage WHERE holder = ? AND pseudonym = ?"
                               " ORDER BY position", (holder, p))
        out.append((bytes(p), str(contact), int(at), str(covers),
                    [summary_pb2.SignedCoverage(statement=bytes(s), signature=bytes(g)) for s, g in ev]))
    return out
