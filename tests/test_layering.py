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
