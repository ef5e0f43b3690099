"""Moving a store between engines: every table's rows out to a file and back in, with proof they are the same.

The file is JSON lines: a header (store, tables), then one line per row (``{"t": table, "r": [values]}``,
bytes as ``{"b": hex}``), then one line per table with its row count and SHA-256. The digest of a table is
over its rows each encoded the same way on both engines, in the order of those encodings (not the engines'
own orders: PostgreSQL's text collation is not SQLite's) - so an import computes the digests of what it
wrote, on the target, and compares: a difference refuses the import (its transaction rolls back) and names
the table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olievlek.errors import ConfigError
from olievlek.storage.sqlite import Database, Row

PAGE = 5000


@dataclass(frozen=True, slots=True)
class TableSum:
    table: str
    rows: int
    sha256: str


def _value(v: Any) -> Any:
    if isinstance(v, bytes | bytearray | memoryview):
        return {"b": bytes(v).hex()}
    return v


def _unvalue(v: Any) -> Any:
    return bytes.fromhex(v["b"]) if isinstance(v, dict) else v


def _encode(row: Row) -> str:
    return json.dumps([_value(v) for v in row], separators=(",", ":"))


async def columns(db: Database, table: str) -> list[str]:
    """The table's columns, as declared."""
    if db.engine == "sqlite":
        return [str(r[1]) for r in await db.fetchall(f"PRAGMA table_info({table})")]
    rows = await db.fetchall("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                             "AND table_schema = current_schema() ORDER BY ordinal_position", (table,))
    return [str(r[0]) for r in rows]


async def _rows(db: Database, table: str, cols: list[str]) -> Iterator[Row]:
    order = ", ".join(cols)
    out: list[Row] = []
    offset = 0
    while True:
        page = await db.fetchall(f"SELECT {order} FROM {table} ORDER BY {order} LIMIT ? OFFSET ?",  # noqa: S608
                                 (PAGE, offset))
        out += page
        if len(page) < PAGE:
            return iter(out)
        offset += PAGE


async def summarise(db: Database, tables: list[str]) -> list[TableSum]:
    """Row count and SHA-256 of every table, over its rows in key order."""
    return [_sum(table, list(await _rows(db, table, await columns(db, table)))) for table in tables]


def _sum(table: str, rows: list[Row]) -> TableSum:
    h = hashlib.sha256()
    encoded = sorted(_encode(r) for r in rows)
    for line in encoded:
        h.update(line.encode() + b"\n")
    return TableSum(table, len(encoded), h.hexdigest())


async def export(db: Database, store: str, tables: list[str], out: Path) -> list[TableSum]:
    """Write every row of ``tables`` to ``out``; the sums written with them."""
    with out.open("w") as f:
        f.write(json.dumps({"store": store, "tables": tables}) + "\n")
        for table in tables:
            for row in await _rows(db, table, await columns(db, table)):
                f.write(json.dumps({"t": table, "r": json.loads(_encode(row))}) + "\n")
        sums = await summarise(db, tables)
        for s in sums:
            f.write(json.dumps({"sum": s.table, "rows": s.rows, "sha256": s.sha256}) + "\n")
    return sums


def read_sums(path: Path) -> tuple[str, list[str], list[TableSum]]:
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    sums = [TableSum(d["sum"], int(d["rows"]), d["sha256"]) for d in map(json.loads, lines) if "sum" in d]
    return str(head["store"]), list(head["tables"]), sums


async def import_into(db: Database, store: str, src: Path, identity_columns: dict[str, str]) -> list[TableSum]:
    """Write the file's rows into the empty ``db``, in one transaction that commits only if every table's count
    and SHA-256 on ``db`` equal the file's; the sums on ``db``.

    Raises:
        ConfigError: another store's file, a target that holds rows already, or sums that differ (naming the
            tables; nothing was imported).
    """
    kind, tables, expected = read_sums(src)
    if kind != store:
        raise ConfigError(f"{src} is an export of a {kind} store, not of a {store}")
    for table in tables:
        if await db.fetchone(f"SELECT 1 FROM {table} LIMIT 1") is not None:  # noqa: S608 - our own table names
            raise ConfigError(f"the target already holds rows in {table}: import only into a new, empty store")
    cols = {t: await columns(db, t) for t in tables}
    got: list[TableSum] = []
    async with db.transaction() as tx:
        with src.open() as f:
            next(f)
            batch: dict[str, list[list[Any]]] = {}
            for line in f:
                d = json.loads(line)
                if "t" in d:
                    batch.setdefault(d["t"], []).append([_unvalue(v) for v in d["r"]])
                    if len(batch[d["t"]]) >= PAGE:
                        await _write(tx, d["t"], cols[d["t"]], batch.pop(d["t"]))
            for table, rows in batch.items():
                await _write(tx, table, cols[table], rows)
        if db.engine != "sqlite":  # identity columns continue after the imported ids
            for table, column in identity_columns.items():
                await tx.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "  # noqa: S608
                                 f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)")
        got = await _sums_in(tx, cols)
        differ = [e.table for e, g in zip(expected, got, strict=True) if e != g]
        if differ:
            raise ConfigError(f"the imported rows differ from the export in {differ}: nothing was imported")
    return got


async def _write(tx: Any, table: str, cols: list[str], rows: list[list[Any]]) -> None:
    marks = ", ".join("?" * len(cols))
    await tx.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)  # noqa: S608


async def _sums_in(tx: Any, cols: dict[str, list[str]]) -> list[TableSum]:
    """The sums over what this transaction sees (its own writes, before the commit), table by table."""
    return [_sum(table, await tx.fetchall(f"SELECT {', '.join(c)} FROM {table}"))  # noqa: S608
            for table, c in cols.items()]
