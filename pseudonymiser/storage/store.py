"""One operator's store: its key shares per domain and epoch, and evaluation counts.

It never holds a blinded input, an evaluated element or an identifier: only
scalars of its own share, public points and counts. The key share sits in
this SQLite file (mode 0600 in deployment); an HSM-backed store would
implement the same methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from olievlek.storage.migrations import load
from olievlek.storage.sqlite import Database

# The schema is pseudonymiser/storage/migrations/sqlite/*.sql (olievlek.storage.migrations); a file from before them
# carries its version in PRAGMA user_version: 1 (commit 395f065) is migration 1, 2 is 2.
MIGRATIONS = load("olievlek.pseudonymiser.storage", "pseudonymiser", legacy_user_version={1: 1, 2: 2})

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Share:
    domain: int
    epoch: int
    scalar: bytes
    public: bytes
    created_ms: int


@dataclass(frozen=True, slots=True)
class Usage:
    hour: int
    day: int


class PseudonymiserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> PseudonymiserStore:
        return cls(await Database.open(path, MIGRATIONS))

    async def accepted_versions(self) -> tuple[int, int]:
        """(bundle, root): the highest versions accepted so far, (0, 0) at first."""
        row = await self.db.fetchone("SELECT bundle, root FROM accepted_versions WHERE id = 1")
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def keep_accepted_versions(self, bundle: int, root: int) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("INSERT OR REPLACE INTO accepted_versions (id, bundle, root) VALUES (1, ?, ?)",
                             (bundle, root))

    async def active_share(self, domain: int) -> Share | None:
        row = await self.db.fetchone(
            "SELECT domain, epoch, scalar, public, created_ms FROM shares WHERE domain = ? AND active = 1", (domain,)
        )
        return Share(int(row[0]), int(row[1]), bytes(row[2]), bytes(row[3]), int(row[4])) if row else None

    async def put_share(self, share: Share) -> None:
        """Make ``share`` the active one for its domain (a new epoch, or a refreshed share)."""
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE shares SET active = 0 WHERE domain = ?", (share.domain,))
            await tx.execute(
                "INSERT OR REPLACE INTO shares (domain, epoch, scalar, public, created_ms, active)"
                " VALUES (?, ?, ?, ?, ?, 1)",
                (share.domain, share.epoch, share.scalar, share.public, share.created_ms),
            )

    async def usage(self, org: str, domain: int, now_ms: int) -> Usage:
        hour = now_ms // HOUR_MS
        rows = await self.db.fetchall(
            "SELECT hour, evaluations FROM counts WHERE org = ? AND domain = ? AND hour > ?", (org, domain, hour - 24)
        )
        return Usage(sum(n for h, n in rows if h == hour), sum(n for _, n in rows))

    async def count(self, org: str, kind: str, domain: int, n: int, now_ms: int) -> None:
        hour = now_ms // HOUR_MS
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO counts (org, domain, hour, evaluations) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (org, domain, hour) DO UPDATE SET evaluations = evaluations + excluded.evaluations",
                (org, domain, hour, n),
            )
            await tx.execute(
                "INSERT INTO unreported (org, kind, domain, requests, evaluations) VALUES (?, ?, ?, 1, ?) "
                "ON CONFLICT (org, domain) DO UPDATE SET requests = requests + 1, "
                "evaluations = evaluations + excluded.evaluations",
                (org, kind, domain, n),
            )

    async def unreported(self) -> tuple[int, list[tuple[str, str, int, int, int]]]:
        row = await self.db.fetchone("SELECT reported_until_ms FROM report_state WHERE id = 1")
        rows = await self.db.fetchall("SELECT org, kind, domain, requests, evaluations FROM unreported ORDER BY org")
        return (int(row[0]) if row else 0), [(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in rows]

    async def mark_reported(self, sent: list[tuple[str, str, int, int, int]], until_ms: int) -> None:
        """Subtract what was reported (more may have been counted meanwhile)."""
        async with self.db.transaction() as tx:
            for org, _kind, domain, requests, evaluations in sent:
                await tx.execute(
                    "UPDATE unreported SET requests = requests - ?, evaluations = evaluations - ? "
                    "WHERE org = ? AND domain = ?", (requests, evaluations, org, domain))
            await tx.execute("DELETE FROM unreported WHERE requests <= 0 AND evaluations <= 0")
            await tx.execute("INSERT OR REPLACE INTO report_state (id, reported_until_ms) VALUES (1, ?)", (until_ms,))

    async def close(self) -> None:
        await self.db.close()
