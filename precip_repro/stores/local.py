"""The store that is a directory: each run a self-contained directory in it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from precip_repro.exceptions import RunLocked, StoreError
from precip_repro.record.journal import is_locked
from precip_repro.record.store import EVENTS, RunStore
from precip_repro.record.summary import RunSummary, summarize
from precip_repro.stores.base import PushResult, Removal, StoreCapability

__all__ = ["LocalStore", "remove_run_dir", "size_of"]


def size_of(path: Path) -> tuple[int, int]:
    """The files under ``path`` and their bytes."""
    files = sizes = 0
    for item in path.rglob("*"):
        if item.is_file() and not item.is_symlink():
            files += 1
            sizes += item.stat().st_size
    return files, sizes


def remove_run_dir(run_dir: Path) -> None:
    """Remove a run's directory, never one still being recorded."""
    if is_locked(run_dir / EVENTS):
        raise RunLocked(
            f"run {run_dir.name} is still being recorded (its log is locked): it is not removed",
            run=run_dir.name,
            path=run_dir,
        )
    for item in run_dir.rglob("*"):  # blobs are read-only, as is their directory
        if item.is_dir() and not item.is_symlink():
            item.chmod(0o700)
    shutil.rmtree(run_dir)


class LocalStore:
    """A directory of runs (:class:`~precip_repro.record.store.RunStore`) as a :class:`Store`."""

    capabilities: frozenset[StoreCapability] = frozenset()

    def __init__(self, root: RunStore | Path | str | None = None) -> None:
        self._runs = root if isinstance(root, RunStore) else RunStore(root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self._runs.root)!r})"

    @property
    def location(self) -> str:
        return str(self._runs.root)

    @property
    def local(self) -> RunStore:
        return self._runs

    @property
    def root(self) -> Path:
        return self._runs.root

    def summaries(self) -> list[RunSummary]:
        return [summarize(path) for path in self._runs.run_dirs()]

    def run_dirs(self) -> Iterator[Path]:
        return self._runs.run_dirs()

    def resolve(self, spec: str, *, blobs: bool = True) -> Path:
        return self._runs.resolve(spec)

    def remove(self, spec: str) -> Removal:
        run_dir = self._runs.resolve(spec)
        blobs, size = size_of(run_dir / "objects")
        remove_run_dir(run_dir)
        return Removal(runs=(run_dir.name,), blobs=blobs, bytes=size)

    def prune(self, *, grace: timedelta | None = None) -> Removal:
        # Each run keeps its own blobs: removing a run removed them all.
        return Removal(runs=(), blobs=0, bytes=0)

    def push(self, run_dir: Path) -> PushResult:
        raise StoreError(
            f"the store {self.location} is a directory: runs are pushed to a shared store "
            "(push RUN --to s3://BUCKET/PREFIX, or --records s3://…)",
            path=self._runs.root,
        )

    def pull(self, spec: str) -> Path:
        raise StoreError(
            f"the store {self.location} is a directory: runs are pulled from a shared store "
            "(--records s3://BUCKET/PREFIX)",
            path=self._runs.root,
        )
