"""Organisation identity: ``olievlek://<kind>/<org-id>`` in exactly one URI SAN.

The broker derives who is calling only from the verified client certificate;
the envelope-signing certificate carries the same URI. Org ids are opaque
(``gent``, not a NIS code): which municipalities an organisation serves is
declared in the policy bundle, so a merger is a bundle change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

from cryptography import x509

from olievlek.errors import IdentityError

OrgId = NewType("OrgId", str)

SCHEME = "olievlek://"
# Ids, rule ids, contact ids and idempotency keys share one bounded shape:
# lower-case, no spaces, no room for free text.
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,63}$")


class OrgKind(StrEnum):
    """The kinds of organisation that run a node (DESIGN.md section 4)."""

    MUNICIPALITY = "municipality"
    FEDERAL_LIAISON = "federal_liaison"
    JUSTICE_HOUSE = "justice_house"
    PRISON_SERVICE = "prison_service"
    MONITOR = "monitor"
    # An operator of one share of the oblivious pseudonymisation; never sends case data.
    PSEUDONYMISER = "pseudonymiser"
    # Cosigns the audit log's consistent tree heads; named, with its key, in the bundle's ``witnesses:``.
    WITNESS = "witness"


@dataclass(frozen=True, slots=True)
class OrgIdentity:
    """Who an organisation is, as its certificate says."""

    kind: OrgKind
    org_id: OrgId

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.kind.value}/{self.org_id}"

    def __str__(self) -> str:
        return f"{self.kind.value}/{self.org_id}"


def parse_org_id(value: str) -> OrgId:
    """Check the shape of an org id."""
    if not ID_PATTERN.fullmatch(value):
        raise IdentityError(f"org id {value!r} is not of the form [a-z0-9][a-z0-9._:-]*")
    return OrgId(value)


def parse_identity(value: str) -> OrgIdentity:
    """Parse ``<kind>/<org-id>``, as the bundle and the logs write a full identity.

    Raises:
        IdentityError: not of that form, or an unknown kind.
    """
    kind_s, sep, org = value.partition("/")
    if not sep:
        raise IdentityError(f"{value!r} is not a full identity <kind>/<org-id> (e.g. monitor/vvsg)")
    try:
        kind = OrgKind(kind_s)
    except ValueError:
        raise IdentityError(f"{value!r} names an unknown kind {kind_s!r}") from None
    return OrgIdentity(kind, parse_org_id(org))


def parse_uri(uri: str) -> OrgIdentity:
    """Parse ``olievlek://<kind>/<org-id>``."""
    if not uri.startswith(SCHEME):
        raise IdentityError(f"URI {uri!r} is not an olievlek:// identity")
    kind_s, sep, org = uri[len(SCHEME) :].partition("/")
    if not sep:
        raise IdentityError(f"URI {uri!r} has no org id")
    try:
        kind = OrgKind(kind_s)
    except ValueError:
        raise IdentityError(f"URI {uri!r} names an unknown kind {kind_s!r}") from None
    return OrgIdentity(kind, parse_org_id(org))


def describe(cert: x509.Certificate) -> str:
    """A short, identifier-free description of a certificate for messages (never raises: a subject that
    does not parse is said to be so)."""
    try:
        subject = cert.subject.rfc4514_string()
    except ValueError:
        subject = "subject does not parse"
    return f"certificate serial {cert.serial_number:x} ({subject})"


def from_certificate(cert: x509.Certificate) -> OrgIdentity:
    """The identity of a certificate: exactly one ``olievlek://`` URI SAN.

    Raises:
        IdentityError: no SAN extension, none or several olievlek URIs, or a bad URI.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise IdentityError(f"{describe(cert)} has no subjectAltName") from None
    except ValueError as exc:  # an extension that does not parse
        raise IdentityError(f"{describe(cert)} has extensions that do not parse ({exc})") from None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(SCHEME)]
    if len(uris) != 1:
        raise IdentityError(
            f"{describe(cert)} carries {len(uris)} olievlek:// identities; exactly one is required"
        )
    return parse_uri(uris[0])
