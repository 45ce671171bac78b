"""What an S3 store holds of one run, and how a run's files are named there.

``runs/<id>/events.jsonl``, ``checkpoint``, ``checkpoint.sig`` (when signed) as the run
has them; ``runs/<id>/blobs``, the run's manifest: the blobs its ``objects/`` held when
it was pushed, one ``<sha256> <size>`` line each, sorted. Blobs themselves are shared by
the whole store, ``objects/ab/cdef…``: a blob another run stored is not the run's unless
its manifest lists it (a withheld blob stays withheld).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from precip_repro.record.blobs import BlobStore
from precip_repro.record.signature import SIGNATURE
from precip_repro.record.store import CHECKPOINT, EVENTS, OBJECTS
from precip_repro.stores.location import S3Location

__all__ = [
    "MANIFEST",
    "RUN_FILES",
    "blob_key",
    "manifest_of",
    "parse_manifest",
    "render_manifest",
    "run_key",
]

MANIFEST: Final = "blobs"
RUN_FILES: Final = (EVENTS, CHECKPOINT, SIGNATURE)
"""A run's own files, in the order a push sends them (the blobs before all of them, the
index entry after)."""
_LINE: Final = re.compile(r"([0-9a-f]{64}) (\d+)")


def blob_key(where: S3Location, sha256: str) -> str:
    return where.key(OBJECTS, sha256[:2], sha256[2:])


def run_key(where: S3Location, run: str, name: str = "") -> str:
    return where.key("runs", run, name) if name else where.key("runs", run) + "/"


def manifest_of(run_dir: Path) -> list[tuple[str, int]]:
    """The blobs a run directory holds: sha256 and size, sorted."""
    return [(sha, path.stat().st_size) for sha, path in BlobStore(run_dir / OBJECTS).objects()]


def render_manifest(blobs: list[tuple[str, int]]) -> bytes:
    return b"".join(f"{sha} {size}\n".encode() for sha, size in sorted(blobs))


def parse_manifest(raw: bytes) -> list[tuple[str, int]] | None:
    """The manifest's blobs; None when it is not one."""
    found = []
    for line in raw.decode("ascii", "replace").splitlines():
        match = _LINE.fullmatch(line)
        if match is None:
            return None
        found.append((match.group(1), int(match.group(2))))
    return found
