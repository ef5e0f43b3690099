"""National register numbers: validation table and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from olievlek.errors import InvalidIdentifier
from olievlek.nrn import normalise_national_number


def with_check(first9: str, post2000: bool) -> str:
    base = int(("2" if post2000 else "") + first9)
    return f"{first9}{97 - base % 97:02d}"


VALID = [
    ("85.07.30-033.28", "85073003328"),          # pre-2000 rule (canary of the tests)
    ("93.05.18-223.61", "93051822361"),          # demo person
    (with_check("010203145", True), None),       # post-2000 rule
    (with_check("850000123", False), None),      # unknown day and month
    (with_check("852730123", False), None),      # bis number, sex unknown (+20)
    (with_check("854730123", False), None),      # bis number, sex known (+40)
    (with_check("854000123", False), None),      # bis number with unknown date
]
# A first-nine whose remainder is 0 gets check 97.
REMAINDER_ZERO = next(f"{n:09d}" for n in range(850730000, 850731000) if n % 97 == 0)


@pytest.mark.parametrize(("raw", "expected"), VALID, ids=[v[0] for v in VALID])
def test_valid(raw: str, expected: str | None) -> None:
    assert normalise_national_number(raw) == (expected or raw)


def test_remainder_zero_gives_97() -> None:
    assert normalise_national_number(REMAINDER_ZERO + "97") == REMAINDER_ZERO + "97"


INVALID = [
    ("85.07.30-033.29", "check digits"),
    ("8507300332", "11 digits"),
    ("850730033288", "11 digits"),
    ("85.13.30-033.28", "month"),
    ("85.07.32-033.28", "day"),
    ("85.67.30-033.28", "month"),
    ("85O73003328", "only digits"),
    ("".join(chr(0xFF10 + int(c)) for c in "85073003328"), "only digits"),  # full-width digits
]


@pytest.mark.parametrize(("raw", "reason"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_names_the_reason_never_the_number(raw: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        normalise_national_number(raw)
    assert reason in info.value.message
    digits = "".join(c for c in raw if c.isdigit())
    assert digits not in info.value.message


@given(st.from_regex(r"[0-9]{2}(0[0-9]|1[0-2]|2[0-9]|3[0-2]|4[0-9]|5[0-2])(0[0-9]|[12][0-9]|3[01])[0-9]{3}",
                     fullmatch=True), st.booleans(), st.sampled_from(["", ".", "-", " "]))
def test_normalisation_is_idempotent(first9: str, post2000: bool, sep: str) -> None:
    number = with_check(first9, post2000)
    formatted = sep.join([number[:2], number[2:4], number[4:6], number[6:9], number[9:]])
    once = normalise_national_number(formatted)
    assert once == number
    assert normalise_national_number(once) == once
