"""Signed notes, checkpoints and cosignature/v1 against published vectors and our own fixed-seed ones.

Sources of the vectors (copied as data, not code):
- golang.org/x/mod ``sumdb/note`` (example_test.go, note_test.go): the ``PeterNeumann`` key, text and note;
- C2SP ``signed-note.md``: the ``example.com/foo`` key and note;
- sigsum-go ``pkg/proof/proof_test.go`` and ``pkg/types/tree_head_test.go``: a real cosignature/v1 and its
  signed message;
- transparency-dev/formats ``note/note_cosigv1_test.go``: a cosignature verifier key (type 0x04).
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from olievlek.audit import checkpoint, note
from olievlek.errors import VerificationError

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = ("If you think cryptography is the answer to your problem,\n"
              "then you don't know what your problem is.\n")
PETER_NOTE = (PETER_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXg"
              "KvqfqdngotpRZb6KE6RyyBwJnAM=\n")


def _peter_key() -> ed25519.Ed25519PrivateKey:
    raw = base64.b64decode(PETER_SKEY.split("+", 4)[4])  # PRIVATE+KEY+<name>+<id>+<base64>
    assert raw[0] == note.ED25519
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw[1:])


def test_the_go_reference_note_is_signed_byte_for_byte() -> None:
    key = _peter_key()
    signature = note.sign(PETER_TEXT, "PeterNeumann", key)
    assert signature.id.hex() == "c74f20a3"
    assert note.Note(PETER_TEXT, (signature,)).encode() == PETER_NOTE
    verifier = note.Verifier.parse(PETER_VKEY)
    assert verifier.public == key.public_key().public_bytes_raw() and verifier.vkey == PETER_VKEY
    assert note.verify(note.parse(PETER_NOTE), verifier)


def test_the_c2sp_example_note_verifies() -> None:
    verifier = note.Verifier.parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
    signed = ("This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONnc"
              "AlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")
    assert note.verify(note.parse(signed), verifier)


@pytest.mark.parametrize("bad", [
    PETER_TEXT, PETER_TEXT + "\n", PETER_NOTE[:-1], "\x01" + PETER_NOTE,
    PETER_NOTE.replace("PeterNeumann x", "Bad Name x"), PETER_NOTE + "Unexpected line.\n",
], ids=["no-signatures", "blank-only", "no-final-newline", "control-character", "name-with-space", "trailing-line"])
def test_malformed_notes_are_refused(bad: str) -> None:
    with pytest.raises(VerificationError):
        note.parse(bad)


def test_a_known_key_with_a_bad_signature_refuses_the_note_and_unknown_keys_are_ignored() -> None:
    verifier = note.Verifier.parse(PETER_VKEY)
    encoded = PETER_NOTE.encode()
    at = encoded.index(b"x08go") + 10
    tampered = (encoded[:at] + b"ABCD" + encoded[at + 4:]).decode()
    with pytest.raises(VerificationError, match="does not verify"):
        note.verify(note.parse(tampered), verifier)
    other = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))
    stranger = note.Verifier("PeterNeumann", note.ED25519, other.public_key().public_bytes_raw())
    assert not note.verify(note.parse(PETER_NOTE), stranger)  # same name, other key id: ignored


@pytest.mark.parametrize("vkey", [
    "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
], ids=["wrong-length", "unknown-type", "wrong-id", "space-in-name"])
def test_bad_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(VerificationError):
        note.Verifier.parse(vkey)


# -- cosignature/v1 -----------------------------------------------------------------------------------------------
SIGSUM_BODY = ("sigsum.org/v1/tree/7c5fafc796c201e0fcd7567c5033a2777ec28363f54ea0ba97b57bece0d96acd\n4\n"
               "PdxW/UbnHlF7aTa5d6RX2n05gQgUH831yDhs3XJKt6g=\n")
SIGSUM_WITNESS = bytes.fromhex("cbe357e6b464049e703b7be6c89201193acc2a18c095b0691aaf50b9b1e1578a")
SIGSUM_COSIG = bytes.fromhex("e8d6c447d7847d5c1431ef86f8c60fa0cbacd975388b2a8f202fe4b0f9d0d544989c9d9351752d86aa"
                             "e2df72b9d7135b6b09de2ccaa6d68edf638105d69be609")


def test_the_cosigned_message_is_as_specified() -> None:
    root = base64.b64encode(bytes(range(32))).decode()
    body = f"sigsum.org/v1/tree/66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925\n257\n{root}\n"
    assert note.cosigned_message(body, 72623859790382856) == (
        b"cosignature/v1\ntime 72623859790382856\n"
        b"sigsum.org/v1/tree/66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925\n257\n"
        b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")


def test_a_real_cosignature_v1_verifies_under_its_0x04_key_id() -> None:
    payload = (1683202758).to_bytes(8, "big") + SIGSUM_COSIG
    name = "witness.example.com/w1"  # the name is not signed: any name, with its key id
    verifier = note.Verifier(name, note.COSIGNATURE_V1, SIGSUM_WITNESS)
    assert verifier.vkey == "witness.example.com/w1+535d0c9b+BMvjV+a0ZASecDt75siSARk6zCoYwJWwaRqvULmx4VeK"
    signed = note.Note(SIGSUM_BODY, (note.Signature(name, verifier.id, payload),))
    assert note.verify(signed, verifier)
    forged = note.Note(SIGSUM_BODY.replace("\n4\n", "\n5\n"), (note.Signature(name, verifier.id, payload),))
    with pytest.raises(VerificationError):
        note.verify(forged, verifier)


def test_a_cosignature_vkey_from_transparency_dev_has_the_0x04_key_id() -> None:
    verifier = note.Verifier.parse("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
    assert verifier.sig_type == note.COSIGNATURE_V1


def test_our_fixed_seed_cosignature_vector() -> None:
    """Our own vector (seed 0x01 * 32), so a change to the encoding is caught even without a published one."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([1] * 32))
    text = checkpoint.Checkpoint("olievlek.flanders/audit/1", 3, bytes(range(32)), bytes(32), 1796664026894).text
    signature = note.cosign(text, "witness.vvsg.be/olievlek", key, 1796664026)
    line = signature.line
    assert line == (
        "\u2014 witness.vvsg.be/olievlek " + base64.b64encode(signature.id + signature.payload).decode() + "\n")
    assert signature.id == note.key_id("witness.vvsg.be/olievlek", note.COSIGNATURE_V1,
                                       key.public_key().public_bytes_raw())
    assert note.cosignature_time(signature) == 1796664026
    assert line == FIXED_COSIGNATURE_LINE
    assert note.verify(note.Note(text, (signature,)), note.Verifier(
        "witness.vvsg.be/olievlek", note.COSIGNATURE_V1, key.public_key().public_bytes_raw()))


# Computed once with this module and frozen: seed 0x01 * 32, timestamp 1796664026, the checkpoint above.
FIXED_COSIGNATURE_LINE = ("\u2014 witness.vvsg.be/olievlek lkJgkwAAAABrFura4sZCO6k/FGDw5+Qv2lPBHdTdpeKuEcDQoBa8S75J"
                          "AKV0Pf5rSZTe9o8h2zyVGTx5OJOWYgbSXVJ8qfTV1vQ9AA==\n")


def test_a_checkpoint_round_trips_and_the_log_signs_it() -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([2] * 32))
    cp = checkpoint.Checkpoint("olievlek.flanders/audit/1", 1043, bytes(32), bytes.fromhex("ab" * 32), 17966)
    assert cp.text.splitlines()[3:] == ["bundle " + "ab" * 32, "time 17966"]
    signed = checkpoint.sign(cp, key)
    opened, _ = checkpoint.open_signed(signed, "olievlek.flanders/audit/1", key.public_key())
    assert opened == cp
    with pytest.raises(VerificationError, match="expected"):
        checkpoint.open_signed(signed, "olievlek.flanders/audit/2", key.public_key())
    other = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([3] * 32))
    with pytest.raises(VerificationError, match="not signed by the log key"):
        checkpoint.open_signed(signed, None, other.public_key())
    with pytest.raises(VerificationError, match="leading zeroes"):
        checkpoint.Checkpoint.from_text("o\n01\n" + base64.b64encode(bytes(32)).decode() + "\n")
