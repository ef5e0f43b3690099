"""A node's configuration file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from olievlek.config import addresses, load_yaml, need, path_setting, path_settings, reading, tls_setting
from olievlek.errors import ConfigError
from olievlek.identity import OrgKind, parse_org_id
from olievlek.policy.model import WitnessKey
from olievlek.transport import TlsFiles

from .access import ROLE_REQUEST_TTL_S


def _two(value: object, where: Path) -> tuple[str, str]:
    if not isinstance(value, list) or len(value) != 2:
        raise ConfigError(f"{where}: pseudonymisers must list exactly two operators (share 1, share 2)")
    return str(value[0]), str(value[1])


def _witnesses(value: object, where: Path) -> tuple[WitnessKey, ...]:
    """Configured witnesses: ``{identity: witness/<id>, key: <hex Ed25519>, key_name: ...}`` each."""
    if not isinstance(value, list):
        raise ConfigError(f"{where}: witnesses must be a list")
    out = []
    for i, w in enumerate(value):
        if not isinstance(w, dict) or not {"identity", "key"} <= set(w):
            raise ConfigError(f"{where}: witnesses[{i}] must give identity (witness/<id>) and key (hex); the "
                              "bundle's witnesses: section is where they normally come from")
        try:
            key = bytes.fromhex(str(w["key"]))
        except ValueError:
            raise ConfigError(f"{where}: witnesses[{i}].key is not hex") from None
        out.append(WitnessKey(str(w["identity"]), str(w.get("key_name", "")), key))
    return tuple(out)


def _flag(value: object, name: str, where: Path) -> bool:
    """A yes/no setting, written as true or false: a typo ("ture") must not switch a safeguard off or on."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {name} must be true or false")
    return value


@dataclass(frozen=True, slots=True)
class NodeConfig:
    org_id: str
    kind: OrgKind
    broker: tuple[str, ...]  # host:port of each broker instance, tried in turn (one, or a list)
    tls: TlsFiles
    sign_cert: Path
    sign_key: Path
    crl: Path
    bundle: Path  # bundle directory
    roots: Path  # root-of-trust directory; the node verifies the bundle's signatures too
    database: Path
    socket: Path
    pseudonymisers: tuple[str, str]  # host:port of operator 1 and operator 2
    log_public_key: Path  # the broker's tree-head key (hex), to check every audit proof
    ready_file: Path | None
    # Witnesses come from the bundle (``witnesses:``); these count only where the bundle names none.
    witnesses: tuple[WitnessKey, ...] = ()
    witness_quorum: int = 0  # may raise the bundle's quorum, never lower it
    log_shard: int = 1  # the broker's log shard: its checkpoints' origin is olievlek.<bundle name>/audit/<shard>

    metrics_listen: str | None = None  # e.g. 127.0.0.1:9465 for Prometheus; off when absent
    # A partition sends no reset: keepalive pings find a dead broker stream within
    # keepalive_s + keepalive_timeout_s. The broker's min_ping_interval_s must allow it.
    keepalive_s: float = 15.0
    keepalive_timeout_s: float = 10.0
    drain_grace_s: float = 10.0  # SIGTERM: how long in-flight sends and acks may take
    # The key-encryption key of the case file: a 0600 file, or the name of an environment variable
    # holding it (hex); see docs/case-file.md.
    kek_file: Path | None = None
    kek_env: str | None = None
    # Local users: these uids administer the node without being registered (default: the account
    # that runs it); ``users`` are registered at start-up - the first regisseur is set here, at install
    # (more with `olievlek user add`, which a second administrator confirms: node/access.py).
    administrators: frozenset[int] = frozenset()
    users: tuple[tuple[int, str, str], ...] = ()  # (uid, role, agency)
    # A node with one administrator: a role is granted at once (nobody could confirm it), countersigned in the
    # grant log for the data-protection officer. Explicit, off by default.
    single_administrator: bool = False
    role_request_ttl_s: float = ROLE_REQUEST_TTL_S  # a role request not confirmed within this expires
    socket_group: str | None = None  # the group whose members may reach the local socket
    # Retention counted from a case's closure, per lawful-basis code (a case names one at opening).
    retention_days: tuple[tuple[str, int], ...] = (("default", 730),)
    # Undecided disclosure requests are denied (expired) after this long; 0: the bundle's setting.
    disclosure_expiry_s: float = 0.0
    language: str = "nl"  # what the node answers its users in, unless a request asks otherwise
    # How often the node reads the log for what waits on a leaf (aggregated refusals, delivery gaps).
    log_watch_interval_s: float = 30.0
    # The witnesses (node/witness_watch.py): how often to check the latest cosigned head; when its age is a lag
    # warning; when a head this node held and the witnesses did not cosign is a fork alarm; how long an
    # outcome may wait for the witnesses before it shows as unconfirmed.
    witness_check_interval_s: float = 10.0
    witness_lag_s: float = 60.0
    fork_after_s: float = 120.0
    fork_after_entries: int = 100_000
    confirm_within_s: float = 600.0

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        with reading(path):
            doc = load_yaml(path)
            return cls(
                org_id=parse_org_id(str(need(doc, "org_id", path))),
                kind=OrgKind(str(need(doc, "kind", path))),
                broker=addresses(need(doc, "broker", path), "broker", path),
                tls=tls_setting(doc, path),
                **path_settings(doc, path, "sign_cert", "sign_key", "crl", "bundle", "roots", "database", "socket"),
                pseudonymisers=_two(need(doc, "pseudonymisers", path), path),
                log_public_key=path_setting(doc, "log_public_key", path),
                ready_file=path_setting(doc, "ready_file", path) if "ready_file" in doc else None,
                witnesses=_witnesses(doc.get("witnesses", []), path),
                witness_quorum=int(doc.get("witness_quorum", 0)),
                log_shard=int(doc.get("log_shard", 1)),
                metrics_listen=str(doc["metrics_listen"]) if doc.get("metrics_listen") else None,
                keepalive_s=float(doc.get("keepalive_s", 15.0)),
                keepalive_timeout_s=float(doc.get("keepalive_timeout_s", 10.0)),
                drain_grace_s=float(doc.get("drain_grace_s", 10.0)),
                kek_file=path_setting(doc, "kek_file", path) if "kek_file" in doc else None,
                kek_env=str(doc["kek_env"]) if doc.get("kek_env") else None,
                administrators=frozenset(int(u) for u in doc.get("administrators", [os.getuid()])),
                users=tuple((int(u["uid"]), str(u["role"]), str(u.get("agency", ""))) for u in doc.get("users", [])),
                single_administrator=_flag(doc.get("single_administrator", False), "single_administrator", path),
                role_request_ttl_s=float(doc.get("role_request_ttl_s", ROLE_REQUEST_TTL_S)),
                socket_group=str(doc["socket_group"]) if doc.get("socket_group") else None,
                retention_days=tuple((str(k), int(v)) for k, v in doc.get("retention_days", {"default": 730}).items()),
                disclosure_expiry_s=float(doc.get("disclosure_expiry_s", 0.0)),
                language=str(doc.get("language", "nl")),
                log_watch_interval_s=float(doc.get("log_watch_interval_s", 30.0)),
                witness_check_interval_s=float(doc.get("witness_check_interval_s", 10.0)),
                witness_lag_s=float(doc.get("witness_lag_s", 60.0)),
                fork_after_s=float(doc.get("fork_after_s", 120.0)),
                fork_after_entries=int(doc.get("fork_after_entries", 100_000)),
                confirm_within_s=float(doc.get("confirm_within_s", 600.0)),
            )
