"""The small interface every store of runs implements, as the clouds do theirs.

A store keeps finished runs for readers (``ls``, ``show``, ``verify``, ``diff``, ``report``,
``precip-replay``) and gives the recorder a local directory to write a run in: the store
itself when it is a directory, a local cache when the runs live elsewhere (S3). What a
store can do beyond that it declares in :attr:`Store.capabilities`; callers ask
``StoreCapability.X in store.capabilities`` rather than probing for methods.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import attrs

from precip_repro.record.store import RunStore
from precip_repro.record.summary import RunSummary

__all__ = ["PushResult", "Removal", "Store", "StoreCapability"]


class StoreCapability(enum.Enum):
    """What a store can do beyond list, find, record into and remove runs."""

    SHARED = "shared"
    """Runs are recorded into a local cache and pushed to a store others read: ``push``
    and ``pull`` move runs, ``ls`` tells runs not pushed yet."""


@attrs.frozen(kw_only=True)
class PushResult:
    """What a push did: the run, the blobs it sent and the ones the store already held."""

    run: str
    digest: str
    sent: int
    """Blobs uploaded."""
    present: int
    """Blobs the store already held (another run's, or an earlier push's)."""
    bytes_sent: int
    already: bool = False
    """The run was in the store already, with the same digest: nothing was sent."""


@attrs.frozen(kw_only=True)
class Removal:
    """What ``rm`` or ``prune`` removed."""

    runs: tuple[str, ...]
    blobs: int
    bytes: int


class Store(Protocol):
    """A store of runs."""

    @property
    def capabilities(self) -> frozenset[StoreCapability]: ...

    @property
    def location(self) -> str:
        """Where the runs are, as the user names it: a directory, or ``s3://bucket/prefix``."""
        ...

    @property
    def root(self) -> Path:
        """The local directory of runs (:attr:`local`'s root)."""
        ...

    @property
    def local(self) -> RunStore:
        """The directory runs are recorded in and read from: the store, or its cache."""
        ...

    def summaries(self) -> list[RunSummary]:
        """Every run, oldest first, as ``ls`` shows it; no blob is read."""
        ...

    def run_dirs(self) -> Iterator[Path]:
        """The runs at hand on this machine, oldest first (gc reads their logs)."""
        ...

    def resolve(self, spec: str, *, blobs: bool = True) -> Path:
        """The local directory of the run ``spec`` names (a path, an id, ``latest`` or a
        unique prefix), with its blobs when ``blobs`` (fetched and checked where they are
        elsewhere)."""
        ...

    def remove(self, spec: str) -> Removal:
        """Remove a finished run, and the blobs no other run references."""
        ...

    def prune(self, *, grace: timedelta | None = None) -> Removal:
        """Remove what no run needs: blobs no run references, pushes never completed (of
        a shared store: only what is older than ``grace``, so that a push under way keeps
        what it sent; default a day)."""
        ...

    def push(self, run_dir: Path) -> PushResult:
        """Send a finished run to the store (:attr:`StoreCapability.SHARED` only)."""
        ...

    def pull(self, spec: str) -> Path:
        """Fetch a run, blobs included, into the local cache (:attr:`StoreCapability.SHARED`
        only)."""
        ...
