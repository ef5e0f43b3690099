"""The federation's development PKI: a CA, certificates and a revocation list.

Layout of a PKI directory::

    ca.pem  ca.key            federation CA (ECDSA P-256); the key is 0600
    crl.pem                   X.509 CRL signed by the CA, rewritten on revoke
    index.json                every issued certificate: serial, org, purpose
    orgs/<org-id>/tls.pem tls.key     TLS client certificate (ECDSA P-256)
    orgs/<org-id>/sign.pem sign.key   envelope-signing certificate (Ed25519)
    servers/<name>/tls.pem tls.key    server certificates (broker)

Organisation certificates carry exactly one URI SAN ``olievlek://<kind>/<id>``.
An organisation that keeps its own key sends a certificate request instead (``sign_request``); the CA
takes only the key from it (proof of possession checked), never its names. No certificate is issued for a
key weaker than P-256, Ed25519 or RSA-3072 (``identity.require_strong_key``): such a key is refused with
``WeakKey`` naming the request and the key.

The envelope-signing key is separate from the TLS key, so that a stolen TLS
key cannot forge end-to-end signatures and the other way round.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from olievlek.errors import ConfigError
from olievlek.identity import OrgIdentity, require_strong_certificate, require_strong_key

if TYPE_CHECKING:  # the name is newer than some distributions' cryptography, which the CLI may run on
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=397)

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class OrgCredentials:
    """Paths of one organisation's credentials inside a PKI directory."""

    tls_cert: Path
    tls_key: Path
    sign_cert: Path
    sign_key: Path


@dataclass(frozen=True, slots=True)
class ServerCredentials:
    """Paths of one server's TLS credentials."""

    tls_cert: Path
    tls_key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_public(path: Path, data: bytes) -> None:
    """Write then rename, so a reader (the broker re-reading the CRL) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def crl_number_of(crl: x509.CertificateRevocationList) -> int:
    """A CRL's number (RFC 5280 section 5.2.3), 0 when it carries none."""
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def _host_names(hosts: list[str]) -> list[x509.GeneralName]:
    san: list[x509.GeneralName] = []
    for host in hosts:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            san.append(x509.DNSName(host))
    return san


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read certificate {path}: {exc}") from exc


def load_private_key(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read private key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ConfigError(f"private key {path} is neither ECDSA nor Ed25519")
    return key


class CertificateAuthority:
    """The federation CA, loaded from a PKI directory."""

    def __init__(self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
        self.directory = directory
        self.cert = cert
        self._key = key

    @classmethod
    def init(cls, directory: Path, name: str = "olievlek development federation CA") -> CertificateAuthority:
        """Create a new CA in an empty (or missing) directory."""
        if (directory / "ca.pem").exists():
            raise ConfigError(f"{directory} already holds a CA; refusing to overwrite it")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(directory / "ca.key", key_pem(key))
        _write_public(directory / "ca.pem", cert_pem(cert))
        ca = cls(directory, cert, key)
        ca._write_index([])
        ca._write_crl([])
        return ca

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        key = load_private_key(directory / "ca.key")
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{directory / 'ca.key'} is not an ECDSA key")
        cert = load_cert(directory / "ca.pem")
        require_strong_certificate(cert)  # a CA on a weak curve would make every certificate it signs weak
        return cls(directory, cert, key)

    # -- index and CRL -------------------------------------------------
    def _index(self) -> list[dict[str, str]]:
        path = self.directory / "index.json"
        entries: list[dict[str, str]] = json.loads(path.read_text()) if path.exists() else []
        return entries

    def _write_index(self, entries: list[dict[str, str]]) -> None:
        _write_public(self.directory / "index.json", json.dumps(entries, indent=2).encode())

    def _record(self, cert: x509.Certificate, subject: str, purpose: str) -> None:
        entries = self._index()
        entries.append({"serial": f"{cert.serial_number:x}", "subject": subject, "purpose": purpose})
        self._write_index(entries)

    def crl_number(self) -> int:
        """The number of the CRL published now (RFC 5280 section 5.2.3); 0 for none or one without."""
        path = self.directory / "crl.pem"
        if not path.exists():
            return 0
        return crl_number_of(x509.load_pem_x509_crl(path.read_bytes()))

    def _write_crl(self, revoked: list[int]) -> None:
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=30))
            # Rising with every list, so a service can refuse an older (rolled-back) one.
            .add_extension(x509.CRLNumber(self.crl_number() + 1), critical=False)
        )
        for serial in sorted(set(revoked)):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        crl = builder.sign(self._key, hashes.SHA256())
        _write_public(self.directory / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))

    def revoked_serials(self) -> list[int]:
        crl = x509.load_pem_x509_crl((self.directory / "crl.pem").read_bytes())
        return [r.serial_number for r in crl]

    def revoke(self, serial: int) -> None:
        """Add a serial to the CRL. Unknown serials are refused (typo guard)."""
        known = {int(e["serial"], 16) for e in self._index()}
        if serial not in known:
            raise ConfigError(f"serial {serial:x} was not issued by this CA")
        self._write_crl([*self.revoked_serials(), serial])

    def serials_of(self, subject: str) -> list[int]:
        """Every serial issued to an organisation (``kind/id``) or server name."""
        return [int(e["serial"], 16) for e in self._index() if e["subject"] == subject]

    # -- issuance ------------------------------------------------------
    def issue(
        self,
        public_key: CertificatePublicKeyTypes,
        common_name: str,
        san: list[x509.GeneralName],
        *,
        eku: list[x509.ObjectIdentifier] | None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> x509.Certificate:
        """Issue a leaf certificate. ``not_before``/``not_after`` exist for tests.

        Raises:
            WeakKey: the key is weaker than P-256, Ed25519 or RSA-3072.
        """
        require_strong_key(public_key, f"the certificate for CN={common_name}")
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(minutes=5))
            .not_valid_after(not_after or now + LEAF_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=eku is None,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
        )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        return builder.sign(self._key, hashes.SHA256())

    def issue_org(
        self,
        identity: OrgIdentity,
        *,
        extra_uris: tuple[str, ...] = (),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        out: Path | None = None,
    ) -> OrgCredentials:
        """Issue an organisation's TLS client and envelope-signing certificates (into ``orgs/<id>``, or
        ``out``: two identities with one id and different kinds need different folders)."""
        out = out or self.directory / "orgs" / identity.org_id
        san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
        san += [x509.UniformResourceIdentifier(u) for u in extra_uris]
        tls_key = ec.generate_private_key(ec.SECP256R1())
        tls = self.issue(
            tls_key.public_key(), str(identity), san, eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
            not_before=not_before, not_after=not_after,
        )
        sign_key = ed25519.Ed25519PrivateKey.generate()
        # No EKU: the signing certificate is not usable for TLS.
        sign = self.issue(
            sign_key.public_key(), f"{identity} envelope signing", san, eku=None,
            not_before=not_before, not_after=not_after,
        )
        creds = OrgCredentials(out / "tls.pem", out / "tls.key", out / "sign.pem", out / "sign.key")
        _write_private(creds.tls_key, key_pem(tls_key))
        _write_public(creds.tls_cert, cert_pem(tls))
        _write_private(creds.sign_key, key_pem(sign_key))
        _write_public(creds.sign_cert, cert_pem(sign))
        self._record(tls, str(identity), "tls-client")
        self._record(sign, str(identity), "envelope-signing")
        return creds

    def sign_request(self, csr_pem: bytes, *, org: OrgIdentity | None = None, signing: bool = False,
                     server: str | None = None, hosts: tuple[str, ...] = ()) -> x509.Certificate:
        """A certificate for the key of a certificate request: an organisation's TLS client certificate (or,
        with ``signing``, its envelope-signing certificate), or a server's. Only the request's key is used;
        its subject and extensions are ignored, the names come from ``org`` or ``server``/``hosts``.

        Raises:
            ConfigError: the request does not parse, is not signed by its own key, or the key does not fit.
            WeakKey: the request's key is weaker than P-256, Ed25519 or RSA-3072.
        """
        if (org is None) == (server is None):
            raise ConfigError("a certificate request is signed for exactly one organisation or server")
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
            subject = csr.subject.rfc4514_string() or "no subject"
            key = csr.public_key()
            possessed = csr.is_signature_valid
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"the certificate request does not parse: {exc}") from None
        what = f"certificate request ({subject}) for {org or server}"
        require_strong_key(key, what)
        if not possessed:
            raise ConfigError(f"{what} is not signed by its own key (no proof of possession)")
        if org is not None:
            san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(org.uri)]
            if signing and not isinstance(key, ed25519.Ed25519PublicKey):
                # Envelope signatures are Ed25519 only (trust.verify_signer): anything else would be unusable.
                raise ConfigError(f"{what}: an envelope-signing certificate needs an Ed25519 key")
            name, eku = (f"{org} envelope signing", None) if signing else (str(org), [ExtendedKeyUsageOID.CLIENT_AUTH])
            cert = self.issue(key, name, san, eku=eku)
            self._record(cert, str(org), "envelope-signing" if signing else "tls-client")
            return cert
        assert server is not None
        cert = self.issue(key, server, _host_names(list(hosts) or ["localhost", "127.0.0.1"]),
                          eku=[ExtendedKeyUsageOID.SERVER_AUTH])
        self._record(cert, server, "tls-server")
        return cert

    def issue_server(self, name: str, hosts: list[str]) -> ServerCredentials:
        """Issue a TLS server certificate for DNS names and IP addresses."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue(key.public_key(), name, _host_names(hosts), eku=[ExtendedKeyUsageOID.SERVER_AUTH])
        out = self.directory / "servers" / name
        creds = ServerCredentials(out / "tls.pem", out / "tls.key")
        _write_private(creds.tls_key, key_pem(key))
        _write_public(creds.tls_cert, cert_pem(cert))
        self._record(cert, name, "tls-server")
        return creds
