"""The latest checkpoint this witness cosigned, per log origin (tlog-witness keeps nothing else).

Its table is ``witness/storage/migrations/sqlite/0001_initial.sql``; a file from before migrations is
recognised by that table.
"""

from __future__ import annotations

from olievlek.storage.migrations import load
from olievlek.storage.sqlite import Database, Txn

MIGRATIONS = load("olievlek.witness.storage", "witness", legacy_tables=("checkpoints",))


class WitnessStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def cosigned_txn(tx: Txn, origin: str) -> tuple[int, bytes] | None:
        """(size, root) of the checkpoint last cosigned for ``origin``, read in the deciding transaction."""
        row = await tx.fetchone("SELECT size, root FROM checkpoints WHERE origin = ?", (origin,))
        return (int(row[0]), bytes(row[1])) if row else None

    @staticmethod
    async def cosign_txn(tx: Txn, origin: str, size: int, root: bytes, signed_note: bytes, at_s: int) -> None:
        await tx.execute(
            "INSERT INTO checkpoints (origin, size, root, note, cosigned_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root,"
            " note = excluded.note, cosigned_at = excluded.cosigned_at",
            (origin, size, root, signed_note, at_s))

    async def latest(self, origin: str) -> tuple[int, bytes] | None:
        """(size, signed note) of the checkpoint last cosigned for ``origin``."""
        row = await self.db.fetchone("SELECT size, note FROM checkpoints WHERE origin = ?", (origin,))
        return (int(row[0]), bytes(row[1])) if row else None
