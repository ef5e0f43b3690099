"""Scanning files for a canary national register number in every form it could leak in.

Forms: the 11 digits, the formatted form (85.07.30-033.28) and a few other
separators, and the integer's binary encodings: big- and little-endian at
8 bytes and at its minimal width, SQLite's 6-byte big-endian record
integer, and the protobuf varint.
"""

from __future__ import annotations

from pathlib import Path


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def forms(digits: str) -> dict[str, bytes]:
    assert len(digits) == 11 and digits.isdigit()
    n = int(digits)
    minimal = (n.bit_length() + 7) // 8
    yy, mm, dd, serial, check = digits[:2], digits[2:4], digits[4:6], digits[6:9], digits[9:]
    return {
        "digits": digits.encode(),
        "formatted": f"{yy}.{mm}.{dd}-{serial}.{check}".encode(),
        "dashed": f"{yy}{mm}{dd}-{serial}-{check}".encode(),
        "spaced": f"{yy}{mm}{dd} {serial} {check}".encode(),
        "utf16": digits.encode("utf-16-le"),
        "be8": n.to_bytes(8, "big"),
        "le8": n.to_bytes(8, "little"),
        "be-min": n.to_bytes(minimal, "big"),
        "le-min": n.to_bytes(minimal, "little"),
        "sqlite-be6": n.to_bytes(6, "big"),
        "varint": _varint(n),
    }


def scan(root: Path, needles: dict[str, bytes], exclude: set[Path] = frozenset()) -> list[tuple[Path, str]]:  # type: ignore[assignment]
    """Every (file, form) where a form occurs, in every file below root except the excluded ones."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if path in exclude:
            continue
        data = path.read_bytes()
        hits.extend((path, name) for name, needle in needles.items() if needle in data)
    return hits
