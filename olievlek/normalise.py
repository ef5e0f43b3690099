"""Identifier normalisation before pseudonymisation.

Two identifiers of one person must give one PRF input, whoever types them:

- a national register or bis number becomes its 11 digits (``olievlek.nrn``);
- the fallback identity (names + birth date) is normalised as follows, in order:
  Unicode NFKC; case folding; diacritics removed (NFKD, combining marks dropped);
  hyphens, apostrophes, dots and commas become spaces; runs of whitespace become
  one space; leading and trailing spaces go. So "Van den Berg-Janssens" and
  "van den berg janssens" agree, as do "Zoë" and "ZOE". Birth date is ISO 8601
  (YYYY-MM-DD); day or month may be 00 when unknown.

Each kind of identifier has its own prefix in the PRF input, so a number can
never collide with a name. A match on the fallback identity is only ever
*probable*.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from olievlek.errors import InvalidIdentifier
from olievlek.i18n import _
from olievlek.nrn import normalise_national_number

_SEPARATORS = re.compile("[-\u2010\u2011\u2012\u2013\u2014'\u2019.,]")
_SPACES = re.compile(r"\s+")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


@dataclass(frozen=True, slots=True)
class PrfInput:
    """One identifier, normalised, ready to be pseudonymised."""

    kind: str  # "nrn" | "fallback"
    value: bytes

    @property
    def probable(self) -> bool:
        return self.kind == "fallback"


def normalise_name(raw: str) -> str:
    text = unicodedata.normalize("NFKC", raw).casefold()
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = _SEPARATORS.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def normalise_birth_date(raw: str) -> str:
    m = _DATE.fullmatch(raw.strip())
    if not m:
        raise InvalidIdentifier(_("a birth date is written YYYY-MM-DD (00 for an unknown day or month)"))
    year, month, day = (int(g) for g in m.groups())
    if not 1900 <= year <= 2100 or month > 12 or day > 31:
        raise InvalidIdentifier(_("the birth date is not a possible date"))
    return m.group(0)


def nrn_input(raw: str) -> PrfInput:
    return PrfInput("nrn", b"nrn:" + normalise_national_number(raw).encode())


def fallback_input(family: str, given: str, birth_date: str) -> PrfInput:
    fam, giv = normalise_name(family), normalise_name(given)
    if not fam or not giv:
        raise InvalidIdentifier(_("the fallback identity needs a family name and given names"))
    return PrfInput("fallback", f"fallback:{fam}|{giv}|{normalise_birth_date(birth_date)}".encode())


def identity_inputs(national_number: str, family: str, given: str, birth_date: str) -> list[PrfInput]:
    """Every identifier a person is given by: the number first, then the fallback identity when a birth
    date is there (a person may be known by either, so both are pseudonymised).

    Raises:
        InvalidIdentifier: neither is given, or one that is given is not valid (says why, never what).
    """
    inputs = [nrn_input(national_number)] if national_number.strip() else []
    if birth_date.strip():
        inputs.append(fallback_input(family, given, birth_date))
    if not inputs:
        raise InvalidIdentifier(_("give a national register number, or names with a birth date"))
    return inputs
