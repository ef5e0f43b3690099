"""Keys weaker than P-256, Ed25519 or RSA-3072 are refused: by the CA, by the broker, by a service's own setup.

The report: the development CA signed, and the broker accepted, an RSA-1024 client key. Here the CA is
asked through the real CLI (``olievlek pki sign`` with a certificate request), and the broker is called over
real mTLS by clients whose certificates the development CA signed directly (as a careless or older CA
would): a weak one ends ``UNAUTHENTICATED`` with the refusal code ``WEAK_KEY`` and a message naming the
certificate and the key; P-256, RSA-3072 and Ed25519 keys still pass.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from olievlek.broker.server import BrokerServer

from olievlek import wire
from olievlek.errors import IdentityError
from olievlek.identity import WeakKey
from olievlek.pki import key_pem, load_private_key
from olievlek.transport import TlsFiles, channel_credentials, refusal_code_of
from olievlek.v1 import broker_pb2, broker_pb2_grpc

from .conftest import Pki
from .envelopes import body, seal_bytes, send_envelope, signer

pytestmark = pytest.mark.timeout(60)

FLOOR = "at least RSA-3072, P-256 or Ed25519 required"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _key(kind: str) -> PrivateKey:
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa-")))
    if kind == "p-256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "secp256k1":
        return ec.generate_private_key(ec.SECP256K1())
    assert kind == "ed25519"
    return ed25519.Ed25519PrivateKey.generate()


def pki_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "olievlek", "pki", *args], capture_output=True, text=True,
                          timeout=30, check=False)


def _csr(key: PrivateKey, path: Path, name: str = "gent-tls") -> Path:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, algorithm))
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize("kind", ["rsa-1024", "rsa-2048", "secp256k1"])
def test_the_ca_refuses_a_weak_key(tmp_path: Path, kind: str) -> None:
    d = str(tmp_path / "pki")
    assert pki_cli("init", "--dir", d).returncode == 0
    csr = _csr(_key(kind), tmp_path / "req.pem")
    out = tmp_path / "cert.pem"
    r = pki_cli("sign", "--dir", d, "--csr", str(csr), "--org", "municipality/gent", "--out", str(out))
    weakness = {"rsa-1024": "RSA-1024 key", "rsa-2048": "RSA-2048 key", "secp256k1": "EC secp256k1 key"}[kind]
    assert r.returncode == 2, r.stdout + r.stderr
    # One line naming the request (its subject, for whom) and why.
    said = " ".join(r.stderr.split())
    assert "CN=gent-tls" in said and "municipality/gent" in said and f"{weakness}: {FLOOR}" in said, said
    assert not out.exists()
    index = json.loads((tmp_path / "pki" / "index.json").read_text())
    assert index == []  # nothing was issued


@pytest.mark.parametrize("kind,signing", [("p-256", False), ("rsa-3072", False), ("ed25519", True)],
                         ids=["p-256 tls", "rsa-3072 tls", "ed25519 signing"])
def test_the_ca_signs_a_strong_key(tmp_path: Path, kind: str, signing: bool) -> None:
    d = str(tmp_path / "pki")
    assert pki_cli("init", "--dir", d).returncode == 0
    key = _key(kind)
    out = tmp_path / "cert.pem"
    r = pki_cli("sign", "--dir", d, "--csr", str(_csr(key, tmp_path / "req.pem")), "--org", "municipality/gent",
                "--out", str(out), *(["--signing"] if signing else []))
    assert r.returncode == 0, r.stdout + r.stderr
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    assert uris == ["olievlek://municipality/gent"]  # the CA's names, never the request's


def _client_cert(pki: Pki, key: PrivateKey, out: Path, org: str = "gent") -> TlsFiles:
    """A TLS client certificate the development CA signs directly (no check of ours in the way)."""
    ca_key = load_private_key(pki.root / "ca.key")
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"municipality/{org}")]))
            .issuer_name(pki.ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"olievlek://municipality/{org}")]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "tls.key").write_bytes(key_pem(key))  # type: ignore[arg-type]
    return TlsFiles(pki.root / "ca.pem", out / "tls.pem", out / "tls.key")


async def _get_head(broker: BrokerServer, tls: TlsFiles) -> broker_pb2.SignedTreeHead:
    creds = grpc.ssl_channel_credentials(tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes())
    async with grpc.aio.secure_channel(f"127.0.0.1:{broker.port}", creds) as channel:
        response: broker_pb2.SignedTreeHead = await broker_pb2_grpc.BrokerStub(channel).GetHead(
            broker_pb2.GetHeadRequest(), timeout=5)
        return response


@pytest.mark.parametrize("kind", ["rsa-1024", "rsa-2048"])
async def test_the_broker_refuses_a_client_with_a_weak_key(pki: Pki, broker: BrokerServer, tmp_path: Path,
                                                            log_file: Path, kind: str) -> None:
    tls = _client_cert(pki, _key(kind), tmp_path / kind)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _get_head(broker, tls)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value
    assert refusal_code_of(refused.value) == "WEAK_KEY"
    details = str(refused.value.details())
    assert "CN=municipality/gent" in details and f"{kind.upper()} key: {FLOOR}" in details, details
    # Recorded like every refused call: a counter by RPC and code, and one log line.
    assert broker.metrics is not None
    assert broker.metrics.registry.get_sample_value("olievlek_broker_refused_calls_total",
                                                    {"rpc": "GetHead", "code": "WEAK_KEY"}) == 1
    logged = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(e.get("event") == "call.refused" and e.get("code") == "WEAK_KEY" for e in logged), logged


@pytest.mark.parametrize("kind", ["p-256", "rsa-3072"])
async def test_the_broker_accepts_a_client_with_a_strong_key(pki: Pki, broker: BrokerServer, tmp_path: Path,
                                                              kind: str) -> None:
    head = await _get_head(broker, _client_cert(pki, _key(kind), tmp_path / kind))
    assert head.ByteSize() > 0


async def test_ed25519_signatures_still_pass(pki: Pki, broker: BrokerServer) -> None:
    """The envelope-signing certificates are Ed25519: their identity check passes the same floor."""
    response = await send_envelope(pki, broker.port, seal_bytes(wire.encode(body()), signer(pki, "gent")))
    assert response.WhichOneof("outcome") == "receipt", response


def test_a_service_does_not_start_on_a_weak_key_of_its_own(pki: Pki, tmp_path: Path) -> None:
    tls = _client_cert(pki, _key("rsa-2048"), tmp_path / "weak")
    with pytest.raises(WeakKey, match=f"weak/tls.pem: .*RSA-2048 key: {FLOOR}"):
        channel_credentials(tls)
    assert isinstance(WeakKey("x"), IdentityError)
    channel_credentials(pki.tls("gent"))  # the federation's own P-256 certificates pass
