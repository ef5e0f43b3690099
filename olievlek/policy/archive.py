"""A signed bundle as files on the wire (``BundleArchive``): what a broker serves and a node fetches to re-check
a decision under the bundle its leaf names. Unpacking accepts only the files a bundle has; the node then
verifies the signatures with its own roots (``verify_bundle``) - an archive is never trusted for itself."""

from __future__ import annotations

import re
from pathlib import Path

from olievlek.errors import ConfigError
from olievlek.v1 import broker_pb2

from .loader import SIGNATURES, bundle_files

_ALLOWED = re.compile(r"^(bundle|organisations|groups|rules)\.yaml$|^tests/[a-z0-9_.-]+\.yaml$|^signatures\.json$")


def archive_of(directory: Path) -> broker_pb2.BundleArchive:
    files = [*bundle_files(directory), directory / SIGNATURES]
    return broker_pb2.BundleArchive(files=[
        broker_pb2.BundleFile(path=f.relative_to(directory).as_posix().encode(), content=f.read_bytes())
        for f in files if f.exists()])


def unpack(archive: broker_pb2.BundleArchive, into: Path) -> Path:
    """Write the archive's files into ``into`` (a new folder); returns it.

    Raises:
        ConfigError: a file a bundle does not have (a path that could escape the folder, say).
    """
    into.mkdir(parents=True)
    for f in archive.files:
        try:
            path = f.path.decode()
        except UnicodeDecodeError:
            raise ConfigError("a bundle archive names a file that is not UTF-8") from None
        if not _ALLOWED.match(path):
            raise ConfigError(f"a bundle archive holds {path!r}, which is not a bundle file")
        target = into / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.content)
    return into
