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
    # The regisseur's commands and the node's answers.
    "  field: {refusal_field}   rule: {rule_id}": "  veld: {refusal_field}   regel: {rule_id}",
    " or ": " of ",
    "--file-ref must follow the bundle's pattern {pattern}":
        "--file-ref moet het patroon van de bundel volgen: {pattern}",
    "--legal-basis must be one of this node's codes: {value}":
        "--legal-basis moet een van de codes van dit knooppunt zijn: {value}",
    "Address (optional)": "Adres (optioneel)",
    "Birth date (YYYY-MM-DD, optional)": "Geboortedatum (JJJJ-MM-DD, optioneel)",
    "Family name": "Familienaam",
    "Given names": "Voornamen",
    "NIS code {nis} is not served by any organisation": "NIS-code {nis} wordt door geen enkele organisatie bediend",
    "NIS code {nis} is served by this node": "NIS-code {nis} wordt door dit knooppunt bediend",
    "NIS code {suggested_nis} is not served by any organisation":
        "NIS-code {suggested_nis} wordt door geen enkele organisatie bediend",
    "National register number": "Rijksregisternummer",
    "Note": "Notitie",
    "[bold red]error[/] {value}": "[bold red]fout[/] {value}",
    "[bold red]problem[/] {value}": "[bold red]probleem[/] {value}",
    "a birth date is written YYYY-MM-DD (00 for an unknown day or month)":
        "een geboortedatum schrijf je als JJJJ-MM-DD (00 voor een onbekende dag of maand)",
    "a denial needs a --reason code": "een weigering heeft een --reason-code nodig",
    "a family name is required to open a case": "om een dossier te openen is een familienaam nodig",
    "a later quarter was reported already; quarters are reported in order, so each one's suppression knows "
    "everything published before it":
        "een later kwartaal werd al gerapporteerd; kwartalen worden in volgorde gerapporteerd, zodat de "
        "afscherming van elk kwartaal alles kent wat ervoor gepubliceerd werd",
    "a national register number has 11 digits, this one has {value}":
        "een rijksregisternummer heeft 11 cijfers, dit heeft er {value}",
    "a national register number has only digits and separators":
        "een rijksregisternummer bevat enkel cijfers en scheidingstekens",
    "a phase is required": "een fase is verplicht",
    "a role is required: regisseur, table-member or administrator":
        "een rol is verplicht: regisseur, table-member of administrator",
    "a table member sits at the table for an agency (--agency)":
        "een tafellid zit aan tafel namens een partner (--agency)",
    "cannot include {value}; only 'agencies' is optional": "{value} kan niet mee; enkel 'agencies' is optioneel",
    "cannot read {from_file}: {strerror}": "kan {from_file} niet lezen: {strerror}",
    "case {case_id} erased (data key destroyed); erasure notice to: {told}":
        "dossier {case_id} gewist (gegevenssleutel vernietigd); wismelding aan: {told}",
    "case {case_id} is not a closed case awaiting erasure":
        "dossier {case_id} is geen afgesloten dossier dat op wissing wacht",
    "case {case_id} is not open": "dossier {case_id} is niet open",
    "case {case_id} is still open; erase it only with --confirm-open":
        "dossier {case_id} is nog open; wis het enkel met --confirm-open",
    "case {case_id} is {value}": "dossier {case_id} is {value}",
    "case {case_id} opened": "dossier {case_id} geopend",
    "case {case_id} was erased": "dossier {case_id} werd gewist",
    "case {case_id} was erased meanwhile": "dossier {case_id} werd intussen gewist",
    "case {case_id}'s person has other cases at this node; erase those first":
        "de persoon van dossier {case_id} heeft nog andere dossiers op dit knooppunt; wis die eerst",
    "case {case} closed; kept until {value}": "dossier {case} afgesloten; bewaard tot {value}",
    "case {case} is assigned to uid(s): {value}": "dossier {case} is toegewezen aan uid(s): {value}",
    "case {case} kept until {value}": "dossier {case} bewaard tot {value}",
    "case {id} is {value}; it cannot change": "dossier {id} is {value}; het kan niet meer wijzigen",
    "case {value} no longer exists": "dossier {value} bestaat niet meer",
    "close a case with `olievlek case close`: that starts its retention":
        "sluit een dossier af met `olievlek case close`: dat start de bewaartermijn",
    "contact id {requested!r} is not registered for {org_id}":
        "contactpersoon {requested!r} is niet geregistreerd voor {org_id}",
    "disclosure request {item_id} is {status}; it can no longer be decided":
        "verzoek tot inzage {item_id} is {status}; er kan niet meer over beslist worden",
    "disclosure request {item_id} was decided meanwhile": "over verzoek tot inzage {item_id} werd intussen beslist",
    "expected YYYY-MM": "verwacht JJJJ-MM",
    "expected YYYY-MM-DD": "verwacht JJJJ-MM-DD",
    "give --days (1 to {MAX_EXTENSION_DAYS}) and a --reason code to keep a case longer":
        "geef --days (1 tot {MAX_EXTENSION_DAYS}) en een --reason-code om een dossier langer te bewaren",
    "give --socket or set OLIEVLEK_NODE_SOCKET": "geef --socket of zet OLIEVLEK_NODE_SOCKET",
    "give a --reason for the erasure": "geef een --reason voor de wissing",
    "give recipient kinds and purposes of the bundle; unknown: {unknown}":
        "geef soorten ontvangers en doeleinden uit de bundel; onbekend: {unknown}",
    "give the expected release month as YYYY-MM": "geef de verwachte maand van vrijlating als JJJJ-MM",
    "give the quarter as YYYYQn, e.g. 2026Q3": "geef het kwartaal als JJJJQn, bv. 2026Q3",
    "hit {hit_id} has contacts {contacts}, not {contact!r}":
        "treffer {hit_id} heeft contacten {contacts}, niet {contact!r}",
    "inbox is empty": "inbox is leeg",
    "item {id} was decided meanwhile": "over item {id} werd intussen beslist",
    "item {item_id} is not matched to a person yet; enter the identifier first (`olievlek inbox identify`)":
        "item {item_id} is nog niet aan een persoon gekoppeld; geef eerst de identificatie in "
        "(`olievlek inbox identify`)",
    "item {item} accepted: case {case_id} opened in pre-analysis; the sender is told":
        "item {item} aanvaard: dossier {case_id} geopend in vooronderzoek; de afzender wordt verwittigd",
    "key-encryption key written to {out} (mode 0600); set kek_file: {out} in the node's configuration":
        "sleutelversleutelingssleutel geschreven naar {out} (modus 0600); zet kek_file: {out} in de configuratie "
        "van het knooppunt",
    "lawful basis {basis!r} is not configured; one of {value}":
        "rechtsgrond {basis!r} is niet geconfigureerd; een van {value}",
    "matched inbox item(s) {value} to subject {subject_id}{note}":
        "inbox-item(s) {value} gekoppeld aan persoon {subject_id}{note}",
    "no case holds this pseudonym any more; its withdrawal follows":
        "geen dossier heeft dit pseudoniem nog; de intrekking volgt",
    "no cases": "geen dossiers",
    "no rule of the bundle lets this node answer {recipient}":
        "geen regel van de bundel laat dit knooppunt {recipient} antwoorden",
    "no rule of the bundle lets this node tell {sender} its decision":
        "geen regel van de bundel laat dit knooppunt zijn beslissing aan {sender} meedelen",
    "no rule of the bundle lets {kind} send {kind2} to {recipient_kind}":
        "geen regel van de bundel laat {kind} {kind2} sturen naar {recipient_kind}",
    "no rule of the bundle lets {value} send {kind}": "geen regel van de bundel laat {value} {kind} sturen",
    "no waiting item matches this person": "geen wachtend item past bij deze persoon",
    "nobody": "niemand",
    "nobody changes their own roles; ask another administrator":
        "niemand wijzigt zijn eigen rollen; vraag het aan een andere beheerder",
    "nothing due": "niets te wissen binnen die termijn",
    "nothing to erase": "niets te wissen",
    "rule {id!r} is for purpose {purpose}; give --purpose {purpose}":
        "regel {id!r} is voor doel {purpose}; geef --purpose {purpose}",
    "rule {rule_id!r} never lets {field} go to {sender}": "regel {rule_id!r} laat {field} nooit naar {sender} gaan",
    "say which fields you ask for (--fields)": "zeg welke velden je vraagt (--field)",
    "say why you open this case's identity (--purpose)":
        "zeg waarom je de identiteit in dit dossier opent (--purpose)",
    "send 1 to {MAX_ROWS} identities per request": "stuur 1 tot {MAX_ROWS} identiteiten per verzoek",
    "that rule id is not in the bundle; see `olievlek policy flows`":
        "die regel staat niet in de bundel; zie `olievlek policy flows`",
    "the agreement's validity must end in the future": "de geldigheid van het akkoord moet in de toekomst eindigen",
    "the birth date is not a possible date": "de geboortedatum is geen mogelijke datum",
    "the broker refused the query: {detail}": "de broker weigerde de vraag: {detail}",
    "the bundle names no monitor organisation and rule for reports":
        "de bundel noemt geen monitororganisatie en regel voor rapporten",
    "the check digits do not match (mod-97, both century rules tried)":
        "de controlecijfers kloppen niet (mod-97, beide eeuwregels geprobeerd)",
    "the day part is not a day (00-31)": "het daggedeelte is geen dag (00-31)",
    "the evidence reference must be a record id such as gent-2026-0042, never free text":
        "de bewijsverwijzing moet een registratienummer zijn zoals gent-2026-0042, nooit vrije tekst",
    "the fallback identity needs a family name and given names":
        "de vervangende identiteit heeft een familienaam en voornamen nodig",
    "the month a case was opened is YYYY-MM, not in the future":
        "de maand waarin een dossier geopend werd is JJJJ-MM, niet in de toekomst",
    "the month part is not a month (00-12, +20 or +40 for bis numbers)":
        "het maandgedeelte is geen maand (00-12, +20 of +40 voor bisnummers)",
    "the note is empty": "de notitie is leeg",
    "the quarter's report is not kept here": "het rapport van dat kwartaal wordt hier niet bewaard",
    "there is no agreement {agreement_id} in force": "er is geen geldend akkoord {agreement_id}",
    "there is no case {case_id}": "er is geen dossier {case_id}",
    "there is no case {case_id} that you are assigned to": "er is geen dossier {case_id} dat aan jou is toegewezen",
    "there is no case {case_id} to erase": "er is geen dossier {case_id} om te wissen",
    "there is no disclosure request {item_id} in the inbox": "er is geen verzoek tot inzage {item_id} in de inbox",
    "there is no hit {hit_id} (erased, or never a hit)": "er is geen treffer {hit_id} (gewist, of nooit een treffer)",
    "there is no undecided move alert or handover {item_id}":
        "er is geen onbesliste verhuismelding of overdracht {item_id}",
    "this node's directory entry no longer covers the requester (closed, or the agreement was withdrawn); deny "
    "with --reason no-lawful-basis":
        "de vermelding van dit knooppunt in het verwijzingsrepertorium dekt de aanvrager niet meer (afgesloten, "
        "of het akkoord werd ingetrokken); weiger met --reason no-lawful-basis",
    "this node's organisation kind does not query the directory":
        "dit soort organisatie bevraagt het verwijzingsrepertorium niet",
    "uid {uid} ({roles}) may not {op}; that needs {needed}":
        "uid {uid} ({roles}) mag {op} niet; daarvoor is {needed} nodig",
    "uid {uid} is not a table member of this node": "uid {uid} is geen tafellid van dit knooppunt",
    "uid {uid} is not a user of this node; a node administrator adds users with `olievlek user add`":
        "uid {uid} is geen gebruiker van dit knooppunt; een beheerder voegt gebruikers toe met `olievlek user add`",
    "unknown request {op!r}": "onbekend verzoek {op!r}",
    "wrote what this node holds about case {case}'s subject to {to} (mode 0600)":
        "wat dit knooppunt over de persoon van dossier {case} bewaart, geschreven naar {to} (modus 0600)",
    "{entries} entries at the broker ({expected} registered here), {statements} signed coverage statements checked":
        "{entries} vermeldingen bij de broker ({expected} hier geregistreerd), {statements} ondertekende "
        "dekkingsverklaringen gecontroleerd",
    "{out} exists; a key-encryption key is never overwritten":
        "{out} bestaat; een sleutelversleutelingssleutel wordt nooit overschreven",
    "{source}: expected a JSON object with {value}": "{source}: verwacht een JSON-object met {value}",
    "{source}: not a JSON object (line {lineno}, column {colno})":
        "{source}: geen JSON-object (regel {lineno}, kolom {colno})",
    "{source}: unknown keys {value}": "{source}: onbekende sleutels {value}",
    "{text!r} is not a number of days such as 30d": "{text!r} is geen aantal dagen zoals 30d",
    "{value} rows: {value2} hit, {value3} no hit, {value4} invalid":
        "{value} rijen: {value2} treffer, {value3} geen treffer, {value4} ongeldig",
    "{what} accepted by the broker for {recipient} (rule {rule_id})":
        "{what} aanvaard door de broker voor {recipient} (regel {rule_id})",
    "{what} {outbox_id} queued; the broker has not answered yet (it will be resent)":
        "{what} {outbox_id} in wachtrij; de broker heeft nog niet geantwoord (het wordt opnieuw verstuurd)",
    "{year}Q{quarter} is not over; only finished quarters are reported (a later report of the same quarter could "
    "be differenced)":
        "{year}Q{quarter} is niet voorbij; enkel afgelopen kwartalen worden gerapporteerd (een later rapport over "
        "hetzelfde kwartaal zou ermee vergeleken kunnen worden)",
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
