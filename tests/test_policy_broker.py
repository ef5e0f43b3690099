"""The broker enforces only a signed, current bundle and keeps the last good one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from olievlek.broker.server import BrokerServer

from olievlek.errors import ConfigError
from olievlek.policy.signing import load_signing_key, sign_bundle

from .conftest import Pki, broker_config

pytestmark = pytest.mark.timeout(60)


def resign(fed: Path, admins: tuple[int, ...] = (1, 2)) -> None:
    for i in admins:
        sign_bundle(fed / "bundle", load_signing_key(fed / "admins" / f"admin{i}.key"))


def set_version(fed: Path, version: int) -> None:
    meta = fed / "bundle" / "bundle.yaml"
    lines = [f"version: {version}" if line.startswith("version:") else line for line in meta.read_text().splitlines()]
    meta.write_text("\n".join(lines) + "\n")


async def loads(broker: BrokerServer) -> list[tuple[int, str, str]]:
    assert broker._store is not None
    rows = await broker._store._db.fetchall("SELECT version, outcome, reason FROM policy_loads ORDER BY id")
    return [(int(r[0]), r[1], r[2]) for r in rows]


async def test_refused_bundles_leave_the_last_good_one_enforced(broker: BrokerServer, policy_dir: Path) -> None:
    assert broker.service is not None
    good = broker.service.bundle
    # 1. Under-signed new version.
    set_version(policy_dir, 2)
    resign(policy_dir, admins=(1,))
    assert await broker.reload_policy() is False
    # 2. Broken content, properly signed.
    rules = policy_dir / "bundle" / "rules.yaml"
    rules.write_text(rules.read_text().replace("kinds: [alert.move]", "kinds: [alert.teleport]", 1))
    resign(policy_dir)
    assert await broker.reload_policy() is False
    assert broker.service.bundle is good
    # 3. A good version 3 is taken; then version 2 again is a rollback and refused.
    shutil.rmtree(policy_dir / "bundle")
    shutil.copytree(Path(__file__).resolve().parent.parent / "policies" / "flanders", policy_dir / "bundle")
    set_version(policy_dir, 3)
    resign(policy_dir)
    assert await broker.reload_policy() is True
    assert broker.service.bundle.version == 3
    set_version(policy_dir, 2)
    resign(policy_dir)
    assert await broker.reload_policy() is False
    assert broker.service.bundle.version == 3
    history = await loads(broker)
    assert [(v, o) for v, o, _ in history] == [(1, "enforced"), (0, "refused"), (0, "refused"), (3, "enforced"),
                                               (2, "refused")]
    assert "1 valid signature(s); the root requires 2" in history[1][2]
    assert "alert.teleport" in history[2][2] and "rules.yaml:" in history[2][2]
    assert "lower than version 3" in history[4][2]


async def test_broker_will_not_start_on_an_unsigned_bundle(pki: Pki, tmp_path: Path, policy_dir: Path) -> None:
    (policy_dir / "bundle" / "signatures.json").unlink()
    with pytest.raises(ConfigError, match="no valid signed policy bundle"):
        await BrokerServer(broker_config(pki, tmp_path)).start()
