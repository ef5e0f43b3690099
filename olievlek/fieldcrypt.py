"""Encryption at rest for a node's case file: a key-encryption key, per-case data keys, sealed fields.

- The **key-encryption key** (KEK, 32 bytes) lives outside the database: a
  0600 file or an environment variable (``docs/case-file.md``). The database
  keeps only an HMAC check value of it, so a wrong KEK is a clear error at
  start-up instead of garbage later.
- Each case has its own **data key** (32 random bytes), stored only wrapped by
  the KEK (AES-256-GCM, associated data: key id and version). Destroying the
  wrapped key erases everything sealed under it (crypto-shredding).
- A **field** is sealed with AES-256-GCM under its data key with associated
  data (table, column, row id, key id, key version): a ciphertext moved to
  another row or column, or under another key, fails authentication.
- A **blind index** (HMAC-SHA256 under a key derived from the KEK) finds a
  subject by identifier without storing the identifier.

Nonces are 96 random bits per encryption (NIST SP 800-38D 8.2.2); a data key
seals a handful of fields, far below the 2^32 limit for random nonces.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import MutableMapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from olievlek.errors import ConfigError, ErrorCode, OlievlekError

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_VERSION = 1
_CHECK_CONTEXT = b"olievlek/node/kek-check/v1"
_INDEX_CONTEXT = b"olievlek/node/blind-index/v1"
_TAG_CONTEXT = b"olievlek/node/erased-pseudonym/v1"


class DecryptionError(OlievlekError):
    """A sealed value does not open: wrong key, destroyed key, or moved to another place."""

    code = ErrorCode.DECRYPTION


def _aad(*parts: object) -> bytes:
    return "|".join(str(p) for p in parts).encode()


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise DecryptionError(f"{what} does not authenticate (wrong key, or not stored in this place)") from None


class DataKey:
    """One case's data key, unwrapped in memory for the time of a request."""

    def __init__(self, key: bytes, key_id: int, version: int = KEY_VERSION) -> None:
        self._key = key
        self.key_id = key_id
        self.version = version

    def seal(self, table: str, column: str, row_id: int, value: str) -> bytes:
        return _seal(self._key, value.encode(), _aad(table, column, row_id, self.key_id, self.version))

    def open(self, table: str, column: str, row_id: int, blob: bytes) -> str:
        aad = _aad(table, column, row_id, self.key_id, self.version)
        return _open(self._key, blob, aad, f"{table}.{column} of row {row_id}").decode()


class KeyEncryptionKey:
    """The node's KEK: wraps data keys, derives the blind-index key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigError(f"the key-encryption key must be {KEY_BYTES} bytes, got {len(key)}")
        self._key = key
        self._index_key = HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=_INDEX_CONTEXT).derive(key)
        self._tag_key = HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=_TAG_CONTEXT).derive(key)

    @classmethod
    def load(cls, file: Path | None, env_name: str | None, environ: MutableMapping[str, str] = os.environ
             ) -> KeyEncryptionKey:
        """From the environment variable ``env_name`` (removed once read, so processes started later do
        not inherit it) or from ``file`` (hex, a regular file of mode 0600 owned by this account).

        Raises:
            ConfigError: neither is set, the file is readable by others, or the value is not 32 hex bytes.
        """
        if env_name:
            raw = environ.pop(env_name, "")
            if not raw:
                raise ConfigError(f"the key-encryption key variable {env_name} is not set")
            return cls(_hex(raw, f"variable {env_name}"))
        if file is None:
            raise ConfigError("no key-encryption key: set kek_file (a 0600 file) or kek_env (a variable name)")
        try:
            info = file.lstat()  # not through a symlink: the file itself must be ours and closed
        except OSError as exc:
            raise ConfigError(f"cannot read the key-encryption key file {file}: {exc.strerror}") from None
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{file} must be a regular file, not a symlink")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{file} is readable by group or others (mode {info.st_mode & 0o777:o}); chmod 600 it")
        if info.st_uid != os.geteuid():
            raise ConfigError(f"{file} belongs to uid {info.st_uid}, not to the node's account (uid {os.geteuid()})")
        return cls(_hex(file.read_text(), str(file)))

    @staticmethod
    def generate(file: Path) -> None:
        """Write a fresh KEK to ``file`` with mode 0600 (created that way, never widened)."""
        file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(KEY_BYTES).hex() + "\n")

    def check_value(self) -> bytes:
        """Stored in the database: tells a wrong KEK at start-up, reveals nothing of the key."""
        return hmac.new(self._key, _CHECK_CONTEXT, hashlib.sha256).digest()

    def new_data_key(self, key_id: int) -> tuple[DataKey, bytes]:
        """A fresh data key and its wrapped form (what the database keeps)."""
        key = os.urandom(KEY_BYTES)
        return DataKey(key, key_id), _seal(self._key, key, _aad("data-key", key_id, KEY_VERSION))

    def unwrap(self, key_id: int, version: int, wrapped: bytes) -> DataKey:
        return DataKey(_open(self._key, wrapped, _aad("data-key", key_id, version), f"data key {key_id}"),
                       key_id, version)

    def pseudonym_tag(self, pseudonym: bytes) -> bytes:
        """What a recipient remembers of an erased pseudonym: linkable only with this node's KEK."""
        return hmac.new(self._tag_key, pseudonym, hashlib.sha256).digest()

    def blind_index(self, kind: str, normalised: str) -> bytes:
        return hmac.new(self._index_key, f"{kind}:{normalised}".encode(), hashlib.sha256).digest()


def _hex(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(f"the key-encryption key in {where} is not hex") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"the key-encryption key in {where} must be {KEY_BYTES} bytes ({2 * KEY_BYTES} hex digits)")
    return key
