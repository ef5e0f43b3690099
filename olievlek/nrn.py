"""Belgian national register numbers (rijksregisternummer) and bis numbers.

Format YYMMDD-SSS-CC: birth date, serial, check digits. The check is
97 - (N mod 97) over the first nine digits for people born before 2000 and
over "2" followed by those digits for people born from 2000 on; a remainder of
0 gives 97. We do not know the century, so either rule may hold. Unknown day
or month is written 00. Bis numbers add 20 (sex unknown) or 40 (sex known) to
the month. Errors say what is wrong, never echo the number.
"""

from __future__ import annotations

import re

from olievlek.errors import InvalidIdentifier
from olievlek.i18n import _

_SEPARATORS = re.compile(r"[\s.\-/]")


def _check(first9: str) -> tuple[int, int]:
    old = 97 - int(first9) % 97
    new = 97 - int("2" + first9) % 97
    return old, new


def normalise_national_number(raw: str) -> str:
    """Return the 11 digits of a valid national register or bis number.

    Raises:
        InvalidIdentifier: wrong length, non-digits, impossible date, bad check digits.
    """
    digits = _SEPARATORS.sub("", raw)
    if not digits.isascii() or not digits.isdigit():
        raise InvalidIdentifier(_("a national register number has only digits and separators"))
    if len(digits) != 11:
        raise InvalidIdentifier(_("a national register number has 11 digits, this one has {value}")
                                  .format(value=len(digits)))
    month, day = int(digits[2:4]), int(digits[4:6])
    base_month = month % 20 if month >= 20 else month
    if month >= 60 or base_month > 12:
        raise InvalidIdentifier(_("the month part is not a month (00-12, +20 or +40 for bis numbers)"))
    if day > 31:
        raise InvalidIdentifier(_("the day part is not a day (00-31)"))
    if int(digits[9:]) not in _check(digits[:9]):
        raise InvalidIdentifier(_("the check digits do not match (mod-97, both century rules tried)"))
    return digits
