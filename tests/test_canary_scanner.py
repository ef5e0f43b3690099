"""Positive control: the canary scanner catches every form of a deliberate leak."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from .canary import forms, scan

CANARY = "85073003328"


@pytest.mark.timeout(30)
def test_scanner_catches_each_deliberate_leak(tmp_path: Path) -> None:
    needles = forms(CANARY)
    for name, needle in needles.items():
        (tmp_path / f"leak-{name}.bin").write_bytes(b"prefix" + needle + b"suffix")
    hits = scan(tmp_path, needles)
    for name in needles:
        assert (tmp_path / f"leak-{name}.bin", name) in hits, name


@pytest.mark.timeout(30)
def test_scanner_catches_an_integer_in_sqlite_and_its_wal(tmp_path: Path) -> None:
    db = tmp_path / "leak.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (n INTEGER)")
    conn.execute("INSERT INTO t VALUES (?)", (int(CANARY),))
    conn.commit()
    hits = scan(tmp_path, forms(CANARY))
    assert any(p.name == "leak.sqlite-wal" and f == "sqlite-be6" for p, f in hits), hits
    conn.close()


@pytest.mark.timeout(30)
def test_scanner_is_quiet_on_clean_files(tmp_path: Path) -> None:
    (tmp_path / "clean.txt").write_text("nothing to see: 85073003329 is another number")
    assert scan(tmp_path, forms(CANARY)) == []
