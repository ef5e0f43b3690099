"""Schema migrations for every store: numbered SQL files per engine, one transaction each, a version table,
databases from before the runner adopted, a newer database refused, ``olievlek broker migrate``."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from olievlek.broker.storage.store import MIGRATIONS as BROKER
from olievlek.broker.storage.store import BrokerStore
from olievlek.node.store import MIGRATIONS as NODE
from olievlek.node.store import NodeStore
from olievlek.pseudonymiser.storage.store import MIGRATIONS as PSEUDONYMISER
from olievlek.pseudonymiser.storage.store import PseudonymiserStore
from olievlek.witness.storage.store import MIGRATIONS as WITNESS

from olievlek.errors import ConfigError
from olievlek.storage.migrations import Migration, Migrations, current, migrate, pending
from olievlek.storage.sqlite import Database

from .federations import cli

pytestmark = pytest.mark.timeout(60)
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "broker-395f065"


def _versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def _tables(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return {r[0]: r[1] for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                                                 "AND name != 'schema_migrations'")}


@pytest.mark.parametrize("m", [BROKER, NODE, PSEUDONYMISER, WITNESS], ids=lambda m: m.store)
async def test_every_store_starts_from_its_migrations(m: Migrations, tmp_path: Path) -> None:
    path = tmp_path / f"{m.store}.sqlite"
    db = await Database.open(path, m)
    await db.close()
    assert _versions(path) == list(range(1, m.latest + 1))
    assert m.steps[0].version == 1 and m.steps[0].name == "initial"


async def test_a_broker_of_395f065_with_data_migrates_and_keeps_it(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "old")
    path = tmp_path / "old" / "broker.sqlite"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 7
        events = conn.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]
    store = await BrokerStore.open(path)
    await store.close()
    assert _versions(path) == list(range(1, BROKER.latest + 1))
    fresh = tmp_path / "fresh.sqlite"
    await (await Database.open(fresh, BROKER)).close()
    assert _tables(path) == _tables(fresh)  # the same schema as a new broker's
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0] == events > 0
        # visibility became rows, by org id until the bundle names the kind
        assert conn.execute("SELECT COUNT(*) FROM audit_visibility WHERE viewer LIKE 'legacy:%'").fetchone()[0] > 0


@pytest.mark.parametrize(("m", "legacy", "opener"),
                         [(NODE, 5, NodeStore.open), (PSEUDONYMISER, 1, PseudonymiserStore.open)],
                         ids=["node", "pseudonymiser"])
async def test_a_store_of_395f065_migrates(m: Migrations, legacy: int, opener: object, tmp_path: Path) -> None:
    """Written as 395f065 wrote it: its schema (migration 1 is that schema) and its user_version, no table of
    the runner."""
    path = tmp_path / f"{m.store}.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(m.steps[0].sql)
        conn.execute(f"PRAGMA user_version = {legacy}")
    store = await opener(path)  # type: ignore[operator]
    await store.close()
    assert _versions(path) == list(range(1, m.latest + 1))


def test_a_newer_database_and_an_unknown_old_one_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        migrate(conn, BROKER)
        conn.execute("INSERT INTO schema_migrations (version, applied_ms) VALUES (99, 0)")
        with pytest.raises(ConfigError, match=f"at migration 99, newer than this build's {BROKER.latest}"):
            current(conn, BROKER)
    old = tmp_path / "o.sqlite"
    with sqlite3.connect(old, isolation_level=None) as conn:
        conn.execute("CREATE TABLE queue (x)")
        conn.execute("PRAGMA user_version = 4")
        with pytest.raises(ConfigError, match="schema version 4 from before migrations"):
            current(conn, BROKER)


def test_a_failing_migration_applies_nothing_of_itself(tmp_path: Path) -> None:
    broken = Migrations("t", (Migration(1, "initial", "CREATE TABLE a (n INTEGER);"),
                              Migration(2, "broken", "CREATE TABLE b (n INTEGER); INSERT INTO nowhere VALUES (1);")))
    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        with pytest.raises(ConfigError, match=r"t migration 2 \(broken\) failed: no such table: nowhere"):
            migrate(conn, broken)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "a" in tables and "b" not in tables  # 1 applied, nothing of 2
        assert current(conn, broken) == 1 and [s.version for s in pending(conn, broken)] == [2]


def test_an_unversioned_witness_is_recognised_by_its_table(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.executescript(WITNESS.steps[0].sql)
        conn.execute("INSERT INTO checkpoints VALUES ('o', 1, x'00', x'00', 0)")
        assert migrate(conn, WITNESS) == []
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations")] == [1]
        assert conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 1


def test_broker_migrate_shows_then_applies(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "old")
    config = tmp_path / "broker.yaml"
    config.write_text(yaml.safe_dump({"database": str(tmp_path / "old" / "broker.sqlite"), "tls_cert": "x",
                                      "tls_key": "x", "ca": "x", "crl": "x", "bundle": "x", "roots": "x",
                                      "log_key": "x"}))
    r = cli("broker", "migrate", "--config", str(config), "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "at migration 1 of 4; would apply 2 (exact_visibility), 3 (bundles_register_usage), 4 (leases)" in r.stdout
    assert "ALTER TABLE tree_heads ADD COLUMN checkpoint BLOB" in r.stdout
    with sqlite3.connect(tmp_path / "old" / "broker.sqlite") as conn:  # nothing changed
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 7
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'").fetchone()
    r = cli("broker", "migrate", "--config", str(config))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "applied 2 (exact_visibility), 3 (bundles_register_usage), 4 (leases)" in r.stdout, r.stdout
    r = cli("broker", "migrate", "--config", str(config), "--dry-run")
    assert "at migration 4 of 4; would apply nothing" in r.stdout
