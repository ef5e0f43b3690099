"""Reading identifiers the safe way: prompt, stdin or a file — never argv.

Command-line arguments are visible to every user of the machine (ps,
/proc/<pid>/cmdline), so no command takes an identifier as an argument.
Stdin and files hold a JSON object::

    {"national_number": "85.07.30-033.28", "given_names": "…", "family_name": "…", "birth_date": "1985-07-30"}

``birth_date`` and ``address`` are optional; with the names, the birth date adds the fallback identity.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from olievlek.errors import ConfigError
from olievlek.i18n import _
from olievlek.v1 import local_pb2

FIELDS = ("national_number", "given_names", "family_name", "birth_date", "address")


def from_json(text: str, source: str) -> local_pb2.Identity:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the text itself may hold an identifier.
        raise ConfigError(_("{source}: not a JSON object (line {lineno}, column {colno})")
                            .format(source=source, lineno=exc.lineno, colno=exc.colno)) from None
    if not isinstance(doc, dict):
        raise ConfigError(_("{source}: expected a JSON object with {value}")
                            .format(source=source, value=', '.join(FIELDS)))
    unknown = set(doc) - set(FIELDS)
    if unknown:
        raise ConfigError(_("{source}: unknown keys {value}").format(source=source, value=sorted(unknown)))
    return local_pb2.Identity(**{k: str(doc.get(k, "")) for k in FIELDS})


def read_identity(from_file: Path | None, *, names: bool) -> local_pb2.Identity:
    """An identity from a file, from piped stdin, or from an interactive prompt."""
    if from_file is not None:
        try:
            return from_json(from_file.read_text(), str(from_file))
        except OSError as exc:
            raise ConfigError(_("cannot read {from_file}: {strerror}")
                                .format(from_file=from_file, strerror=exc.strerror)) from exc
    if not sys.stdin.isatty():
        return from_json(sys.stdin.read(), "stdin")
    number = typer.prompt(_("National register number"), hide_input=True)
    if not names:
        return local_pb2.Identity(national_number=number)
    given = typer.prompt(_("Given names"))
    family = typer.prompt(_("Family name"))
    birth = typer.prompt(_("Birth date (YYYY-MM-DD, optional)"), default="", show_default=False)
    address = typer.prompt(_("Address (optional)"), default="", show_default=False)
    return local_pb2.Identity(national_number=number, given_names=given, family_name=family, birth_date=birth,
                              address=address)
