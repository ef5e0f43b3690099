"""Organisation identity: ``olievlek://<kind>/<org-id>`` in exactly one URI SAN.

The broker derives who is calling only from the verified client certificate;
the envelope-signing certificate carries the same URI. Org ids are opaque
(``gent``, not a NIS code): which municipalities an organisation serves is
declared in the policy bundle, so a merger is a bundle change.

An identity is established only by a certificate whose key is at least as strong as P-256: EC on P-256,
P-384 or P-521, Ed25519, Ed448, or RSA of 3072 bits or more (``require_strong_key``). The CA refuses to
issue for a weaker key and every service refuses a certificate that carries one (``WeakKey``), so an
RSA-1024 or RSA-2048 key - factorable, or soon, within a certificate's lifetime - never stands for an
organisation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, NewType

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from olievlek.errors import IdentityError

if TYPE_CHECKING:  # the name is newer than some distributions' cryptography, which the CLI may run on
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

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


# NIST SP 800-57 part 1, table 2: 128-bit security and more. P-256 is the floor; RSA reaches it at 3072 bits.
STRONG_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
MIN_RSA_BITS = 3072
_FLOOR = f"at least RSA-{MIN_RSA_BITS}, P-256 or Ed25519 required"


class WeakKey(IdentityError):
    """A certificate (or a request for one) carries a key weaker than the federation accepts. The message
    names the certificate, the key and what is required; ``REFUSAL`` is the code a service answers with."""

    REFUSAL = "WEAK_KEY"


def key_weakness(key: CertificatePublicKeyTypes) -> str | None:
    """What is too weak about a public key (e.g. ``RSA-2048 key``), or None when it is strong enough."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return None if key.curve.name in STRONG_CURVES else f"EC {key.curve.name} key"
    if isinstance(key, rsa.RSAPublicKey):
        return None if key.key_size >= MIN_RSA_BITS else f"RSA-{key.key_size} key"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA-{key.key_size} key"
    return f"{type(key).__name__.removesuffix('PublicKey').removeprefix('_')} key"


def require_strong_key(key: CertificatePublicKeyTypes, what: str) -> None:
    """Raises WeakKey naming ``what`` (a certificate or a request for one) unless ``key`` is strong enough."""
    weakness = key_weakness(key)
    if weakness is not None:
        raise WeakKey(f"{what}: {weakness}: {_FLOOR}")


def require_strong_certificate(cert: x509.Certificate) -> None:
    """Raises WeakKey unless the certificate's key is strong enough (IdentityError if it does not parse)."""
    try:
        key = cert.public_key()
    except (ValueError, TypeError) as exc:  # an unsupported or broken key: no identity either
        raise IdentityError(f"{describe(cert)} has a key that does not parse ({exc})") from None
    require_strong_key(key, describe(cert))


def describe(cert: x509.Certificate) -> str:
    """A short, identifier-free description of a certificate for messages (never raises: a subject that
    does not parse is said to be so)."""
    try:
        subject = cert.subject.rfc4514_string()
    except ValueError:
        subject = "subject does not parse"
    return f"certificate serial {cert.serial_number:x} ({subject})"


def from_certificate(cert: x509.Certificate) -> OrgIdentity:
    """The identity of a certificate: exactly one ``olievlek://`` URI SAN, under a key strong enough.

    Raises:
        WeakKey: the certificate's key is weaker than P-256, Ed25519 or RSA-3072.
        IdentityError: no SAN extension, none or several olievlek URIs, or a bad URI.
    """
    # Here, not only at the CA: every service establishes identities through this function, so a weak
    # certificate that some other (or an older) CA issued never stands for an organisation either.
    require_strong_certificate(cert)
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
