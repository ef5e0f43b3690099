"""Generate the Python stubs for proto/ into a target directory.

Usage: python scripts/gen_protos.py [OUT_DIR]   (default: the repository root)

The stubs land in <OUT_DIR>/olievlek/v1/, so they import as olievlek.v1.*.
The drift test runs this into a temporary directory and compares bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def generate(out_dir: Path) -> list[Path]:
    protos = sorted(PROTO_DIR.glob("olievlek/v1/*.proto"))
    (out_dir / "olievlek" / "v1").mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={Path(sys.executable).parent / 'protoc-gen-mypy'}",
        f"--mypy_out={out_dir}",
        *[str(p.relative_to(PROTO_DIR)) for p in protos],
    ]
    # Service stubs only for files that declare a service, so no empty *_grpc modules.
    services = [p for p in protos if "\nservice " in p.read_text()]
    grpc_args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy_grpc={Path(sys.executable).parent / 'protoc-gen-mypy_grpc'}",
        f"--mypy_grpc_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_DIR)) for p in services],
    ]
    if protoc.main(args) != 0 or protoc.main(grpc_args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_dir / "olievlek" / "v1").glob("*_pb2*.py*"))


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
