"""What a regisseur reads, in Dutch by default and in English on request (gettext, catalogues by Babel).

Message ids are the English texts; ``olievlek/locale/nl/LC_MESSAGES/olievlek.po`` holds the Dutch, and
its compiled ``.mo`` is committed next to it (``make catalogues`` rebuilds both from the sources), so a
fresh clone speaks Dutch without a build step. Code, logs and engineering docs stay English.
"""

from __future__ import annotations

import gettext
import os
from pathlib import Path

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "olievlek"
LANGUAGES = ("nl", "en")
DEFAULT = "nl"


def language(requested: str | None = None) -> str:
    """The language to speak: the one asked for, else OLIEVLEK_LANG, else Dutch."""
    lang = (requested or os.environ.get("OLIEVLEK_LANG") or DEFAULT).lower()[:2]
    return lang if lang in LANGUAGES else DEFAULT


def translator(lang: str | None = None) -> gettext.NullTranslations:
    lang = language(lang)
    if lang == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang])
