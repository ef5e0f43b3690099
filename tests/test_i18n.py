"""The Dutch catalogue is complete, compiled and in step with the sources."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from olievlek.i18n import LOCALE_DIR, translator

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parent.parent


def _catalog():  # type: ignore[no-untyped-def]
    with (LOCALE_DIR / "nl" / "LC_MESSAGES" / "olievlek.po").open("rb") as f:
        return read_po(f)


def test_no_message_is_left_untranslated() -> None:
    catalog = _catalog()
    untranslated = [m.id for m in catalog if m.id and not m.string]
    assert untranslated == []
    assert len([m for m in catalog if m.id]) > 50


def test_the_compiled_catalogue_is_the_committed_one() -> None:
    buf = io.BytesIO()
    write_mo(buf, _catalog())
    assert (LOCALE_DIR / "nl" / "LC_MESSAGES" / "olievlek.mo").read_bytes() == buf.getvalue()


def test_every_message_id_in_the_sources_is_in_the_catalogue(tmp_path: Path) -> None:
    pot = tmp_path / "now.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg", "-k", "N_",
                    "-k", "_", "--no-location", "-o", str(pot), "."], cwd=REPO, check=True, capture_output=True)
    with pot.open("rb") as f:
        ids = {m.id for m in read_po(f) if m.id}
    from olievlek.cli import help_texts
    from olievlek.cli.app import app  # imported in English (conftest): the help texts are the message ids

    ids |= set(help_texts.texts(app))
    assert len(ids) > 250
    assert ids - {m.id for m in _catalog()} == set()  # run `make catalogues`


def test_dutch_is_the_default_and_english_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLIEVLEK_LANG", raising=False)
    assert translator().gettext("withheld") == "achtergehouden"
    assert translator("en").gettext("withheld") == "withheld"
    monkeypatch.setenv("OLIEVLEK_LANG", "en")
    assert translator().gettext("withheld") == "withheld"


async def test_a_regisseur_uses_the_node_in_dutch(broker, nodes) -> None:  # type: ignore[no-untyped-def]
    gent = await nodes.start("gent", broker.port)
    sock = str(gent.config.socket)
    bad = json.dumps({"national_number": "85073003399", "given_names": "A", "family_name": "B"})

    def run(*args: str, lang: str | None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "OLIEVLEK_LANG"} | ({"OLIEVLEK_LANG": lang} if lang else {})
        return subprocess.run([sys.executable, "-m", "olievlek", *args], input=stdin, capture_output=True,
                              text=True, timeout=60, check=False, env=env)

    for lang, error, empty, opened in ((None, "de controlecijfers kloppen niet", "inbox is leeg", "dossier 1 geopend"),
                                       ("en", "the check digits do not match", "inbox is empty", "case 1 opened")):
        r = await asyncio.to_thread(run, "case", "open", "--socket", sock, lang=lang, stdin=bad)
        assert r.returncode == 2 and error in r.stderr and "85073003399" not in r.stderr, r.stderr
        r = await asyncio.to_thread(run, "inbox", "--socket", sock, lang=lang)
        assert empty in r.stdout, r.stdout
        good = json.dumps({"national_number": "85.07.30-033.28", "given_names": "A", "family_name": "B"})
        r = await asyncio.to_thread(run, "case", "open", "--socket", sock, "--phase", "signal", lang=lang, stdin=good)
        assert opened.replace("1", "2" if lang else "1") in r.stdout, r.stdout


def _as_a_person(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a regisseur runs it: no language set anywhere, so the default (Dutch)."""
    env = {k: v for k, v in os.environ.items() if k != "OLIEVLEK_LANG"} | {"COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "olievlek", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False, env=env)


async def test_a_regisseur_moves_a_case_and_the_next_one_takes_it_over_in_dutch(broker, nodes) -> None:  # type: ignore[no-untyped-def]
    gent = str((await nodes.start("gent", broker.port)).config.socket)
    antwerpen = str((await nodes.start("antwerpen", broker.port)).config.socket)
    person = json.dumps({"national_number": "85.07.30-033.28", "given_names": "A", "family_name": "B"})

    async def run(*args: str, stdin: str | None = None) -> str:
        r = await asyncio.to_thread(_as_a_person, *args, stdin=stdin)
        assert r.returncode == 0, r.stdout + r.stderr
        return " ".join(r.stdout.split())

    assert "dossier 1 geopend" in await run("case", "open", "--socket", gent, "--phase", "follow-up",
                                            "--concern", "right-wing", "--risk", "medium", stdin=person)
    # This federation has no witness running: the broker's answer is not final, and is not worded as if it were.
    sent = await run("alert", "move", "--socket", gent, "--case", "1", "--to", "11002")
    assert "naar antwerpen: wacht op getuigen" in sent and "aanvaard" not in sent, sent
    for _ in range(100):
        if "alert.move" in (listing := await run("inbox", "--socket", antwerpen)):
            break
        await asyncio.sleep(0.1)
    assert "gent" in listing and "inbox is leeg" not in listing, listing
    assert "gekoppeld aan persoon" in await run("inbox", "identify", "--socket", antwerpen,
                                                stdin=json.dumps({"national_number": "85.07.30-033.28"}))
    accepted = await run("inbox", "accept", "--socket", antwerpen, "--item", "1")
    assert "item 1 aanvaard: dossier 1 geopend in vooronderzoek" in accepted, accepted
    for english in ("accepted by", "case 1 opened", "pending identification", "matched"):
        assert english not in listing + accepted


def test_the_help_a_regisseur_reads_is_dutch_unless_asked() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OLIEVLEK_LANG"}

    def run(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "olievlek", *args], capture_output=True, text=True, timeout=60,
                              check=True, env=env | {"COLUMNS": "200"}).stdout

    assert "Open een dossier" in run("case", "open", "--help")
    assert "Open a case" in run("--lang", "en", "case", "open", "--help")
    assert "Vraag het verwijzingsrepertorium" in run("liaison", "--help")


def test_an_error_raised_inside_a_write_is_translated_when_answered() -> None:
    from olievlek.node.request_error import RequestError

    error = RequestError.later("not_open", "case {case_id} is not open", case_id=3)
    assert error.message == "case 3 is not open"  # the writer's own task knows no request language
    assert error.in_language(translator("nl").gettext) == "dossier 3 is niet open"
    assert error.in_language(translator("en").gettext) == "case 3 is not open"
