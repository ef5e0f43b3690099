"""The committed stubs are exactly what proto/ generates: drift fails the build."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(60)
def test_generated_stubs_match_proto(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    fresh = gen.generate(tmp_path)
    committed_dir = REPO / "olievlek" / "v1"
    committed = sorted(p.name for p in committed_dir.glob("*_pb2*.py*"))
    assert [p.name for p in fresh] == committed, "stub set differs: run `make protos`"
    for path in fresh:
        assert path.read_bytes() == (committed_dir / path.name).read_bytes(), (
            f"{path.name} drifted from proto/: run `make protos` and commit"
        )
