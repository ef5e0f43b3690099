"""The attack sample: synthetic histories of eight quarters, each protected quarter after quarter as a node
does and then attacked whole by the exact integer attacker. ``make test`` runs two short ones; ``make chaos``
the sample's size (``SDC_HISTORIES=30 SDC_QUARTERS=8``). The seed is printed for replay."""

from __future__ import annotations

import os
import random

import pytest

from .disclosure_attacker import intervals, random_history
from .test_disclosure_attack import _protected, publish

pytestmark = pytest.mark.timeout(int(os.environ.get("SDC_TIMEOUT_S", "120")))


def test_a_sample_of_histories_keeps_every_protection_interval() -> None:
    histories, quarters = int(os.environ.get("SDC_HISTORIES", "2")), int(os.environ.get("SDC_QUARTERS", "4"))
    seed = int(os.environ.get("SDC_SEED", "20261207"))
    print(f"disclosure sample: {histories} histories x {quarters} quarters, seed {seed}")
    rng = random.Random(seed)
    withheld_cells = 0
    for h in range(histories):
        shown, withheld, truth = publish(f"m{h}", random_history(rng, quarters))
        withheld_cells += len(withheld)
        bad = {c: iv for c, iv in intervals(shown, withheld).items() if not _protected(truth[c], *iv)}
        assert bad == {}, (h, bad)
    print(f"{withheld_cells} withheld cells audited")
