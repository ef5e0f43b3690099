"""The policy bundles a node can re-check a decision under: the ones it enforced, and ones it fetched.

A delivery's leaf names the bundle the broker decided under. The node re-decides the envelope under that
bundle, never taking the broker's word for it: a bundle it enforced itself is kept on disk by digest; any
other is fetched from the broker (``GetBundle``), verified with the node's own roots as of the decision's
time, and kept only when it is the digest asked for and not older than the version the node enforces - a
broker cannot hand a node an old, looser bundle to excuse a decision.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path

from olievlek import logs
from olievlek.errors import ConfigError, TransportError, VerificationError
from olievlek.policy import Bundle
from olievlek.policy.archive import unpack
from olievlek.policy.rollback import RollbackError
from olievlek.policy.signing import Root, load_roots, verify_bundle

from .broker_client import BrokerClient

log = logs.get("node.bundles")


class BundleKeeper:
    def __init__(self, folder: Path, roots: Path, current: Bundle, client: BrokerClient, root_floor: int = 0) -> None:
        self._folder = folder
        self._roots = roots
        self._root_floor = root_floor
        self.current = current
        self._client = client
        self._loaded: dict[str, Bundle] = {current.digest: current}

    def keep_current(self) -> None:
        """Keep a copy of the bundle this node enforces (decisions under it stay checkable after an upgrade)."""
        target = self._folder / self.current.digest
        if not target.exists():
            self._folder.mkdir(parents=True, exist_ok=True)
            shutil.copytree(self.current.directory, target)

    def _root(self) -> Root:
        """The node's roots, never older than the root version it accepted (a removed root file is a rollback)."""
        root = load_roots(self._roots)
        if root.version < self._root_floor:
            raise RollbackError(f"root version {root.version} is older than root version {self._root_floor} "
                                "accepted before (was a newer root file removed?)")
        return root

    async def get(self, digest: str, decided_at_ms: int) -> Bundle:
        """The bundle with this digest, as it was valid when the decision was made.

        Raises:
            VerificationError: a bundle the node cannot trust for this decision (unsigned by its roots,
                another digest, older than the version it enforces, expired at the decision).
            TransportError: the broker could not be asked (try again later).
        """
        if digest in self._loaded:
            return self._loaded[digest]
        at = dt.datetime.fromtimestamp(decided_at_ms / 1000, dt.UTC)
        kept = self._folder / digest
        if not kept.exists():
            try:
                archive = await self._client.get_bundle(bytes.fromhex(digest))
            except TransportError as exc:
                if exc.refusal_code != "UNKNOWN_BUNDLE":
                    raise
                raise VerificationError(f"the broker logged a decision under bundle {digest[:12]}… and does not "
                                        "have it", field="bundle") from None
            with tempfile.TemporaryDirectory(dir=self._folder.parent) as tmp:
                try:
                    fetched = verify_bundle(unpack(archive, Path(tmp) / "bundle"), self._root(), now=at)
                except ConfigError as exc:
                    raise VerificationError(f"the bundle {digest[:12]}… the broker gave does not verify: "
                                            f"{exc.message}", field="bundle") from None
                if fetched.digest != digest:
                    raise VerificationError(f"the broker gave bundle {fetched.digest[:12]}… for {digest[:12]}…",
                                            field="bundle")
                if fetched.version < self.current.version:
                    raise VerificationError(f"bundle {digest[:12]}… is version {fetched.version}, older than the "
                                            f"version {self.current.version} this node enforces", field="bundle")
                self._folder.mkdir(parents=True, exist_ok=True)
                shutil.copytree(fetched.directory, kept)
            log.info("bundle.fetched", digest=digest, version=fetched.version)
        try:
            bundle = verify_bundle(kept, self._root(), now=at)
        except ConfigError as exc:
            raise VerificationError(f"the kept bundle {digest[:12]}… does not verify: {exc.message}",
                                    field="bundle") from None
        self._loaded[digest] = bundle
        return bundle
