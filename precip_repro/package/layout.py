"""The files of a package and where they come from: one list of members, each with its
name in the package, its bytes (or the file holding them), sha256 and size."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Final

import attrs

from precip_repro.record.blobs import BlobStore, hash_file
from precip_repro.record.signature import SIGNATURE
from precip_repro.record.store import CHECKPOINT, EVENTS, OBJECTS

__all__ = [
    "ATTESTATION",
    "EXPERIMENT",
    "METADATA",
    "REPORT",
    "RUN",
    "Member",
    "run_members",
    "safe_name",
]

METADATA: Final = "ro-crate-metadata.json"
ATTESTATION: Final = "attestation.intoto.jsonl"
REPORT: Final = "report.html"
RUN: Final = "run"
"""The run's own directory, as the store holds it."""
EXPERIMENT: Final = "experiment"
"""The script and its modules, readable by name."""


@attrs.frozen(kw_only=True)
class Member:
    """A file of a package: ``data`` in memory, or ``source`` on disk (read when written)."""

    name: str
    sha256: str
    size: int
    data: bytes | None = attrs.field(default=None, repr=False)
    source: Path | None = None

    @classmethod
    def of_bytes(cls, name: str, data: bytes) -> Member:
        return cls(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data), data=data)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.source is not None
        return self.source.read_bytes()

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        assert self.source is not None
        with self.source.open("rb") as f:
            while chunk := f.read(size):
                yield chunk


def run_members(run_dir: Path, *, prefix: str = f"{RUN}/") -> list[Member]:
    """The files of a verified run, named ``prefix`` + their path in the run: its log,
    checkpoint and signature (hashed here) and its blobs (named by their sha256, which
    ``verify`` checked: not hashed again)."""
    members = []
    for name in (EVENTS, CHECKPOINT, SIGNATURE):
        path = run_dir / name
        sha, size = hash_file(path)
        members.append(Member(name=f"{prefix}{name}", sha256=sha, size=size, source=path))
    for sha256, blob in BlobStore(run_dir / OBJECTS).objects():
        name = f"{prefix}{OBJECTS}/{sha256[:2]}/{sha256[2:]}"
        members.append(Member(name=name, sha256=sha256, size=blob.stat().st_size, source=blob))
    return members


def safe_name(name: str) -> bool:
    """Whether ``name`` is a plain relative path inside a package (no ``..``, no absolute
    path, no empty part): the only names an import writes."""
    path = PurePosixPath(name)
    return (
        bool(name)
        and not path.is_absolute()
        and "\\" not in name
        and all(part not in ("", ".", "..") for part in name.split("/"))
    )
