"""What a regisseur reads, in Dutch by default and in English on request (gettext, catalogues by Babel).

Message ids are the English texts; ``olievlek/locale/nl/LC_MESSAGES/olievlek.po`` holds the Dutch, and
its compiled ``.mo`` is committed next to it (``make catalogues`` rebuilds both from the sources), so a
fresh clone speaks Dutch without a build step. Code, logs and engineering docs stay English.

The language is, in order: the one set for the current request (a node answers each local request in
the language the CLI asked for), ``OLIEVLEK_LANG`` (the CLI's ``--lang`` sets it), else Dutch.
"""

from __future__ import annotations

import contextvars
import functools
import gettext
import os
from pathlib import Path

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "olievlek"
LANGUAGES = ("nl", "en")
DEFAULT = "nl"

_request_language: contextvars.ContextVar[str] = contextvars.ContextVar("olievlek_language", default="")


def language(requested: str | None = None) -> str:
    """The language to speak: the one asked for, the request's, OLIEVLEK_LANG, else Dutch."""
    lang = (requested or _request_language.get() or os.environ.get("OLIEVLEK_LANG") or DEFAULT).lower()[:2]
    return lang if lang in LANGUAGES else DEFAULT


def translator(lang: str | None = None) -> gettext.NullTranslations:
    return _catalogue(language(lang))


@functools.cache
def _catalogue(lang: str) -> gettext.NullTranslations:
    if lang == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang])


def _(message: str) -> str:
    """The message in the current language."""
    return _catalogue(language()).gettext(message)


def N_(message: str) -> str:
    """Marks a message id for extraction; it is translated where it is shown."""
    return message


def for_request(lang: str) -> contextvars.Token[str]:
    """Answer the current request (this task and what it awaits) in ``lang``."""
    return _request_language.set(lang if lang in LANGUAGES else "")


def end_request(token: contextvars.Token[str]) -> None:
    _request_language.reset(token)
