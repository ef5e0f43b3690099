"""Trust decisions about certificates: chain to the federation CA, validity, revocation.

Used by the broker on every call (the TLS peer certificate) and by the broker
and nodes on every envelope (the signer certificate). The revocation list is
re-read whenever its file changes, so ``pki revoke`` takes effect on the next
call without a restart.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from olievlek.errors import ConfigError, IdentityError, VerificationError
from olievlek.identity import OrgIdentity, describe, from_certificate
from olievlek.pki import load_cert
from olievlek.v1 import broker_pb2

CERT_CACHE_SIZE = 4096


class RevocationList:
    """The CA's CRL, verified against the CA and reloaded when the file changes."""

    def __init__(self, path: Path, ca: x509.Certificate) -> None:
        self._path = path
        self._ca = ca
        self._stamp: tuple[int, int] | None = None
        self._serials: frozenset[int] = frozenset()
        self._next_update: dt.datetime | None = None

    def _reload(self) -> None:
        st = os.stat(self._path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            crl = x509.load_pem_x509_crl(self._path.read_bytes())
        except ValueError as exc:
            raise ConfigError(f"revocation list {self._path} does not parse: {exc}") from None
        public = self._ca.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(public):
            raise ConfigError(f"revocation list {self._path} is not signed by the federation CA")
        self._next_update = crl.next_update_utc
        self._serials = frozenset(r.serial_number for r in crl)
        self._stamp = stamp

    def is_revoked(self, serial: int) -> bool:
        """Fail closed: an unreadable or outdated list trusts nobody (ConfigError)."""
        try:
            self._reload()
        except OSError as exc:
            raise ConfigError(f"cannot read revocation list {self._path}: {exc}") from exc
        if self._next_update is not None and dt.datetime.now(dt.UTC) > self._next_update:
            raise ConfigError(f"revocation list {self._path} is past its next update "
                              f"({self._next_update:%Y-%m-%d %H:%M}); publish a fresh one")
        return serial in self._serials


class TrustAnchor:
    """The federation CA plus its revocation list."""

    def __init__(self, ca: x509.Certificate, crl: RevocationList) -> None:
        self.ca = ca
        self.crl = crl
        # Certificates whose CA signature already verified, by their exact bytes: the signature
        # check (ECDSA) is the costly part and never changes; validity and revocation are checked
        # on every use.
        self._issued: dict[bytes, x509.Certificate] = {}

    def _issued_by_ca(self, raw: bytes, cert: x509.Certificate) -> x509.Certificate:
        if raw in self._issued:
            return cert
        try:
            cert.verify_directly_issued_by(self.ca)
        except (ValueError, TypeError, InvalidSignature):
            raise IdentityError(f"{describe(cert)} is not issued by the federation CA") from None
        if len(self._issued) >= CERT_CACHE_SIZE:
            self._issued.clear()
        self._issued[raw] = cert
        return cert

    @classmethod
    def load(cls, ca_path: Path, crl_path: Path) -> TrustAnchor:
        ca = load_cert(ca_path)
        return cls(ca, RevocationList(crl_path, ca))

    def _check(self, raw: bytes, cert: x509.Certificate, now: dt.datetime) -> OrgIdentity:
        cert = self._issued_by_ca(raw, cert)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise IdentityError(f"{describe(cert)} is expired or not yet valid")
        if self.crl.is_revoked(cert.serial_number):
            raise IdentityError(f"{describe(cert)} is revoked")
        return from_certificate(cert)

    def verify_tls_peer(self, pem: bytes, now: dt.datetime | None = None) -> OrgIdentity:
        """The identity behind a TLS client certificate that the handshake already chained.

        Raises:
            IdentityError: not ours, expired, revoked, or not exactly one identity.
        """
        cert = self._issued.get(pem) or x509.load_pem_x509_certificate(pem)
        return self._check(pem, cert, now or dt.datetime.now(dt.UTC))

    def verify_signer(
        self, der: bytes, now: dt.datetime | None = None
    ) -> tuple[OrgIdentity, ed25519.Ed25519PublicKey]:
        """Check an envelope-signing certificate and return its identity and key.

        Raises:
            VerificationError: the certificate is unusable for envelope signing.
        """
        code = broker_pb2.REFUSAL_CODE_BAD_SIGNER_CERTIFICATE
        try:
            cert = self._issued.get(der) or x509.load_der_x509_certificate(der)
        except ValueError:
            raise VerificationError(
                "signer_certificate is not a DER certificate", refusal_code=code,
                field="signer_certificate",
            ) from None
        try:
            identity = self._check(der, cert, now or dt.datetime.now(dt.UTC))
        except IdentityError as exc:
            raise VerificationError(exc.message, refusal_code=code, field="signer_certificate") from exc
        key = cert.public_key()
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise VerificationError(
                f"{describe(cert)} is not an Ed25519 envelope-signing certificate",
                refusal_code=code, field="signer_certificate",
            )
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if ExtendedKeyUsageOID.CLIENT_AUTH in eku or ExtendedKeyUsageOID.SERVER_AUTH in eku:
                raise VerificationError(
                    f"{describe(cert)} is a TLS certificate, not an envelope-signing one",
                    refusal_code=code, field="signer_certificate",
                )
        except x509.ExtensionNotFound:
            pass
        return identity, key
