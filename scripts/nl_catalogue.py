"""Fill the Dutch catalogue from the template: `make catalogues` runs it after `pybabel extract`.

The Dutch texts live here, next to their English message ids, so a new message without a translation
fails `make catalogues` (and the catalogue test) instead of silently appearing in English.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

LOCALE = Path(__file__).resolve().parent.parent / "olievlek" / "locale"

NL = {
    "1 to 3 months": "1 tot 3 maanden",
    "Directory activity per holder (today and the {days} days before)":
        "Activiteit in de verwijzingsindex per houder (vandaag en de {days} dagen ervoor)",
    "burst": "piek",
    "entries": "vermeldingen",
    "evaluations": "evaluaties",
    "evaluations without entries": "evaluaties zonder vermeldingen",
    "holder": "houder",
    "median per day": "mediaan per dag",
    "more entries than evaluations": "meer vermeldingen dan evaluaties",
    "near its quota": "bijna aan het quotum",
    "new before": "nieuw ervoor",
    "new today": "nieuw vandaag",
    "quota": "quotum",
    "stands out": "valt op",
    "awaiting witnesses": "wacht op getuigen",
    "unknown": "onbekend",
    "unconfirmed: perhaps it never arrived — contact the recipient":
        "onbevestigd: mogelijk niet aangekomen — neem contact op met de ontvanger",
    "{what} (outbox {outbox_id}) to {recipient}: awaiting witnesses; `olievlek outbox` shows the outcome once they "
    "confirm it":
        "{what} (uitgaand {outbox_id}) naar {recipient}: wacht op getuigen; `olievlek outbox` toont de afloop zodra "
        "zij die bevestigen",
    "{what} (outbox {outbox_id}) to {recipient}: {unconfirmed}": "{what} (uitgaand {outbox_id}) naar {recipient}: "
                                                                  "{unconfirmed}",
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
    "sent to {recipient}: {status}": "verstuurd naar {recipient}: {status}",
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
    "give a national register number, or names with a birth date":
        "geef een rijksregisternummer, of namen met een geboortedatum",
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
    # Two administrators per role grant (node/access.py, cli/users.py).
    "no role is granted by one administrator alone, and this node has no other administrator to confirm it; "
    "configure a second one (or, for a node with one administrator, single_administrator: true)":
        "geen enkele rol wordt door één beheerder alleen toegekend, en dit knooppunt heeft geen andere beheerder "
        "om te bevestigen; configureer een tweede (of, voor een knooppunt met één beheerder, "
        "single_administrator: true)",
    "there is no role request {request}": "er is geen rolverzoek {request}",
    "role request {request} expired unconfirmed; ask for the role again":
        "rolverzoek {request} is onbevestigd verlopen; vraag de rol opnieuw aan",
    "role request {request} was already granted": "rolverzoek {request} werd al toegekend",
    "uid {uid} made role request {request}; another administrator must confirm it":
        "uid {uid} deed rolverzoek {request}; een andere beheerder moet het bevestigen",
    "uid {uid} was not an administrator when role request {request} was made; only an administrator who was one "
    "then may confirm it":
        "uid {uid} was geen beheerder toen rolverzoek {request} werd gedaan; alleen wie toen al beheerder was, mag "
        "het bevestigen",
    "role request {request}: uid {uid} as {role} waits for another administrator, who confirms it with "
    "`olievlek user confirm --request {request}`":
        "rolverzoek {request}: uid {uid} als {role} wacht op een andere beheerder, die het bevestigt met "
        "`olievlek user confirm --request {request}`",
    "role request {request}: uid {uid} is {role} (single administrator: countersigned in the grant log, "
    "`olievlek user grants`)":
        "rolverzoek {request}: uid {uid} is {role} (enige beheerder: medeondertekend in het toekenningslogboek, "
        "`olievlek user grants`)",
    "role request {request}: uid {uid} is {role}, confirmed by uid {by}":
        "rolverzoek {request}: uid {uid} is {role}, bevestigd door uid {by}",
    "Role requests": "Rolverzoeken", "Grant log": "Toekenningslogboek", "request": "verzoek",
    "requested by": "gevraagd door", "expires": "vervalt", "confirmed by": "bevestigd door",
    "countersignature": "medeondertekening", "valid": "geldig", "[bold red]INVALID[/]": "[bold red]ONGELDIG[/]",
    "no role requests wait": "er wachten geen rolverzoeken", "no roles granted through the node":
        "geen rollen toegekend via het knooppunt",
    "nobody: single administrator": "niemand: enige beheerder",
    "{count} countersignature(s) do not verify: the grant log was altered":
        "{count} medeondertekening(en) kloppen niet: het toekenningslogboek werd gewijzigd",
    "nothing due": "niets te wissen binnen die termijn",
    "nothing to erase": "niets te wissen",
    "rule {id!r} is for purpose {purpose}; give --purpose {purpose}":
        "regel {id!r} is voor doel {purpose}; geef --purpose {purpose}",
    "rule {rule_id!r} never lets {field} go to {sender}": "regel {rule_id!r} laat {field} nooit naar {sender} gaan",
    "say which fields you ask for (--field)": "zeg welke velden je vraagt (--field)",
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
    # Tables and what was sent.
    "Access log": "Toegangslogboek", "Agreements": "Akkoorden", "Case {case}": "Dossier {case}", "Cases": "Dossiers",
    "Inbox": "Inbox", "Outbox": "Outbox", "Query {file_ref}": "Vraag {file_ref}", "Retention due": "Te wissen",
    "Users": "Gebruikers", "[bold red]refused[/] {detail}": "[bold red]geweigerd[/] {detail}",
    "agencies": "partners", "answer": "antwoord", "approval of request {item}": "goedkeuring van verzoek {item}",
    "case": "dossier", "concerns": "vormen van extremisme", "contact": "contact", "contacts": "contacten",
    "denial of request {item}": "weigering van verzoek {item}", "detail": "toelichting",
    "disclosure request about hit {hit}": "verzoek tot inzage over treffer {hit}", "erase on": "wissen op",
    "evidence": "bewijs", "fields": "velden", "from": "van",
    "handover for case {case}": "overdracht voor dossier {case}",
    "hit": "treffer", "id": "nr", "item": "item", "kind": "soort", "move alert for case {case}":
        "verhuismelding voor dossier {case}", "outcome": "uitkomst", "purpose": "doel", "purposes": "doeleinden",
    "received": "ontvangen", "recipient kinds": "soorten ontvangers", "recorded": "vastgelegd", "risk": "risico",
    "role": "rol", "row": "rij", "rule": "regel", "sent": "verstuurd", "status": "status", "to": "aan", "uid": "uid",
    "valid until": "geldig tot", "when": "wanneer", "why": "waarom", "withdrawn": "ingetrokken",
    "the figures of {missing} for this quarter have not arrived; the group is reported when every member's are in":
        "de cijfers van {missing} voor dit kwartaal zijn nog niet binnen; de groep wordt gerapporteerd als die van "
        "elk lid binnen zijn",
    "  broker: {detail}": "  broker (Engels): {detail}",
    "no hit": "geen treffer",
    "the federation's data-sharing rules do not allow this": "de regels voor gegevensdeling van de federatie laten dit "
                                                             "niet toe",
    "the message does not follow the message format": "het bericht volgt het berichtformaat niet",
    "the query budget is used up": "het vraagbudget is opgebruikt",
    "the recipient is not an organisation of the federation": "de ontvanger is geen organisatie van de federatie",
    "the recipient's queue is full; the message is sent again later":
        "de wachtrij van de ontvanger is vol; het bericht wordt later opnieuw verstuurd",
    "the same key was used for another message": "dezelfde sleutel werd al voor een ander bericht gebruikt",
    "the sender is not the organisation of this node's certificate":
        "de afzender is niet de organisatie van het certificaat van dit knooppunt",
    "the signature or the signing certificate does not check out": "de handtekening of het ondertekeningscertificaat "
                                                                   "klopt niet",
    "this node's clock is too far off; the message is sent again":
        "de klok van dit knooppunt wijkt te ver af; het bericht wordt opnieuw verstuurd",
    "the request is not a well-formed LocalRequest": "het verzoek is geen geldig LocalRequest",
    "pending identification": "wacht op identificatie", "identified": "geïdentificeerd",
    "returned": "teruggestuurd", "pending decision": "wacht op beslissing", "approved": "goedgekeurd",
    "denied": "geweigerd",
    "expired": "verlopen", "failed": "mislukt", "rejected": "geweigerd door de ontvanger",
    "that month lies in a quarter already reported to the monitor; give the month the case is entered here":
        "die maand valt in een kwartaal dat al aan de monitor gerapporteerd werd; geef de maand waarin het dossier "
        "hier ingevoerd wordt",
}

# `--help` of the regisseur's commands (cli/help_texts.py). Option values stay as typed: they are tokens.
HELP_NL = {
    "A case carried over from paper: the month it opened, YYYY-MM.":
        "Een dossier overgenomen van papier: de maand waarin het geopend werd, JJJJ-MM.",
    "A case with its subject's identity; the read is written to the node's access log.":
        "Een dossier met de identiteit van de persoon; het inzien wordt in het toegangslogboek van het knooppunt "
        "geschreven.",
    "A field (repeatable): phase, concerns, risk-level, agencies, month-opened.":
        "Een veld (herhaalbaar): phase, concerns, risk-level, agencies, month-opened.",
    "A finished calendar quarter, e.g. 2026Q3.": "Een afgelopen kalenderkwartaal, bv. 2026Q3.",
    "A person's data at this node.": "De gegevens van een persoon op dit knooppunt.",
    "A person's recorded agreements on a case.": "De vastgelegde akkoorden van een persoon bij een dossier.",
    "A table member's agency at the table.": "De partner die een tafellid aan tafel vertegenwoordigt.",
    "Add a note (read from a file, stdin or a prompt, never from arguments; stored encrypted).":
        "Voeg een notitie toe (uit een bestand, stdin of een prompt, nooit als argument; versleuteld bewaard).",
    "Agency at the table (repeatable).": "Partner aan tafel (herhaalbaar).",
    "Agency at the table (repeatable; replaces).": "Partner aan tafel (herhaalbaar; vervangt).",
    "Agreement id.": "Nummer van het akkoord.",
    "Agreements recorded on a case, withdrawn ones included.":
        "Akkoorden vastgelegd bij een dossier, ook de ingetrokken.",
    "Approve a request: all fields asked, or only the --field ones.":
        "Keur een verzoek goed: alle gevraagde velden, of enkel die met --field.",
    "Ask the directory whether a person is known (federal liaison, justice house).":
        "Vraag het verwijzingsrepertorium of een persoon gekend is (federale verbindingspersoon, justitiehuis).",
    "Ask the holder of a hit for more; the holder's regisseur approves (perhaps fewer fields) or denies.":
        "Vraag de houder van een treffer om meer; de regisseur van de houder keurt goed (misschien minder velden) "
        "of weigert.",
    "At the monitor: combine the reports received per region and quarter into a dashboard.":
        "Bij de monitor: voeg de ontvangen rapporten per regio en kwartaal samen tot een dashboard.",
    "CSV (header: national_number,...) or a JSON identity; else stdin or a prompt.":
        "CSV (kopregel: national_number,...) of een JSON-identiteit; anders stdin of een prompt.",
    "Case files at this node.": "Dossiers op dit knooppunt.",
    "Case id at this node.": "Dossiernummer op dit knooppunt.",
    "Change a case's concerns, risk level or agencies at the table.":
        "Wijzig de vormen van extremisme, het risiconiveau of de partners aan tafel van een dossier.",
    "Close a case: its retention starts now (per its lawful basis).":
        "Sluit een dossier af: de bewaartermijn begint nu (volgens de rechtsgrond).",
    "Closed cases whose retention ends within the given time.":
        "Afgesloten dossiers waarvan de bewaartermijn binnen de gegeven tijd afloopt.",
    "Compute this municipality's figures for a quarter, withhold what could identify, send them.":
        "Bereken de cijfers van deze gemeente voor een kwartaal, houd achter wat kan identificeren, en verstuur ze.",
    "Concern category (repeatable).": "Vorm van extremisme (herhaalbaar).",
    "Concern category (repeatable; replaces).": "Vorm van extremisme (herhaalbaar; vervangt).",
    "Decide on disclosure requests about persons this node holds.":
        "Beslis over verzoeken tot inzage over personen die dit knooppunt opvolgt.",
    "Deny a request with a reason code; the requester gets the code and nothing else.":
        "Weiger een verzoek met een redencode; de aanvrager krijgt de code en niets anders.",
    "Directory for dashboard.html and figures.csv.": "Map voor dashboard.html en figures.csv.",
    "Enter a person's identifier (prompt, stdin or file) and match it to waiting items.":
        "Geef de identificatie van een persoon in (prompt, stdin of bestand) en koppel ze aan wachtende items.",
    "Erase even though the case is open.": "Wis ook al is het dossier nog open.",
    "Erase every closed case whose retention has ended, and tell every recipient.":
        "Wis elk afgesloten dossier waarvan de bewaartermijn verstreken is, en verwittig elke ontvanger.",
    "Erase one case's subject now (an access or erasure request), and tell every recipient.":
        "Wis nu de persoon van één dossier (een verzoek tot inzage of wissing), en verwittig elke ontvanger.",
    "Everything this node holds about a case's subject, for an access request (the read is logged).":
        "Alles wat dit knooppunt over de persoon van een dossier bewaart, voor een verzoek tot inzage (het lezen "
        "wordt gelogd).",
    "Expected release month, YYYY-MM.": "Verwachte maand van vrijlating, JJJJ-MM.",
    "Follow-up need (repeatable): housing, employment, mental-health, substance-use, family-support, education, "
    "disengagement-coaching, other.":
        "Nood aan opvolging (herhaalbaar): housing, employment, mental-health, substance-use, family-support, "
        "education, disengagement-coaching, other.",
    "Give a local user a role at this node.": "Geef een lokale gebruiker een rol op dit knooppunt.",
    "Ask for a role for a local user; another administrator confirms it.":
        "Vraag een rol aan voor een lokale gebruiker; een andere beheerder bevestigt ze.",
    "Confirm another administrator's role request, which grants the role.":
        "Bevestig het rolverzoek van een andere beheerder; daarmee wordt de rol toegekend.",
    "Every role granted, by whom, countersigned by the node (for the DPO). Exit 1 if one does not verify.":
        "Elke toegekende rol, door wie, medeondertekend door het knooppunt (voor de DPO). Exit 1 als er een niet "
        "klopt.",
    "Role requests that wait for a second administrator.": "Rolverzoeken die op een tweede beheerder wachten.",
    "The node's envelope-signing certificate (PEM) to check the countersignatures with (default: the one the node "
    "sends).":
        "Het ondertekeningscertificaat van het knooppunt (PEM) om de medeondertekeningen mee te controleren "
        "(standaard: dat wat het knooppunt meestuurt).",
    "The role request's number (`olievlek user pending`).": "Het nummer van het rolverzoek (`olievlek user pending`).",
    "Hand a person's follow-up over to the LIVC where they will live. Exit 1 when refused.":
        "Draag de opvolging van een persoon over aan de LIVC waar die zal wonen. Afsluitcode 1 bij weigering.",
    "Hand follow-up over to the municipality of release (justice house, prison).":
        "Draag de opvolging over aan de gemeente van vrijlating (justitiehuis, gevangenis).",
    "How many days longer.": "Hoeveel dagen langer.",
    "Inbox item id of the disclosure request.": "Inbox-itemnummer van het verzoek tot inzage.",
    "Inbox item id.": "Inbox-itemnummer.",
    "Is any of these persons followed up? Hit (with the holders' contacts) or no hit, per row.":
        "Wordt een van deze personen opgevolgd? Treffer (met de contacten van de houders) of geen treffer, per rij.",
    "Keep a closed case longer, for a logged reason.": "Bewaar een afgesloten dossier langer, om een gelogde reden.",
    "Last day it holds, YYYY-MM-DD.": "Laatste dag waarop het geldt, JJJJ-MM-DD.",
    "Lawful-basis code of the node's configuration (sets retention).":
        "Code van de rechtsgrond uit de configuratie van het knooppunt (bepaalt de bewaartermijn).",
    "Let a table member see a case (need-to-know), or take that away.":
        "Laat een tafellid een dossier zien (need-to-know), of neem dat weer af.",
    "List what arrived; items wait *pending identification* until matched.":
        "Toon wat binnenkwam; items wachten *in afwachting van identificatie* tot ze gekoppeld zijn.",
    "Local users of this node and their roles (node administrators only).":
        "Lokale gebruikers van dit knooppunt en hun rollen (enkel beheerders van het knooppunt).",
    "Look ahead, e.g. 30d.": "Vooruitkijken, bv. 30d.",
    "Move a case to another phase; the change is dated and kept with who made it.":
        "Zet een dossier in een andere fase; de wijziging wordt gedateerd en bewaard met wie ze maakte.",
    "NIS code of the municipality of release.": "NIS-code van de gemeente van vrijlating.",
    "NIS code of the municipality the person moves to.": "NIS-code van de gemeente waarheen de persoon verhuist.",
    "NIS code where the person may live instead.": "NIS-code waar de persoon misschien wel woont.",
    "Not our municipality: return the item to its sender (nothing of it stays here but a tombstone).":
        "Niet onze gemeente: stuur het item terug naar de afzender (er blijft hier enkel een grafsteen van over).",
    "One case's retention.": "De bewaartermijn van één dossier.",
    "One of this node's legal-basis codes.": "Een van de rechtsgrondcodes van dit knooppunt.",
    "One of: low, medium, high.": "Een van: low, medium, high.",
    "One of: regisseur, table-member, administrator.": "Een van: regisseur, table-member, administrator.",
    "One of: retention-ended, subject-request, agreement-withdrawn, unlawful.":
        "Een van: retention-ended, subject-request, agreement-withdrawn, unlawful.",
    "One of: signal, pre-analysis, follow-up, closed.": "Een van: signal, pre-analysis, follow-up, closed.",
    "One of: still-followed-up, legal-hold, access-request-pending.":
        "Een van: still-followed-up, legal-hold, access-request-pending.",
    "Only this case (default: all).": "Enkel dit dossier (standaard: alle).",
    "Open a case. The person's identity is read from a prompt, stdin or --from-file, never from arguments.":
        "Open een dossier. De identiteit van de persoon wordt gelezen uit een prompt, stdin of --from-file, nooit "
        "uit argumenten.",
    "Optional summary field to include: agencies.": "Optioneel veld om mee te sturen: agencies.",
    "Purpose covered (repeatable), e.g. hit_no_hit_check.": "Gedekt doel (herhaalbaar), bv. hit_no_hit_check.",
    "Quarterly monitoring figures (municipality) and the dashboard (monitor).":
        "Kwartaalcijfers voor de monitoring (gemeente) en het dashboard (monitor).",
    "Re-verify the broker's copy of this node's entries: signatures and content. Exit 1 on a problem.":
        "Controleer opnieuw wat de broker van de vermeldingen van dit knooppunt bewaart: handtekeningen en inhoud. "
        "Afsluitcode 1 bij een probleem.",
    "Read the identity (JSON) from this file instead of stdin or a prompt.":
        "Lees de identiteit (JSON) uit dit bestand in plaats van uit stdin of een prompt.",
    "Read the note from this file.": "Lees de notitie uit dit bestand.",
    "Recipient kind covered (repeatable).": "Gedekt soort ontvanger (herhaalbaar).",
    "Record id of the signed form, e.g. gent-2026-0042.":
        "Registratienummer van het ondertekende formulier, bv. gent-2026-0042.",
    "Record what the person agreed to, for whom, for what, until when.":
        "Leg vast waarmee de persoon akkoord ging, voor wie, waarvoor, tot wanneer.",
    "Registered contact id (default: the first).": "Geregistreerde contactpersoon (standaard: de eerste).",
    "Registered users and their roles.": "Geregistreerde gebruikers en hun rollen.",
    "Retention at this node: what is due, and erasing it.":
        "Bewaartermijnen op dit knooppunt: wat afloopt, en het wissen ervan.",
    "Rule id to invoke (default: the bundle's rule).": "Regel om in te roepen (standaard: de regel van de bundel).",
    "Send alerts to other organisations.": "Stuur meldingen naar andere organisaties.",
    "Show the report as it would be; neither keep nor send it.":
        "Toon het rapport zoals het zou zijn; bewaar en verstuur het niet.",
    "Take a role away from a local user.": "Neem een lokale gebruiker een rol af.",
    "Take an identified item over: a case opens in pre-analysis and the sender is told.":
        "Neem een geïdentificeerd item over: een dossier opent in vooronderzoek en de afzender wordt verwittigd.",
    "Take the assignment away.": "Neem de toewijzing weg.",
    "Tell the municipality a followed-up person moves to. Exit 1 when the broker refuses.":
        "Verwittig de gemeente waarheen een opgevolgde persoon verhuist. Afsluitcode 1 als de broker weigert.",
    "The bundle's purpose, e.g. hit_no_hit_check.": "Het doel uit de bundel, bv. hit_no_hit_check.",
    "The hit number a query showed.": "Het treffernummer dat een vraag toonde.",
    "The node's cases, without identifying fields.": "De dossiers van het knooppunt, zonder identificerende velden.",
    "The node's local socket.": "De lokale socket van het knooppunt.",
    "The person withdraws an agreement: it stops counting from now.":
        "De persoon trekt een akkoord in: het geldt vanaf nu niet meer.",
    "The table member's uid.": "De uid van het tafellid.",
    "The user's numeric uid on this host.": "De numerieke uid van de gebruiker op deze machine.",
    "This node's entries in the broker's reference directory.":
        "De vermeldingen van dit knooppunt in het verwijzingsrepertorium van de broker.",
    "What other organisations sent to this node.": "Wat andere organisaties naar dit knooppunt stuurden.",
    "What this node sent, and what became of it.": "Wat dit knooppunt verstuurde, en wat ermee gebeurde.",
    "What this node sent: delivery status, and what the recipient did with it.":
        "Wat dit knooppunt verstuurde: afleveringsstatus, en wat de ontvanger ermee deed.",
    "Where to write the JSON (created with mode 0600).": "Waar de JSON geschreven wordt (aangemaakt met modus 0600).",
    "Which holder's contact to ask (default: the first).":
        "Welk contact van een houder je vraagt (standaard: het eerste).",
    "Who opened which case's identifying fields, when and why.":
        "Wie welke identificerende velden van welk dossier opende, wanneer en waarom.",
    "Why you open the identity: follow-up, table-meeting, access-request, correction, supervision.":
        "Waarom je de identiteit opent: follow-up, table-meeting, access-request, correction, supervision.",
    "Why: no-lawful-basis, disproportionate, ongoing-follow-up-at-risk, not-held, expired.":
        "Waarom: no-lawful-basis, disproportionate, ongoing-follow-up-at-risk, not-held, expired.",
    "Your file reference, in the bundle's pattern.": "Je dossierverwijzing, volgens het patroon van de bundel.",
    "signal, pre-analysis or follow-up (closing: `case close`).":
        "signal, pre-analysis of follow-up (afsluiten: `case close`).",
}


def help_ids() -> list[str]:
    """The regisseur's --help texts, read from the CLI itself (in English: the message ids)."""
    os.environ["OLIEVLEK_LANG"] = "en"
    from olievlek.cli import help_texts
    from olievlek.cli.app import app

    return help_texts.texts(app)


def main() -> None:
    with (LOCALE / "olievlek.pot").open("rb") as f:
        template = read_po(f)
    catalog = Catalog(locale="nl", project="olievlek", fuzzy=False)
    missing = []
    dutch = NL | HELP_NL
    for message_id in sorted({str(m.id) for m in template if m.id} | set(help_ids())):
        if message_id not in dutch:
            missing.append(message_id)
        catalog.add(message_id, dutch.get(message_id, ""))
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
