"""The broker's configuration file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from olievlek import timing
from olievlek.config import load_yaml, path_setting, path_settings, reading, tls_setting
from olievlek.errors import ConfigError
from olievlek.ratelimit import Limit
from olievlek.transport import TlsFiles

from .service import Limits


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    listen: str  # host:port; port 0 picks a free port, reported in ready_file
    tls: TlsFiles
    crl: Path
    bundle: Path  # bundle directory
    roots: Path  # directory of <n>.root.json, version 1 pinned at deployment
    database: Path
    log_key: Path  # Ed25519 key that signs tree heads (PEM, 0600)
    ready_file: Path | None
    max_clock_skew_s: int = timing.CLOCK_WINDOW_MS // 1000
    audit_metadata_retention_days: int = 730  # leaves stay forever; their metadata this long
    metrics_listen: str | None = None  # e.g. 127.0.0.1:9464 for Prometheus; off when absent
    # Flow control: at most this many undelivered items per recipient; more is refused (QUEUE_FULL).
    max_queue_per_recipient: int = 10_000
    # ... and at most this many of them from one sender, so no organisation can fill another's queue.
    max_queue_per_sender: int = 2_000
    # How often expired deliveries are looked for (their time-to-live comes from the rule).
    expiry_interval_s: float = timing.EXPIRY_SWEEP_MS / 1000
    # Keepalive pings are allowed this often; must not exceed the nodes' keepalive interval,
    # or the server answers pings with GOAWAY too_many_pings.
    min_ping_interval_s: float = 5.0
    # Per-identity rate limits and refusal aggregation (``rate_limits:``; docs/authorisation.md).
    limits: Limits = field(default_factory=Limits)
    # The log's shard: its checkpoints' origin is olievlek.<bundle name>/audit/<shard> (a restore may need
    # a new shard, and a new shard is a new origin).
    log_shard: int = 1
    # Witnesses the log pushes its latest checkpoint to (c2sp.org/tlog-witness): the bundle names them and
    # their keys; here is where they listen. At most once per push_interval_s.
    witness_push: tuple[tuple[str, str], ...] = ()  # (identity witness/<id>, submission URL prefix)
    push_interval_s: float = 10.0
    witness_ca: Path | None = None  # the witnesses' TLS roots; default: the federation CA (tls.ca)
    # ``storage: {engine: postgresql, dsn: ...}``: the store on PostgreSQL (docs/storage.md); None: SQLite in
    # ``database`` (whose folder keeps the CRL number either way).
    postgres_dsn: str | None = None
    # ``storage: {..., call_timeout_s}``: how long one database call may take before the broker gives up its
    # connection (a silent network: no answer, no reset) and the call fails - above the statement timeout.
    postgres_call_timeout_s: float = 35.0
    # Several instances over one PostgreSQL database (docs/high-availability.md): this one's name (default:
    # host, process and a random part) and how often it checks which streams it still owns and which of their
    # queues another instance moved - the most that adds to a delivery's latency.
    instance_name: str | None = None
    instance_poll_ms: int = 200
    ready_listen: str | None = None  # host:port of plain HTTP GET /ready, for a load balancer; off when absent

    @classmethod
    def load(cls, path: Path) -> BrokerConfig:
        with reading(path):
            doc = load_yaml(path)
            return cls(
                listen=str(doc.get("listen", "127.0.0.1:0")),
                tls=tls_setting(doc, path),
                **path_settings(doc, path, "crl", "bundle", "roots", "database"),
                log_key=path_setting(doc, "log_key", path),
                ready_file=path_setting(doc, "ready_file", path) if "ready_file" in doc else None,
                max_clock_skew_s=int(doc.get("max_clock_skew_s", timing.CLOCK_WINDOW_MS // 1000)),
                audit_metadata_retention_days=int(doc.get("audit_metadata_retention_days", 730)),
                metrics_listen=str(doc["metrics_listen"]) if doc.get("metrics_listen") else None,
                max_queue_per_recipient=int(doc.get("max_queue_per_recipient", 10_000)),
                max_queue_per_sender=int(doc.get("max_queue_per_sender", 2_000)),
                expiry_interval_s=float(doc.get("expiry_interval_s", 30.0)),
                min_ping_interval_s=float(doc.get("min_ping_interval_s", 5.0)),
                limits=_limits(doc.get("rate_limits", {}), path),
                log_shard=int(doc.get("log_shard", 1)),
                witness_push=tuple((str(w["identity"]), str(w["url"])) for w in doc.get("witness_push", [])),
                push_interval_s=float(doc.get("push_interval_s", 10.0)),
                witness_ca=path_setting(doc, "witness_ca", path) if "witness_ca" in doc else None,
                postgres_dsn=_storage(doc.get("storage"), path),
                postgres_call_timeout_s=float((doc.get("storage") or {}).get("call_timeout_s", 35.0)),
                instance_name=str(doc["instance_name"]) if doc.get("instance_name") else None,
                instance_poll_ms=int(doc.get("instance_poll_ms", 200)),
                ready_listen=str(doc["ready_listen"]) if doc.get("ready_listen") else None,
            )


def _storage(doc: object, where: Path) -> str | None:
    """``storage: {engine: sqlite}`` (the default) or ``{engine: postgresql, dsn: "host=... dbname=...
    sslmode=verify-full"}``: the DSN for PostgreSQL, None for SQLite."""
    if doc is None:
        return None
    if not isinstance(doc, dict) or set(doc) - {"engine", "dsn", "call_timeout_s"}:
        raise ConfigError(f"{where}: storage is {{engine: sqlite}} or {{engine: postgresql, dsn: ...}}")
    engine = doc.get("engine", "sqlite")
    if engine == "sqlite":
        return None
    if engine != "postgresql" or not isinstance(doc.get("dsn"), str) or not doc["dsn"]:
        raise ConfigError(f"{where}: storage engine {engine!r}: write engine: postgresql with a dsn, or engine: "
                          "sqlite")
    return str(doc["dsn"])


def _limits(doc: object, where: Path) -> Limits:
    """``rate_limits: {calls_per_s, call_burst, reads_per_s, read_burst, refusals_per_s, refusal_burst,
    refusal_interval_s, individual_refusals}``; each optional."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: rate_limits must be a mapping")
    unknown = set(doc) - {"calls_per_s", "call_burst", "reads_per_s", "read_burst", "refusals_per_s",
                          "refusal_burst", "refusal_interval_s", "individual_refusals"}
    if unknown:
        raise ConfigError(f"{where}: rate_limits has unknown setting(s) {sorted(unknown)}")
    d = Limits()
    try:
        return Limits(
            calls=Limit(float(doc.get("calls_per_s", d.calls.per_s)), float(doc.get("call_burst", d.calls.burst))),
            reads=Limit(float(doc.get("reads_per_s", d.reads.per_s)), float(doc.get("read_burst", d.reads.burst))),
            refusals=Limit(float(doc.get("refusals_per_s", d.refusals.per_s)),
                           float(doc.get("refusal_burst", d.refusals.burst))),
            refusal_interval_ms=int(float(doc.get("refusal_interval_s", d.refusal_interval_ms / 1000)) * 1000),
            individual_refusals=int(doc.get("individual_refusals", d.individual_refusals)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: rate_limits: {exc}") from None


