"""An operator's configuration file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from olievlek.config import addresses, load_yaml, need, path_setting, path_settings, reading, tls_setting
from olievlek.errors import ConfigError
from olievlek.identity import parse_org_id
from olievlek.transport import TlsFiles


@dataclass(frozen=True, slots=True)
class PseudonymiserConfig:
    org_id: str  # the operator's organisation (kind pseudonymiser)
    share: int  # 1 or 2
    listen: str
    server_tls: TlsFiles  # the operator's gRPC server certificate
    client_tls: TlsFiles  # its organisation certificate, to call the broker
    sign_cert: Path
    sign_key: Path
    crl: Path
    bundle: Path
    roots: Path
    database: Path  # holds this operator's key shares and counts, nothing else
    broker: tuple[str, ...]  # the broker's instances its reports go to, tried in turn (none: no reports)
    report_interval_s: float
    ready_file: Path | None

    @classmethod
    def load(cls, path: Path, share: int | None = None) -> PseudonymiserConfig:
        with reading(path):
            doc = load_yaml(path)
            configured = int(need(doc, "share", path))
            if share is not None and share != configured:
                raise ConfigError(f"{path} is the configuration of share {configured}, not {share}")
            if configured not in (1, 2):
                raise ConfigError(f"{path}: share must be 1 or 2")
            return cls(
                org_id=parse_org_id(str(need(doc, "org_id", path))),
                share=configured,
                listen=str(doc.get("listen", "127.0.0.1:0")),
                server_tls=tls_setting(doc, path),
                **path_settings(doc, path, "sign_cert", "sign_key", "crl", "bundle", "roots", "database"),
                client_tls=TlsFiles(path_setting(doc, "ca", path), path_setting(doc, "client_cert", path),
                                    path_setting(doc, "client_key", path)),
                broker=addresses(doc["broker"], "broker", path) if doc.get("broker") else (),
                report_interval_s=float(doc.get("report_interval_s", 300)),
                ready_file=path_setting(doc, "ready_file", path) if "ready_file" in doc else None,
            )
