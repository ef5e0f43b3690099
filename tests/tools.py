"""System tools the tests drive, and what happens when one is missing.

Under CI (``CI=true``, which ``make test`` sets) a missing tool fails the test and names the Debian package
that brings it (from ``scripts/debian-packages.txt``, the list ``scripts/ensure_debian_tools.sh`` installs);
run by hand without ``CI``, the test is skipped with the same words. ``make test`` also fails on any skip at
all (``no_skips.py``), so a clean CI machine can never pass without running a test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES_FILE = REPO / "scripts" / "debian-packages.txt"


def strict() -> bool:
    """Whether a missing tool fails the test (CI) rather than skipping it (a developer's machine)."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def packages() -> dict[str, str]:
    """Command -> Debian package, as ``scripts/debian-packages.txt`` lists them."""
    out: dict[str, str] = {}
    for line in PACKAGES_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            command, package = line.split()
            out[command] = package
    return out


def unavailable(reason: str) -> NoReturn:
    """This test cannot run here: a failure under CI, a skip elsewhere."""
    if strict():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require(*commands: str) -> dict[str, str]:
    """The absolute path of each command; a missing one is ``unavailable``, naming its package."""
    known = packages()
    unknown = [c for c in commands if c not in known]
    if unknown:  # a test may only depend on a tool that make test installs
        raise AssertionError(f"{', '.join(unknown)}: add it to {PACKAGES_FILE.relative_to(REPO)}")
    found = {c: shutil.which(c) for c in commands}
    missing = sorted({known[c] for c, path in found.items() if path is None})
    if missing:
        names = " ".join(missing)
        unavailable(f"needs the Debian package(s) {names}, not installed here "
                    f"(make test installs them as root: apt-get install --no-install-recommends {names})")
    return {c: str(path) for c, path in found.items()}


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"needs root: {why} (CI runs as root)")


def shared_dir(prefix: str, owner: str | None = None, mode: int = 0o700) -> Path:
    """A directory an unprivileged process can reach: made in the system temporary directory (never under
    pytest's ``tmp_path``, which is 0700 and owned by root when CI runs as root), owned by ``owner``."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)
    return path
