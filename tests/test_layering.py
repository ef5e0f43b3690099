"""The core package imports no service, and service folders install under olievlek.*."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("olievlek.node", "olievlek.broker", "olievlek.cli", "olievlek.pseudonymiser")


def test_core_imports_no_service() -> None:
    offenders = []
    for path in (REPO / "olievlek").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(SERVICES)]
    assert offenders == []


def test_services_import_under_the_olievlek_namespace() -> None:
    import importlib.util

    for name in ("olievlek.node", "olievlek.broker", "olievlek.cli"):
        assert importlib.util.find_spec(name) is not None
    for generic in ("node", "broker", "cli"):
        spec = importlib.util.find_spec(generic)
        assert spec is None or "site-packages" not in str(spec.origin), generic


DRIVERS = ("sqlite3", "aiosqlite", "psycopg", "asyncpg")
SQL = ("SELECT ", "INSERT ", "UPDATE ", "DELETE FROM", "CREATE TABLE", "CREATE INDEX", "ALTER TABLE", "WITH RECURSIVE",
       "PRAGMA ")
STORAGE = ("olievlek/storage/", "broker/storage/", "witness/storage/", "pseudonymiser/storage/")
# Files that still hold SQL outside the storage packages: the node's, which runs on SQLite only and moves into
# node/storage/ when the node gets a second engine ("The broker on PostgreSQL", docs/storage.md). This list only
# shrinks: a new file with SQL fails the test.
KNOWN = {
    "node/store.py": "the node's store",
    "node/evidence.py": "the node's evidence tables",
    "node/directory.py": "node SQL, to move into its store",
    "node/disclosure.py": "node SQL, to move into its store",
    "node/handlers.py": "node SQL, to move into its store",
    "node/intake.py": "node SQL, to move into its store",
    "node/liaison.py": "node SQL, to move into its store",
    "node/monitoring.py": "node SQL, to move into its store",
}


def _database_use(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in DRIVERS]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in DRIVERS:
            found.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                node.value.lstrip().upper().startswith(SQL):
            found.append(node.value.strip().split("\n")[0][:40])
    return found


def test_sql_and_database_drivers_stay_in_the_storage_packages() -> None:
    offenders, cleared = {}, []
    for top in ("olievlek", "broker", "node", "pseudonymiser", "witness", "cli"):
        for path in sorted((REPO / top).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            if rel.startswith(STORAGE) or "/v1/" in rel:
                continue
            used = _database_use(path)
            if used and rel not in KNOWN:
                offenders[rel] = used[:3]
            if not used and rel in KNOWN:
                cleared.append(rel)
    assert offenders == {}, f"SQL or a database driver outside the storage packages: {offenders}"
    assert cleared == [], f"no SQL left in {cleared}: take them off the KNOWN list"
