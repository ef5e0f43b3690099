"""``olievlek pki``: the federation's development CA."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from olievlek.errors import ConfigError
from olievlek.identity import OrgIdentity, parse_uri
from olievlek.pki import CertificateAuthority, cert_pem

from .console import out

app = typer.Typer(help="Development PKI: federation CA, certificates, revocation.", no_args_is_help=True)

DirOpt = Annotated[Path, typer.Option("--dir", "-d", help="PKI directory.")]


def _org(value: str) -> OrgIdentity:
    return parse_uri(value if value.startswith("olievlek://") else f"olievlek://{value}")


@app.command("init")
def init(directory: DirOpt) -> None:
    """Create a federation CA (ECDSA P-256) and an empty revocation list."""
    ca = CertificateAuthority.init(directory)
    out.print(f"CA created in {directory} (serial {ca.cert.serial_number:x})")


@app.command("issue")
def issue(
    directory: DirOpt,
    org: Annotated[str | None, typer.Option(help="Organisation as KIND/ID, e.g. municipality/gent.")] = None,
    server: Annotated[str | None, typer.Option(help="Server certificate name, e.g. broker.")] = None,
    host: Annotated[list[str] | None, typer.Option(help="Server DNS name or IP (repeatable).")] = None,
) -> None:
    """Issue an organisation's TLS + envelope-signing certificates, or a server certificate."""
    ca = CertificateAuthority.load(directory)
    if (org is None) == (server is None):
        raise ConfigError("give exactly one of --org KIND/ID or --server NAME")
    if org is not None:
        identity = _org(org)
        creds = ca.issue_org(identity)
        out.print(f"issued {identity.uri}: {creds.tls_cert} and {creds.sign_cert}")
    else:
        assert server is not None
        server_creds = ca.issue_server(server, host or ["localhost", "127.0.0.1"])
        out.print(f"issued server certificate {server_creds.tls_cert}")


@app.command("sign")
def sign(
    directory: DirOpt,
    csr: Annotated[Path, typer.Option("--csr", help="PEM certificate request; only its key is used.")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the certificate (PEM).")],
    org: Annotated[str | None, typer.Option(help="Organisation as KIND/ID, e.g. municipality/gent.")] = None,
    signing: Annotated[bool, typer.Option("--signing", help="An envelope-signing certificate (Ed25519) "
                                          "instead of a TLS client certificate.")] = False,
    server: Annotated[str | None, typer.Option(help="Server certificate name, e.g. broker.")] = None,
    host: Annotated[list[str] | None, typer.Option(help="Server DNS name or IP (repeatable).")] = None,
) -> None:
    """Issue a certificate for a key an organisation keeps itself, from its certificate request.

    A key weaker than P-256, Ed25519 or RSA-3072 is refused (exit 2), naming the request and the key.
    """
    ca = CertificateAuthority.load(directory)
    if (org is None) == (server is None):
        raise ConfigError("give exactly one of --org KIND/ID or --server NAME")
    if signing and server is not None:
        raise ConfigError("--signing is for an organisation's envelope-signing certificate, not a server's")
    try:
        request = csr.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read certificate request {csr}: {exc.strerror}") from None
    cert = ca.sign_request(request, org=_org(org) if org is not None else None, signing=signing, server=server,
                           hosts=tuple(host or ()))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_bytes(cert_pem(cert))
    out.print(f"issued certificate serial {cert.serial_number:x} for {org or server}: {out_file}")


@app.command("revoke")
def revoke(
    directory: DirOpt,
    serial: Annotated[str | None, typer.Option(help="Certificate serial (hex).")] = None,
    org: Annotated[str | None, typer.Option(help="Revoke every certificate of KIND/ID.")] = None,
) -> None:
    """Add certificates to the revocation list that the broker and nodes check."""
    ca = CertificateAuthority.load(directory)
    if (org is None) == (serial is None):
        raise ConfigError("give exactly one of --serial HEX or --org KIND/ID")
    if serial is not None:
        try:
            serials = [int(serial, 16)]
        except ValueError:
            raise ConfigError(f"serial {serial!r} is not hexadecimal") from None
    else:
        assert org is not None
        serials = ca.serials_of(str(_org(org)))
        if not serials:
            raise ConfigError(f"no certificate was issued to {org}")
    for s in serials:
        ca.revoke(s)
        out.print(f"revoked serial {s:x}")
