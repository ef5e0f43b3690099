"""Fill the Dutch catalogue from the template: `make catalogues` runs it after `pybabel extract`.

The Dutch texts live here, next to their English message ids, so a new message without a translation
fails `make catalogues` (and the catalogue test) instead of silently appearing in English.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

LOCALE = Path(__file__).resolve().parent.parent / "olievlek" / "locale"

NL = {
    "1 to 3 months": "1 tot 3 maanden",
    "12 months or more": "12 maanden of langer",
    "3 to 6 months": "3 tot 6 maanden",
    "6 to 12 months": "6 tot 12 maanden",
    "under 1 month": "minder dan 1 maand",
    "Figures per region": "Cijfers per regio",
    "Figures under 5 are withheld at each municipality; a sum marked ≥ leaves withheld figures out.":
        "Cijfers onder 5 worden bij elke gemeente achtergehouden; een som met ≥ laat achtergehouden cijfers weg.",
    "Handovers from prison accepted before release": "Overdrachten uit de gevangenis aanvaard vóór de vrijlating",
    "How long cases stay in each phase before they move on": "Hoe lang dossiers in elke fase blijven",
    "Monitoring dashboard": "Monitoringdashboard",
    "Monitoring of the local approach to radicalisation and polarisation":
        "Monitoring van de lokale aanpak van radicalisering en polarisering",
    "Monitoring report {quarter}": "Monitoringrapport {quarter}",
    "People who moved between municipalities and were picked up within a month":
        "Personen die naar een andere gemeente verhuisden en binnen een maand opgevolgd werden",
    "The mix of concern categories over the quarters": "De verdeling over vormen van extremisme per kwartaal",
    "accepted": "aanvaard",
    "accepted before release": "aanvaard vóór de vrijlating",
    "agency": "partner",
    "category": "categorie",
    "closed": "afgesloten",
    "concern": "vorm van extremisme",
    "duration of closed cases": "looptijd van afgesloten dossiers",
    "erasures late": "te laat gewist",
    "erasures on time": "tijdig gewist",
    "expected a quarter such as 2026Q3": "verwacht een kwartaal zoals 2026Q3",
    "flows": "stromen",
    "follow-up": "opvolging",
    "handovers accepted": "overdrachten aanvaard",
    "handovers from prison received": "overdrachten uit de gevangenis ontvangen",
    "handovers received": "overdrachten ontvangen",
    "handovers returned": "overdrachten teruggestuurd",
    "islamist": "islamistisch",
    "left-wing extremism": "linksextremisme",
    "move alerts received": "verhuismeldingen ontvangen",
    "move alerts sent": "verhuismeldingen verstuurd",
    "no region": "geen regio",
    "open cases": "lopende dossiers",
    "opened": "geopend",
    "pending": "in behandeling",
    "persons": "personen",
    "phase": "fase",
    "phase changes": "faseovergangen",
    "polarisation": "polarisering",
    "pre-analysis": "vooronderzoek",
    "quarter": "kwartaal",
    "queued": "in wachtrij",
    "refused": "geweigerd",
    "region": "regio",
    "right-wing extremism": "rechtsextremisme",
    "sent to the monitor: {status}": "verstuurd naar de monitor: {status}",
    "signal": "signaal",
    "single issue: animal rights": "single issue: dierenrechten",
    "single issue: environment": "single issue: milieu",
    "single issue: other": "single issue: andere",
    "table": "tabel",
    "taken over within a month": "binnen een maand overgenomen",
    "time in a phase": "tijd in een fase",
    "total": "totaal",
    "unclear": "onduidelijk",
    "value": "waarde",
    "withheld": "achtergehouden",
    "withheld figures": "achtergehouden cijfers",
    "{reports} reports combined; dashboard: {html}; figures: {csv}":
        "{reports} rapporten samengevoegd; dashboard: {html}; cijfers: {csv}",
    "{withheld} of {cells} figures withheld (under 5, or needed to protect one that is)":
        "{withheld} van {cells} cijfers achtergehouden (onder 5, of nodig om zo'n cijfer te beschermen)",
}


def main() -> None:
    with (LOCALE / "olievlek.pot").open("rb") as f:
        template = read_po(f)
    catalog = Catalog(locale="nl", project="olievlek", fuzzy=False)
    missing = []
    for message in template:
        if not message.id:
            continue
        if message.id not in NL:
            missing.append(message.id)
        catalog.add(message.id, NL.get(message.id, ""))
    if missing:
        sys.exit("no Dutch for: " + "; ".join(map(str, missing)))
    target = LOCALE / "nl" / "LC_MESSAGES"
    target.mkdir(parents=True, exist_ok=True)
    with (target / "olievlek.po").open("wb") as f:
        write_po(f, catalog, omit_header=False, sort_output=True, width=120)
    with (target / "olievlek.mo").open("wb") as f:
        write_mo(f, catalog)


if __name__ == "__main__":
    main()
