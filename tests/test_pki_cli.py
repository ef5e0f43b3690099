"""`olievlek pki init|issue|revoke` through the real entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from olievlek.identity import from_certificate

pytestmark = pytest.mark.timeout(60)


def pki(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "olievlek", "pki", *args], capture_output=True, text=True,
                          timeout=30, check=False)


def test_init_issue_revoke(tmp_path: Path) -> None:
    d = str(tmp_path / "pki")
    assert pki("init", "--dir", d).returncode == 0
    again = pki("init", "--dir", d)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert pki("issue", "--dir", d, "--server", "broker", "--host", "127.0.0.1").returncode == 0
    r = pki("issue", "--dir", d, "--org", "justice_house/jh-antwerpen")
    assert r.returncode == 0, r.stderr
    tls = x509.load_pem_x509_certificate((tmp_path / "pki/orgs/jh-antwerpen/tls.pem").read_bytes())
    sign = x509.load_pem_x509_certificate((tmp_path / "pki/orgs/jh-antwerpen/sign.pem").read_bytes())
    assert str(from_certificate(tls)) == "justice_house/jh-antwerpen" == str(from_certificate(sign))
    assert tls.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) != \
        sign.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert oct((tmp_path / "pki/orgs/jh-antwerpen/sign.key").stat().st_mode & 0o777) == "0o600"
    bad = pki("issue", "--dir", d, "--org", "embassy/x")
    assert bad.returncode == 2 and "unknown kind" in bad.stderr
    r = pki("revoke", "--dir", d, "--org", "justice_house/jh-antwerpen")
    assert r.returncode == 0 and r.stdout.count("revoked serial") == 2
    crl = x509.load_pem_x509_crl((tmp_path / "pki/crl.pem").read_bytes())
    assert {c.serial_number for c in crl} == {tls.serial_number, sign.serial_number}
    unknown = pki("revoke", "--dir", d, "--serial", "abc123")
    assert unknown.returncode == 2 and "was not issued by this CA" in unknown.stderr
