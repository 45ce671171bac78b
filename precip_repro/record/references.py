"""How a verifier finds the blobs a run refers to, and checks them while it reads.

A known event type's blob references are its typed fields (by schema; free-form fields
are never searched); in a type this version does not know, whatever is shaped like a
reference. ``records/README.md`` states the same rules.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from precip_repro.exceptions import (
    BlobCorrupted,
)
from precip_repro.record.blobs import BlobStore
from precip_repro.record.canonical import JSON
from precip_repro.record.events import (
    Event,
    payload_of,
)
from precip_repro.record.payloads import (
    BlobRef,
    Payload,
    refs_in,
)

__all__ = ["BlobChecker", "blob_refs", "refs_of"]

_BLOB_KEYS: Final = frozenset({"sha256", "size", "text", "withheld"})


def _as_ref(value: dict[str, Any]) -> BlobRef | None:
    if not (
        "sha256" in value
        and "size" in value
        and value.keys() <= _BLOB_KEYS
        and type(value["sha256"]) is str
        and type(value["size"]) is int
        and type(value.get("text", "")) is str
        and type(value.get("withheld", "")) is str
    ):
        return None
    try:
        return BlobRef(
            sha256=value["sha256"],
            size=value["size"],
            text=value.get("text"),
            withheld=value.get("withheld"),
        )
    except ValueError:
        return None  # shaped like a reference, but its sha256 is not 64 hex digits


def _ref_dicts(data: JSON) -> Iterator[dict[str, Any]]:
    """Every dict in ``data`` shaped like a blob reference."""
    stack: list[Any] = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "sha256" in value and "size" in value and value.keys() <= _BLOB_KEYS:
                yield value
            else:
                stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def blob_refs(event: Event, *, run: str | None = None, withheld: bool = False) -> Iterator[BlobRef]:
    """Every stored blob an event refers to: the typed reference fields of a type this
    version knows; anything shaped like a reference in a type it does not know (a newer
    writer's). With ``withheld``, also the references kept by hash only. Raises
    :class:`RecordCorrupted` when a known type's data does not fit."""
    for ref in refs_of(payload_of(event, run=run), event.data):
        if withheld or ref.withheld is None:
            yield ref  # a withheld blob was never stored: nothing to check


def refs_of(payload: Payload | None, data: JSON) -> Iterable[BlobRef]:
    # A known type's typed reference fields; in a type this version does not know,
    # whatever looks like a reference.
    if payload is not None:
        return refs_in(payload)
    return filter(None, map(_as_ref, _ref_dicts(data)))


class BlobChecker:
    """Hashes referenced blobs on a few threads while the log is still being read."""

    def __init__(self, store: BlobStore, *, workers: int) -> None:
        self._store = store
        self._seen: set[tuple[Any, ...]] = set()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify-blob")
        self._pending: collections.deque[tuple[Future[None], int, str]] = collections.deque()
        self._limit = workers * 4
        self.failures: list[tuple[int, BlobCorrupted, str]] = []
        """(seq, error, prev): the event that refers to a bad blob, and the hash of the
        event before it — the last one intact in every respect."""
        self.checked = 0

    def offer(self, ref: BlobRef, seq: int, prev: str) -> None:
        """Check a reference unless the same one was checked already."""
        if ref.withheld is not None:
            return
        key = (ref.sha256, ref.size, ref.text is not None)
        if key in self._seen:
            return
        self._seen.add(key)
        self._submit(ref, seq, prev)

    def _submit(self, ref: BlobRef, seq: int, prev: str) -> None:
        self.checked += 1
        if ref.text is not None:
            self._check(ref, seq, prev)
            return
        self._pending.append((self._pool.submit(self._store.check, ref), seq, prev))
        while len(self._pending) > self._limit:
            self._collect()

    def _check(self, ref: BlobRef, seq: int, prev: str) -> None:
        try:
            self._store.check(ref)
        except BlobCorrupted as exc:
            self.failures.append((seq, exc, prev))

    def _collect(self) -> None:
        future, seq, prev = self._pending.popleft()
        try:
            future.result()
        except BlobCorrupted as exc:
            self.failures.append((seq, exc, prev))
        except OSError as exc:
            self.failures.append(
                (seq, BlobCorrupted(f"blob could not be read: {exc}", path=exc.filename), prev)
            )

    def finish(self, *, withheld: Iterable[str] = ()) -> tuple[int, BlobCorrupted, str] | None:
        """The first failure, leaving out blobs a later ``blob.withheld`` removed."""
        while self._pending:
            self._collect()
        self._pool.shutdown()
        excused = set(withheld)
        failures = [failure for failure in self.failures if failure[1].blob not in excused]
        return min(failures, key=lambda failure: failure[0]) if failures else None
