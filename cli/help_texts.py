"""The help a regisseur reads (``--help`` of their commands), translated like everything else they read.

Help texts live where Typer wants them (docstrings, ``help=`` of options and groups); this module walks
the regisseur's command groups, hands every text to gettext once at start-up, and lists them for the
catalogue (``scripts/nl_catalogue.py``), so no help text can be missed by extraction.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import typer
from typer.models import ArgumentInfo, OptionInfo

# The command groups a regisseur or table member uses; operators' tools (pki, policy, audit, broker, ...)
# stay English like the engineering docs.
REGISSEUR_GROUPS = ("case", "alert", "inbox", "outbox", "handover", "agreement", "retention", "subject", "liaison",
                    "disclosure", "directory", "report", "user")


def _infos(callback: Callable[..., Any]) -> Iterator[OptionInfo | ArgumentInfo]:
    for p in inspect.signature(callback, eval_str=True).parameters.values():
        if isinstance(p.default, OptionInfo | ArgumentInfo):
            yield p.default
        for meta in getattr(p.annotation, "__metadata__", ()):
            if isinstance(meta, OptionInfo | ArgumentInfo):
                yield meta


def _visit(group: typer.Typer, change: Callable[[str], str]) -> None:
    if group.info.help:
        group.info.help = change(str(group.info.help))
    for command in group.registered_commands:
        doc = command.help or inspect.getdoc(command.callback) or ""
        if doc and command.callback is not None:
            command.help = change(str(doc))
            for info in _infos(command.callback):
                if info.help:
                    info.help = change(info.help)
    if group.registered_callback is not None and group.registered_callback.callback is not None:
        for info in _infos(group.registered_callback.callback):
            if info.help:
                info.help = change(info.help)
        group_doc = inspect.getdoc(group.registered_callback.callback)
        if group_doc:
            group.registered_callback.help = change(group_doc)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _visit(sub.typer_instance, change)


def regisseur_groups(app: typer.Typer) -> Iterator[typer.Typer]:
    for sub in app.registered_groups:
        if sub.name in REGISSEUR_GROUPS and sub.typer_instance is not None:
            yield sub.typer_instance


def translate(app: typer.Typer, gettext: Callable[[str], str]) -> None:
    """Replace the regisseur's help texts by their translation (once, before Typer builds the commands)."""
    seen: set[int] = set()
    for group in regisseur_groups(app):
        if id(group) not in seen:  # one Typer may be mounted twice
            seen.add(id(group))
            _visit(group, gettext)


def texts(app: typer.Typer) -> list[str]:
    """Every help text of the regisseur's commands, for the catalogue."""
    found: list[str] = []

    def keep(text: str) -> str:
        found.append(text)
        return text

    for group in regisseur_groups(app):
        _visit(group, keep)
    return sorted(set(found))
