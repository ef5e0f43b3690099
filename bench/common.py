"""What every bench shares: a smoke mode, bundle edits through parsed YAML, and one machine-readable result line.

Smoke mode (``--smoke``) runs the same code paths at tiny sizes in seconds; ``make test`` runs every bench
that way (``tests/test_benches.py``) so that none can rot between full runs. Full sizes are the defaults
and ``make bench`` runs them.

Bundles are edited as data (``edit_bundle``): a regular expression over YAML text silently matches too much
or nothing once the bundle grows a section, and the bench then measures a bundle the schema refuses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

RESULT_PREFIX = "RESULT "


def parse_args(parser: argparse.ArgumentParser, smoke: Mapping[str, object]) -> argparse.Namespace:
    """Parse the bench's arguments; ``--smoke`` replaces every default named in ``smoke`` (explicit
    arguments still win)."""
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, seconds: the code paths only, not the figures (make test runs this)")
    args = parser.parse_args()
    if args.smoke:
        defaults = {action.dest: action.default for action in parser._actions}
        for name, value in smoke.items():
            if name not in defaults:
                raise SystemExit(f"bench smoke setting {name!r} is not an argument of this bench")
            if getattr(args, name) == defaults[name]:
                setattr(args, name, value)
    return args


def edit_bundle(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Copy the bundle at ``src`` to ``dst`` (without signatures) and apply ``edit`` to its parsed
    ``bundle.yaml``; ``edit`` must change what it means to (``KeyError`` when a section moved)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("signatures.json"))
    meta = dst / "bundle.yaml"
    data = yaml.safe_load(meta.read_text())
    edit(data)
    meta.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst


def report(name: str, smoke: bool, **figures: object) -> None:
    """Print the bench's figures as one JSON line (what scripts and the smoke test read)."""
    print(RESULT_PREFIX + json.dumps({"bench": name, "smoke": smoke, **figures}, sort_keys=True))


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[Any]:
    """A PostgreSQL 15 cluster for one bench run, started as the tests start theirs (``tests/postgres.py``:
    Debian's binaries as the postgres user, a temporary directory, a free port, its Unix socket only)."""
    repo = str(Path(__file__).resolve().parent.parent)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from tests.postgres import throwaway_cluster

    with throwaway_cluster("olv-pg-bench-") as cluster:
        yield cluster
