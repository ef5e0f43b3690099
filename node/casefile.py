"""The node's encrypted case file: sealing a subject's identifying fields and opening them again.

A subject's fields are sealed under the data key of its case (one key per
subject, created with it), with associated data naming table, column and row,
so the database alone reveals no identity and a ciphertext cannot be moved.
Reads that open identifying fields go through ``identity``, and the caller
logs them in the access log (who, when, which case, which fields, why).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from olievlek import logs
from olievlek.errors import ConfigError
from olievlek.fieldcrypt import KEY_VERSION, DataKey, DecryptionError, KeyEncryptionKey
from olievlek.normalise import fallback_input
from olievlek.storage.sqlite import Txn
from olievlek.v1 import local_pb2

from .store import SUBJECT_FIELDS, NodeStore

log = logs.get("node.casefile")

KEK_CHECK = "kek_check"


class CaseFile:
    """Seals and opens subjects' identifying fields."""

    def __init__(self, store: NodeStore, kek: KeyEncryptionKey) -> None:
        self._store = store
        self._kek = kek

    async def check_key(self) -> None:
        """At start-up: the configured KEK must be the one this database was created with.

        Raises:
            ConfigError: another key (every sealed field would be unreadable).
        """
        stored = await self._store.meta(KEK_CHECK)
        if stored is None:
            await self._store.set_meta(KEK_CHECK, self._kek.check_value())
            return
        if stored != self._kek.check_value():
            raise ConfigError(
                f"{self._store.db.path}: the key-encryption key does not match the one this database was "
                "created with; start the node with the right kek_file or kek_env")

    def _index(self, number: str, identity: local_pb2.Identity) -> list[tuple[str, bytes]]:
        index = [("nrn", self._kek.blind_index("nrn", number))] if number else []
        if identity.birth_date.strip() and identity.family_name.strip():
            fallback = fallback_input(identity.family_name, identity.given_names, identity.birth_date)
            index.append(("fallback", self._kek.blind_index("fallback", fallback.value.hex())))
        return index

    async def new_subject_txn(self, tx: Txn, number: str, identity: local_pb2.Identity,
                              pseudonyms: list[tuple[str, bytes]]) -> int:
        """A subject with its own data key; ``number`` is the normalised national number or ""."""
        key_id = await self._store.insert_data_key_txn(tx, KEY_VERSION)
        data_key, wrapped = self._kek.new_data_key(key_id)
        await self._store.set_wrapped_key_txn(tx, key_id, wrapped)
        subject_id = await self._store.insert_subject_txn(tx, key_id, pseudonyms)
        values = {"national_number": number, "given_names": identity.given_names.strip(),
                  "family_name": identity.family_name.strip(), "birth_date": identity.birth_date.strip(),
                  "address": identity.address.strip()}
        sealed = {c: data_key.seal("subjects", c, subject_id, v) for c, v in values.items() if v}
        await self._store.seal_subject_txn(tx, subject_id, sealed, self._index(number, identity))
        return subject_id

    async def _data_key(self, key_id: int) -> DataKey:
        version, wrapped = await self._store.wrapped_key(key_id)
        if wrapped is None:
            raise DecryptionError(f"data key {key_id} was destroyed: the case was erased")
        return self._kek.unwrap(key_id, version, wrapped)

    async def note_sealer(self, case_id: int) -> Callable[[Txn, int, str, int], Awaitable[None]]:
        """A transaction step that adds a sealed note to ``case_id`` (the key is unwrapped before the txn)."""
        data_key = await self._data_key(await self._store.data_key_of_case(case_id))
        store = self._store

        async def add(tx: Txn, uid: int, text: str, now: int) -> None:
            note_id = await store.insert_note_txn(tx, case_id, uid, now)
            await store.seal_note_txn(tx, note_id, data_key.seal("case_notes", "body", note_id, text))

        return add

    async def notes(self, case_id: int) -> list[local_pb2.CaseNote]:
        rows = await self._store.notes(case_id)
        if not rows:
            return []
        data_key = await self._data_key(await self._store.data_key_of_case(case_id))
        return [local_pb2.CaseNote(at_ms=at, uid=uid, text=data_key.open("case_notes", "body", note_id, body))
                for note_id, at, uid, body in rows]

    async def identity(self, subject_id: int) -> tuple[local_pb2.Identity, list[str]]:
        """The subject's identity and the fields that were opened.

        Raises:
            DecryptionError: the data key was destroyed (erased) or a field was tampered with.
        """
        key_id, sealed = await self._store.sealed_subject(subject_id)
        data_key = await self._data_key(key_id)
        opened = {c: data_key.open("subjects", c, subject_id, blob) for c, blob in sealed.items() if blob}
        return local_pb2.Identity(**opened), [c for c in SUBJECT_FIELDS if c in opened]

    async def find(self, number: str) -> list[int]:
        """Subjects with this normalised national number (through the blind index)."""
        return await self._store.subjects_by_index(self._kek.blind_index("nrn", number))
