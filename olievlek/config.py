"""Reading service configuration files (YAML) into typed values."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from olievlek.errors import ConfigError
from olievlek.transport import TlsFiles


def load_yaml(path: Path) -> dict[str, Any]:
    """Load a YAML mapping; relative paths in it are resolved by the caller."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: configuration must be a mapping")
    return doc


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Around a configuration's settings: a value of the wrong type or shape is a ConfigError naming the
    file, never a bare TypeError from deep inside."""
    try:
        yield
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ConfigError(f"{path}: a setting has the wrong type or value ({type(exc).__name__}: {exc})") from None


def need(doc: dict[str, Any], key: str, where: Path) -> Any:
    if key not in doc:
        raise ConfigError(f"{where}: missing setting {key!r}")
    return doc[key]


def addresses(value: object, key: str, where: Path) -> tuple[str, ...]:
    """One ``host:port``, or a list of them (several instances of one service, tried in turn)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(a, str) and ":" in a for a in items):
        raise ConfigError(f"{where}: {key} is host:port, or a list of host:port (one per instance)")
    return tuple(str(a) for a in items)


def path_setting(doc: dict[str, Any], key: str, where: Path) -> Path:
    """A path setting, relative to the configuration file's directory."""
    p = Path(str(need(doc, key, where)))
    return p if p.is_absolute() else (where.parent / p)


def write_ready_file(path: Path, port: int) -> None:
    """Report a bound port atomically (write then rename), so readers never see half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)


def path_settings(doc: dict[str, Any], where: Path, *keys: str) -> dict[str, Path]:
    """Several required path settings at once, by name (for ``Config(**...)``)."""
    return {k: path_setting(doc, k, where) for k in keys}


def tls_setting(doc: dict[str, Any], where: Path) -> TlsFiles:
    """The ``ca``, ``tls_cert`` and ``tls_key`` settings of a service."""
    return TlsFiles(path_setting(doc, "ca", where), path_setting(doc, "tls_cert", where),
                    path_setting(doc, "tls_key", where))
