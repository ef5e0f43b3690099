"""RFC 9497 OPRF/VOPRF, suite ristretto255-SHA512, over libsodium's ristretto255 (rbcl).

Only the protocol is written here (RFC 9497 sections 2.2, 3.3.1, 3.3.2, 4.1);
every group and scalar operation is libsodium's. Used in VOPRF mode with
additive key shares: each operator i holds k_i, publishes K_i = k_i·G and
proves (DLEQ) that its evaluation used k_i; the client adds the evaluations,
which equals an evaluation under k = Σ k_i with public key K = Σ K_i.

Known answers: RFC 9497 Appendix A.1 (tests/test_voprf.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import rbcl

from olievlek.errors import VerificationError
from olievlek.v1 import broker_pb2

SUITE = b"ristretto255-SHA512"
MODE_OPRF = 0x00
MODE_VOPRF = 0x01
ELEMENT_LEN = 32
SCALAR_LEN = 32
OUTPUT_LEN = 64
IDENTITY = bytes(32)


def context_string(mode: int) -> bytes:
    """RFC 9497 section 3.1: "OPRFV1-" || I2OSP(mode, 1) || "-" || identifier."""
    return b"OPRFV1-" + bytes([mode]) + b"-" + SUITE


def _i2osp2(n: int) -> bytes:
    return n.to_bytes(2, "big")


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512 (b_in_bytes = 64, s_in_bytes = 128)."""
    if len(dst) > 255 or length > 255 * 64:
        raise ValueError("expand_message_xmd: DST or output too long")
    ell = -(-length // 64)
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(bytes(128) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    b = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        prev = bytes(x ^ y for x, y in zip(b0, b[-1], strict=True))
        b.append(hashlib.sha512(prev + bytes([i]) + dst_prime).digest())
    return b"".join(b)[:length]


def hash_to_group(msg: bytes, mode: int) -> bytes:
    uniform = expand_message_xmd(msg, b"HashToGroup-" + context_string(mode), 64)
    return bytes(rbcl.crypto_core_ristretto255_from_hash(uniform))


def hash_to_scalar(msg: bytes, mode: int) -> bytes:
    uniform = expand_message_xmd(msg, b"HashToScalar-" + context_string(mode), 64)
    return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(uniform))


# p = 2^255 - 19, the field ristretto255's encodings live in (RFC 9496 section 4.1).
FIELD_P = 2**255 - 19


def is_canonical_encoding(data: bytes) -> bool:
    """RFC 9496 section 4.3.1 (Decode), its first checks: 32 bytes whose little-endian value s is below p
    and not negative (even). libsodium's own check lets an encoding with bit 255 set through (it decodes
    to the same element as the canonical one), so this is checked here, before libsodium sees the bytes."""
    if len(data) != ELEMENT_LEN:
        return False
    s = int.from_bytes(data, "little")
    return s < FIELD_P and s % 2 == 0


def is_element(data: bytes) -> bool:
    """A canonical encoding of a non-identity ristretto255 element."""
    return (is_canonical_encoding(data) and data != IDENTITY
            and bool(rbcl.crypto_core_ristretto255_is_valid_point(data)))


def mul(scalar: bytes, element: bytes) -> bytes:
    return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, element))


def mul_base(scalar: bytes) -> bytes:
    return bytes(rbcl.crypto_scalarmult_ristretto255_base(scalar))


def add(a: bytes, b: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_add(a, b))


def random_scalar() -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_scalar_random())


def scalar_add(a: bytes, b: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_scalar_add(a, b))


def scalar_sub(a: bytes, b: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_scalar_sub(a, b))


def scalar_mul(a: bytes, b: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_scalar_mul(a, b))


def scalar_invert(a: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_scalar_invert(a))


def blind(msg: bytes, mode: int = MODE_VOPRF, r: bytes | None = None) -> tuple[bytes, bytes]:
    """Return (blind, blindedElement). ``r`` is for known-answer tests only."""
    point = hash_to_group(msg, mode)
    if point == IDENTITY:
        raise ValueError("input hashes to the identity element")
    r = r or random_scalar()
    return r, mul(r, point)


def _composite_terms(pk: bytes, cs: Sequence[bytes], ds: Sequence[bytes], mode: int) -> list[bytes]:
    """The d_i of RFC 9497 ComputeComposites (section 2.2.1)."""
    seed_dst = b"Seed-" + context_string(mode)
    seed = hashlib.sha512(_i2osp2(len(pk)) + pk + _i2osp2(len(seed_dst)) + seed_dst).digest()
    out = []
    for i, (c, d) in enumerate(zip(cs, ds, strict=True)):
        h2 = (_i2osp2(len(seed)) + seed + _i2osp2(i) + _i2osp2(len(c)) + c + _i2osp2(len(d)) + d
              + b"Composite")
        out.append(hash_to_scalar(h2, mode))
    return out


def _sum(points: Sequence[bytes]) -> bytes:
    acc = points[0]
    for p in points[1:]:
        acc = add(acc, p)
    return acc


def _challenge(pk: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes, mode: int) -> bytes:
    transcript = b"".join(_i2osp2(len(x)) + x for x in (pk, m, z, t2, t3)) + b"Challenge"
    return hash_to_scalar(transcript, mode)


def blind_evaluate(sk: bytes, pk: bytes, blinded: Sequence[bytes], mode: int = MODE_VOPRF,
                   proof_r: bytes | None = None) -> tuple[list[bytes], bytes]:
    """Evaluate a batch and prove it (RFC 9497 BlindEvaluate + GenerateProof, batched).

    Raises:
        ValueError: an input is not a valid non-identity element.
    """
    for b in blinded:
        if not is_element(b):
            raise ValueError("blinded input is not a valid ristretto255 element")
    evaluated = [mul(sk, b) for b in blinded]
    ds = _composite_terms(pk, blinded, evaluated, mode)
    m = _sum([mul(d, c) for d, c in zip(ds, blinded, strict=True)])
    z = mul(sk, m)  # ComputeCompositesFast: the server knows k
    r = proof_r or random_scalar()
    t2, t3 = mul_base(r), mul(r, m)
    c = _challenge(pk, m, z, t2, t3, mode)
    s = scalar_sub(r, scalar_mul(c, sk))
    return evaluated, c + s


def verify_proof(pk: bytes, blinded: Sequence[bytes], evaluated: Sequence[bytes], proof: bytes,
                 mode: int = MODE_VOPRF) -> None:
    """RFC 9497 VerifyProof with A = G, B = pk.

    Raises:
        VerificationError: the proof does not show that ``evaluated`` used the key behind ``pk``.
    """
    bad = VerificationError("pseudonymiser proof does not verify against its published key",
                            refusal_code=broker_pb2.REFUSAL_CODE_BAD_SIGNATURE, field="proof")
    if len(proof) != 2 * SCALAR_LEN or len(evaluated) != len(blinded) or not evaluated:
        raise bad
    if not all(is_element(e) for e in evaluated) or not is_element(pk):
        raise bad
    c, s = proof[:SCALAR_LEN], proof[SCALAR_LEN:]
    ds = _composite_terms(pk, blinded, evaluated, mode)
    m = _sum([mul(d, b) for d, b in zip(ds, blinded, strict=True)])
    z = _sum([mul(d, e) for d, e in zip(ds, evaluated, strict=True)])
    try:
        t2 = add(_mul_base_or_zero(s), mul(c, pk))
        t3 = add(_mul_or_zero(s, m), mul(c, z))
    except Exception as exc:  # libsodium refuses identity results: not a valid proof
        raise bad from exc
    if not hmac.compare_digest(_challenge(pk, m, z, t2, t3, mode), c):
        raise bad


def _mul_base_or_zero(s: bytes) -> bytes:
    return bytes(rbcl.crypto_scalarmult_ristretto255_base_allow_scalar_zero(s))


def _mul_or_zero(s: bytes, p: bytes) -> bytes:
    return bytes(rbcl.crypto_scalarmult_ristretto255_allow_scalar_zero(s, p))


def finalize(msg: bytes, r: bytes, evaluated: bytes) -> bytes:
    """RFC 9497 Finalize: unblind and hash with the input. 64 bytes."""
    n = mul(scalar_invert(r), evaluated)
    return hashlib.sha512(_i2osp2(len(msg)) + msg + _i2osp2(len(n)) + n + b"Finalize").digest()
