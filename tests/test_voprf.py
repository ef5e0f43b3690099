"""RFC 9497 Appendix A.1 known answers for ristretto255-SHA512, and the two-share protocol.

Vectors are copied as literals from RFC 9497 Appendix A.1.1 (OPRF mode) and A.1.2 (VOPRF mode).
"""

from __future__ import annotations

import pytest

from olievlek import voprf
from olievlek.errors import VerificationError

H = bytes.fromhex
BLIND = H("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706")

# A.1.1, OPRF mode
OPRF_SK = H("5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e")
OPRF_VECTORS = [
    (H("00"), H("609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c"),
     H("7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e"),
     H("527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3"
       "ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6")),
    (H("5a" * 17), H("da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418"),
     H("b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25"),
     H("f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4"
       "f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73")),
]

# A.1.2, VOPRF mode, test vector 1
VOPRF_SK = H("e6f73f344b79b379f1a0dd37e07ff62e38d9f71345ce62ae3a9bc60b04ccd909")
VOPRF_PK = H("c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e")
VOPRF_INPUT = H("00")
VOPRF_BLINDED = H("863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945")
VOPRF_EVALUATED = H("aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e")
VOPRF_PROOF = H("ddef93772692e535d1a53903db24367355cc2cc78de93b3be5a8ffcc6985dd06"
                "6d4346421d17bf5117a2a1ff0fcb2a759f58a539dfbe857a40bce4cf49ec600d")
VOPRF_PROOF_R = H("222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e")
VOPRF_OUTPUT = H("b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7d"
                 "a4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c")


@pytest.mark.parametrize(("msg", "blinded", "evaluated", "output"), OPRF_VECTORS, ids=["input-00", "input-5a17"])
def test_oprf_known_answers(msg: bytes, blinded: bytes, evaluated: bytes, output: bytes) -> None:
    r, b = voprf.blind(msg, voprf.MODE_OPRF, r=BLIND)
    assert b == blinded
    assert voprf.mul(OPRF_SK, b) == evaluated
    assert voprf.finalize(msg, r, evaluated) == output


def test_voprf_known_answer_with_proof() -> None:
    assert voprf.mul_base(VOPRF_SK) == VOPRF_PK
    r, b = voprf.blind(VOPRF_INPUT, voprf.MODE_VOPRF, r=BLIND)
    assert b == VOPRF_BLINDED
    evaluated, proof = voprf.blind_evaluate(VOPRF_SK, VOPRF_PK, [b], proof_r=VOPRF_PROOF_R)
    assert evaluated == [VOPRF_EVALUATED]
    assert proof == VOPRF_PROOF
    voprf.verify_proof(VOPRF_PK, [b], evaluated, proof)
    assert voprf.finalize(VOPRF_INPUT, r, evaluated[0]) == VOPRF_OUTPUT


def test_two_shares_reproduce_the_vector() -> None:
    """k1 + k2 = skSm: each share proves its own part; the sum finalizes to the RFC output."""
    k1 = voprf.random_scalar()
    k2 = voprf.scalar_sub(VOPRF_SK, k1)
    pk1, pk2 = voprf.mul_base(k1), voprf.mul_base(k2)
    assert voprf.add(pk1, pk2) == VOPRF_PK
    r, b = voprf.blind(VOPRF_INPUT, r=BLIND)
    e1, p1 = voprf.blind_evaluate(k1, pk1, [b])
    e2, p2 = voprf.blind_evaluate(k2, pk2, [b])
    voprf.verify_proof(pk1, [b], e1, p1)
    voprf.verify_proof(pk2, [b], e2, p2)
    assert voprf.finalize(VOPRF_INPUT, r, voprf.add(e1[0], e2[0])) == VOPRF_OUTPUT


def test_a_wrong_share_fails_the_proof() -> None:
    k1, wrong = voprf.random_scalar(), voprf.random_scalar()
    pk1 = voprf.mul_base(k1)
    _, b = voprf.blind(b"85073003328")
    evaluated, proof = voprf.blind_evaluate(wrong, voprf.mul_base(wrong), [b])
    with pytest.raises(VerificationError, match="does not verify"):
        voprf.verify_proof(pk1, [b], evaluated, proof)


def test_batch_proof_covers_every_element() -> None:
    k = voprf.random_scalar()
    pk = voprf.mul_base(k)
    blinded = [voprf.blind(bytes([i]))[1] for i in range(20)]
    evaluated, proof = voprf.blind_evaluate(k, pk, blinded)
    voprf.verify_proof(pk, blinded, evaluated, proof)
    tampered = list(evaluated)
    tampered[7] = voprf.mul(voprf.random_scalar(), blinded[7])
    with pytest.raises(VerificationError):
        voprf.verify_proof(pk, blinded, tampered, proof)


@pytest.mark.parametrize("data", [bytes(32), b"\xff" * 32, b"\x01" * 31], ids=["identity", "non-canonical", "short"])
def test_invalid_elements_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        voprf.blind_evaluate(voprf.random_scalar(), voprf.mul_base(voprf.random_scalar()), [data])
