"""Errors and warnings about a bundle, each with file, line and column."""

from __future__ import annotations

from dataclasses import dataclass

from olievlek.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding. ``line`` and ``col`` are 1-based; 0 when unknown."""

    file: str
    line: int
    col: int
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"


class BundleError(ConfigError):
    """A bundle failed to load or verify; carries every error found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.findings = diagnostics
        head = "; ".join(str(d) for d in diagnostics[:3])
        more = f" (+{len(diagnostics) - 3} more)" if len(diagnostics) > 3 else ""
        super().__init__(f"policy bundle has {len(diagnostics)} error(s): {head}{more}")
