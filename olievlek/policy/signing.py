"""Signed policy: administrators' keys, a root of trust, m-of-n bundle signatures.

The TUF pattern (python-tuf ``trusted_metadata_set.py``): a *root* document
lists the administrators' Ed25519 keys and the signing threshold. Root
version 1 is signed by its own threshold and pinned by whoever deploys the
broker; version n+1 must be signed by the threshold of version n *and* by its
own, so a root can rotate keys but a stolen minority cannot. A bundle is
signed over its digest (which covers ``bundle.yaml`` with version and
expiry); it is valid with at least ``threshold`` distinct signatures by root
keys, before its expiry. The broker additionally never loads a lower version
than it enforced before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek.errors import ConfigError

from .loader import SIGNATURES, Bundle, digest_of

ROOT_CONTEXT = b"olievlek/v1/policy-root\x00"
BUNDLE_CONTEXT = b"olievlek/v1/policy-bundle\x00"


class PolicySignatureError(ConfigError):
    """A root or bundle signature check failed; the message says which and why."""


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_id(public: ed25519.Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_hex(public: ed25519.Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def keygen(prefix: Path) -> str:
    """Write ``<prefix>.key`` (PEM, 0600) and ``<prefix>.pub`` (hex); return the key id."""
    key = ed25519.Ed25519PrivateKey.generate()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(f"{prefix}.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    Path(f"{prefix}.pub").write_text(public_hex(key.public_key()) + "\n")
    return key_id(key.public_key())


def load_signing_key(path: Path) -> ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read signing key {path}: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> ed25519.Ed25519PublicKey:
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(path.read_text().strip()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read public key {path}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Root:
    version: int
    expires: dt.datetime
    threshold: int
    keys: dict[str, ed25519.Ed25519PublicKey]


def _parse_root(doc: dict[str, Any], where: str) -> Root:
    try:
        signed = doc["signed"]
        keys = {kid: ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(h)) for kid, h in signed["keys"].items()}
        root = Root(int(signed["version"]), dt.datetime.fromisoformat(signed["expires"]), int(signed["threshold"]),
                    keys)
    except (KeyError, TypeError, ValueError) as exc:
        raise PolicySignatureError(f"{where}: not a root document ({exc})") from None
    for kid, pub in keys.items():
        if key_id(pub) != kid:
            raise PolicySignatureError(f"{where}: key id {kid} does not match its key")
    if not 1 <= root.threshold <= len(keys):
        raise PolicySignatureError(f"{where}: threshold {root.threshold} with {len(keys)} keys")
    return root


def _count_valid(message: bytes, signatures: object, keys: dict[str, ed25519.Ed25519PublicKey]) -> int:
    """Distinct root keys with a valid signature over ``message``; entries that are not
    {"keyid": str, "sig": hex} count for nothing."""
    good: set[str] = set()
    for s in signatures if isinstance(signatures, list) else ():
        if not isinstance(s, dict) or not isinstance(s.get("keyid"), str) or not isinstance(s.get("sig"), str):
            continue
        pub = keys.get(s["keyid"])
        if pub is None:
            continue
        try:
            pub.verify(bytes.fromhex(s.get("sig", "")), message)
        except (InvalidSignature, ValueError):
            continue
        good.add(s["keyid"])
    return len(good)


def make_root(version: int, expires: dt.datetime, threshold: int, public: list[ed25519.Ed25519PublicKey],
              signers: list[ed25519.Ed25519PrivateKey]) -> dict[str, Any]:
    signed = {
        "type": "root", "version": version, "expires": expires.isoformat(), "threshold": threshold,
        "keys": {key_id(p): public_hex(p) for p in public},
    }
    msg = ROOT_CONTEXT + canonical(signed)
    sigs = [{"keyid": key_id(k.public_key()), "sig": k.sign(msg).hex()} for k in signers]
    return {"signed": signed, "signatures": sigs}


def verify_root_chain(docs: list[tuple[str, dict[str, Any]]], now: dt.datetime | None = None) -> Root:
    """Verify root versions 1..n in order; return the newest.

    Raises:
        PolicySignatureError: a gap, a rollback, too few signatures, or an expired newest root.
    """
    if not docs:
        raise PolicySignatureError("no root document")
    trusted: Root | None = None
    for where, doc in docs:
        root = _parse_root(doc, where)
        msg = ROOT_CONTEXT + canonical(doc["signed"])
        sigs = doc.get("signatures", [])
        if trusted is not None:
            if root.version != trusted.version + 1:
                raise PolicySignatureError(f"{where}: root version {root.version} does not follow {trusted.version}")
            if _count_valid(msg, sigs, trusted.keys) < trusted.threshold:
                raise PolicySignatureError(f"{where}: not signed by {trusted.threshold} keys of root "
                                           f"version {trusted.version}")
        elif root.version != 1:
            raise PolicySignatureError(f"{where}: the first root must be version 1")
        if _count_valid(msg, sigs, root.keys) < root.threshold:
            raise PolicySignatureError(f"{where}: not signed by {root.threshold} of its own keys")
        trusted = root
    assert trusted is not None
    if (now or dt.datetime.now(dt.UTC)) >= trusted.expires:
        raise PolicySignatureError(f"root version {trusted.version} expired on {trusted.expires:%Y-%m-%d}")
    return trusted


def load_roots(directory: Path) -> Root:
    """Load ``<n>.root.json`` files from a directory and verify the chain."""
    files = sorted(directory.glob("*.root.json"), key=lambda p: int(p.name.split(".")[0]))
    docs = []
    for f in files:
        try:
            docs.append((f.name, json.loads(f.read_text())))
        except (OSError, json.JSONDecodeError) as exc:
            raise PolicySignatureError(f"{f}: cannot read root ({exc})") from None
    return verify_root_chain(docs)


def sign_bundle(directory: Path, key: ed25519.Ed25519PrivateKey) -> str:
    """Add this key's signature over the bundle's current digest (replacing stale ones)."""
    digest = digest_of(directory)
    path = directory / SIGNATURES
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    sigs = doc.get("signatures", []) if doc.get("bundle_digest") == digest else []
    kid = key_id(key.public_key())
    sigs = [s for s in sigs if s["keyid"] != kid]
    sigs.append({"keyid": kid, "sig": key.sign(BUNDLE_CONTEXT + digest.encode()).hex()})
    path.write_text(json.dumps({"bundle_digest": digest, "signatures": sigs}, indent=2) + "\n")
    return kid


def verify_bundle(directory: Path, root: Root, now: dt.datetime | None = None) -> Bundle:
    """Load a bundle and check it is signed by the root's threshold and not expired.

    Raises:
        BundleError: the bundle itself is wrong.
        PolicySignatureError: unsigned, under-signed, signed over other content, or expired.
    """
    bundle = Bundle.load(directory)
    path = directory / SIGNATURES
    if not path.exists():
        raise PolicySignatureError(f"bundle {bundle.name} v{bundle.version} is not signed ({SIGNATURES} missing)")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicySignatureError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise PolicySignatureError(f"{path}: not an object with bundle_digest and signatures")
    if doc.get("bundle_digest") != bundle.digest:
        raise PolicySignatureError(f"bundle {bundle.name} v{bundle.version}: signatures cover another content "
                                   f"(digest {str(doc.get('bundle_digest'))[:12]}…, files {bundle.digest[:12]}…)")
    n = _count_valid(BUNDLE_CONTEXT + bundle.digest.encode(), doc.get("signatures", []), root.keys)
    if n < root.threshold:
        raise PolicySignatureError(f"bundle {bundle.name} v{bundle.version} has {n} valid signature(s); "
                                   f"the root requires {root.threshold}")
    if (now or dt.datetime.now(dt.UTC)) >= bundle.expires:
        raise PolicySignatureError(f"bundle {bundle.name} v{bundle.version} expired on {bundle.expires:%Y-%m-%d}")
    return bundle
