"""Trust decisions about certificates: chain to the federation CA, validity, revocation.

Used by the broker on every call (the TLS peer certificate) and by the broker
and nodes on every envelope (the signer certificate). The revocation list is
re-read whenever its file changes, so ``pki revoke`` takes effect on the next
call without a restart.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID

from olievlek.errors import ConfigError, IdentityError, VerificationError
from olievlek.identity import OrgIdentity, describe, from_certificate
from olievlek.pki import crl_number_of, load_cert
from olievlek.v1 import broker_pb2

CERT_CACHE_SIZE = 4096


def _strict_der(der: bytes) -> x509.Certificate:
    """A DER certificate, refusing what cryptography only warns about (a serial that is not positive, which
    RFC 5280 section 4.1.2.2 forbids): an envelope's signer certificate comes from a stranger."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        return x509.load_der_x509_certificate(der)


class RevocationUnavailable(ConfigError):
    """The revocation list cannot be used (unreadable, not the CA's, outdated or rolled back): nobody is
    trusted. ``message`` names the file for the service's own log; a remote caller is told only
    ``PUBLIC_MESSAGE`` (no server path)."""

    PUBLIC_MESSAGE = ("the server cannot check revocation right now (its revocation list is unreadable, "
                      "outdated or older than one it used before); nobody is accepted until it is fixed")


class RevocationList:
    """The CA's CRL, verified against the CA and reloaded when the file changes.

    Revocation never goes back: the highest CRL number accepted is kept (in ``floor_file`` when given, so a
    restart remembers it), and a validly signed but older list - one that would re-admit a revoked
    organisation - is refused; the newer list already loaded stays in force.
    """

    def __init__(self, path: Path, ca: x509.Certificate, floor_file: Path | None = None) -> None:
        self._path = path
        self._ca = ca
        self._floor_file = floor_file
        self._stamp: tuple[int, int] | None = None
        self._serials: frozenset[int] = frozenset()
        self._next_update: dt.datetime | None = None
        self._number: int | None = None  # of the list in force
        self.rolled_back = False  # an older list was offered after a newer one

    def _floor(self) -> int:
        if self._floor_file is None or not self._floor_file.exists():
            return 0
        try:
            return int(self._floor_file.read_text().strip() or 0)
        except (OSError, ValueError) as exc:
            raise RevocationUnavailable(f"cannot read the revocation floor {self._floor_file}: {exc}") from None

    def _raise_floor(self, number: int) -> None:
        if self._floor_file is None or number <= self._floor():
            return
        tmp = self._floor_file.with_suffix(".tmp")
        tmp.write_text(f"{number}\n")
        tmp.chmod(0o600)
        os.replace(tmp, self._floor_file)

    def _reload(self) -> None:
        st = os.stat(self._path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            crl = x509.load_pem_x509_crl(self._path.read_bytes())
        except ValueError as exc:
            raise RevocationUnavailable(f"revocation list {self._path} does not parse: {exc}") from None
        public = self._ca.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(public):
            raise RevocationUnavailable(f"revocation list {self._path} is not signed by the federation CA")
        number = crl_number_of(crl)
        floor = max(self._floor(), self._number or 0)
        if number < floor:
            self.rolled_back = True
            self._stamp = stamp  # do not re-read it on every call; a newer file changes the stamp
            if self._number is None:  # nothing newer in force (a restart): trust nobody
                raise RevocationUnavailable(f"revocation list {self._path} has number {number}, lower than "
                                            f"number {floor} used before: refused as a rollback")
            return
        self._next_update = crl.next_update_utc
        self._serials = frozenset(r.serial_number for r in crl)
        self._number = number
        self._raise_floor(number)
        self._stamp = stamp

    def is_revoked(self, serial: int) -> bool:
        """Fail closed: an unreadable or outdated list trusts nobody (RevocationUnavailable)."""
        try:
            self._reload()
        except OSError as exc:
            raise RevocationUnavailable(f"cannot read revocation list {self._path}: {exc}") from exc
        if self._number is None:
            raise RevocationUnavailable(f"revocation list {self._path} is not in force (refused as a rollback)")
        if self._next_update is not None and dt.datetime.now(dt.UTC) > self._next_update:
            raise RevocationUnavailable(f"revocation list {self._path} is past its next update "
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
    def load(cls, ca_path: Path, crl_path: Path, floor_file: Path | None = None) -> TrustAnchor:
        """``floor_file``: where the highest CRL number accepted is kept (in the service's own state)."""
        ca = load_cert(ca_path)
        return cls(ca, RevocationList(crl_path, ca, floor_file))

    def _check(self, raw: bytes, cert: x509.Certificate, now: dt.datetime) -> OrgIdentity:
        try:
            return self._checked(raw, cert, now)
        except ValueError as exc:  # a field of a (lazily parsed) certificate that does not parse
            raise IdentityError(f"{describe(cert)} does not parse: {exc}") from None

    def _checked(self, raw: bytes, cert: x509.Certificate, now: dt.datetime) -> OrgIdentity:
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
            cert = self._issued.get(der) or _strict_der(der)
        except (ValueError, x509.InvalidVersion, CryptographyDeprecationWarning):
            raise VerificationError(
                "signer_certificate is not a DER certificate", refusal_code=code,
                field="signer_certificate",
            ) from None
        try:
            identity = self._check(der, cert, now or dt.datetime.now(dt.UTC))
        except IdentityError as exc:
            raise VerificationError(exc.message, refusal_code=code, field="signer_certificate") from exc
        except RevocationUnavailable:
            raise VerificationError(RevocationUnavailable.PUBLIC_MESSAGE, refusal_code=code,
                                    field="signer_certificate") from None
        try:
            return identity, self._signing_key(cert)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise VerificationError(f"{describe(cert)} does not parse: {exc}", refusal_code=code,
                                    field="signer_certificate") from None

    @staticmethod
    def _signing_key(cert: x509.Certificate) -> ed25519.Ed25519PublicKey:
        code = broker_pb2.REFUSAL_CODE_BAD_SIGNER_CERTIFICATE
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
        return key
