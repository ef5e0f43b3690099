"""Reading a bundle's YAML files while remembering where every value came from.

``yaml.compose`` gives the node tree with marks; we walk it next to the
loaded data and record (line, column) per path, so that a JSON Schema error
at ``rules/3/fields/1`` points at the exact spot in ``rules.yaml``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .diagnostics import Diagnostic

Path_ = tuple[str | int, ...]


@dataclass
class SourceFile:
    """One parsed YAML file with positions."""

    name: str  # as shown in diagnostics, relative to the bundle directory
    data: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def at(self, *path: str | int) -> tuple[int, int]:
        """The closest known position of a path (walking up to its parents)."""
        p: Path_ = tuple(path)
        while p not in self.marks and p:
            p = p[:-1]
        return self.marks.get(p, (1, 1))

    def diag(self, message: str, *path: str | int, severity: str = "error") -> Diagnostic:
        line, col = self.at(*path)
        return Diagnostic(self.name, line, col, message, severity)


def _walk(node: yaml.Node, path: Path_, marks: dict[Path_, tuple[int, int]]) -> None:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _walk(value, (*path, str(key.value)), marks)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _walk(value, (*path, i), marks)


def parse(path: Path, name: str) -> SourceFile | Diagnostic:
    """Parse one YAML file, or return the diagnostic that says why not."""
    try:
        text = path.read_text()
    except OSError as exc:
        return Diagnostic(name, 0, 0, f"cannot read: {exc.strerror}")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        return Diagnostic(name, line, col, f"malformed YAML: {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        return Diagnostic(name, 0, 0, f"malformed YAML: {exc}")
    src = SourceFile(name, data)
    if node is not None:
        _walk(node, (), src.marks)
    return src


def _schema() -> dict[str, Any]:
    text = resources.files("olievlek.policy").joinpath("schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


SCHEMA = _schema()


def validate(src: SourceFile, definition: str) -> list[Diagnostic]:
    """Validate a file against ``#/$defs/<definition>`` of the bundle schema."""
    schema = {"$ref": f"#/$defs/{definition}", "$defs": SCHEMA["$defs"]}
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(src.data), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        out.append(src.diag(f"{where}: {err.message}", *err.absolute_path))
    return out
