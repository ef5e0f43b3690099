"""The migration runner on PostgreSQL: the broker's migrations on a real, throwaway PostgreSQL 15 cluster."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import threading

import psycopg
import pytest
from olievlek.broker.storage.store import MIGRATIONS_POSTGRESQL, BrokerStore

from olievlek.errors import ConfigError
from olievlek.pki import CertificateAuthority
from olievlek.storage.migrations import Migration, Migrations, current, migrate

from .conftest import Pki
from .postgres import PG_USER, Cluster, throwaway_cluster

pytestmark = [pytest.mark.serial, pytest.mark.timeout(120)]
BROKER_PG = MIGRATIONS_POSTGRESQL


def test_the_brokers_migrations_apply_once_and_make_its_tables(postgres_cluster: Cluster) -> None:
    dsn = postgres_cluster.new_database()
    with psycopg.connect(dsn) as conn:
        assert [s.version for s in migrate(conn, BROKER_PG)] == list(range(1, BROKER_PG.latest + 1))
        assert migrate(conn, BROKER_PG) == []  # applied once
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"idempotency", "queue", "recipients", "decisions", "audit_events", "audit_visibility", "tree_heads",
                "directory", "coverage", "register_usage", "bundles", "schema_migrations"} <= tables
        assert conn.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'queue' AND "
                            "column_name = 'expires_ms'").fetchone() == ("bigint",)  # ms need 64 bits


def test_two_brokers_starting_at_once_apply_each_migration_once(postgres_cluster: Cluster) -> None:
    dsn = postgres_cluster.new_database()
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with psycopg.connect(dsn) as conn:
                results.append([s.version for s in migrate(conn, BROKER_PG)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with psycopg.connect(dsn) as conn:
        applied = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert applied == list(range(1, BROKER_PG.latest + 1))


def test_a_newer_database_is_refused_and_a_failing_migration_leaves_nothing(postgres_cluster: Cluster) -> None:
    dsn = postgres_cluster.new_database()
    broken = Migrations("t", (Migration(1, "initial", "CREATE TABLE a (n BIGINT);"),
                              Migration(2, "broken", "CREATE TABLE b (n BIGINT); INSERT INTO nowhere VALUES (1);")))
    with psycopg.connect(dsn) as conn:
        with pytest.raises(ConfigError, match=r"t migration 2 \(broken\) failed: .*nowhere"):
            migrate(conn, broken)
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert "a" in tables and "b" not in tables and current(conn, broken) == 1
        conn.execute("INSERT INTO schema_migrations (version, applied_ms) VALUES (7, 0)")
        conn.commit()
        with pytest.raises(ConfigError, match="at migration 7, newer than this build's 2"):
            current(conn, broken)


def test_the_broker_reaches_postgresql_over_tls_with_verify_full(pki: Pki) -> None:
    """A cluster that accepts only TLS on 127.0.0.1, with a server certificate from the federation's CA:
    ``sslmode=verify-full`` with that CA connects and migrates; with another CA it is refused."""
    server = pki.ca.issue_server("db", ["127.0.0.1"])
    owner = pwd.getpwnam(PG_USER)
    with throwaway_cluster("olv-pg-tls-", start=False) as cluster:
        base = cluster.socket_dir
        for src, name in ((server.tls_cert, "server.crt"), (server.tls_key, "server.key")):
            shutil.copyfile(src, base / name)
            os.chown(base / name, owner.pw_uid, owner.pw_gid)
            (base / name).chmod(0o600)
        (cluster.data / "pg_hba.conf").write_text("hostssl all postgres 127.0.0.1/32 trust\n")
        cluster.start(f"-c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={base / 'server.crt'} "
                      f"-c ssl_key_file={base / 'server.key'}")
        dsn = (f"host=127.0.0.1 port={cluster.port} user={PG_USER} dbname=postgres sslmode=verify-full "
               f"sslrootcert={pki.root / 'ca.pem'}")
        with psycopg.connect(dsn) as conn:
            assert [s.version for s in migrate(conn, BROKER_PG)] == list(range(1, BROKER_PG.latest + 1))
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)

        async def the_brokers_store() -> int:
            store = await BrokerStore.open_postgres(dsn)  # as the broker opens it, from its config
            try:
                return await store.enforced_policy_version()
            finally:
                await store.close()

        assert asyncio.run(the_brokers_store()) == 0
        other = CertificateAuthority.init(base / "other-ca")
        with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
            psycopg.connect(dsn.replace(str(pki.root / "ca.pem"), str(other.directory / "ca.pem")))
        with pytest.raises(psycopg.OperationalError):  # and no plain connection at all
            psycopg.connect(dsn.replace("sslmode=verify-full", "sslmode=disable"))
