"""An S3 store's index: what ``ls`` shows of every run, without reading any run.

Two parts (records/README.md, "An S3 store"):

* ``index/<run-id>.json``, one per run, written last when the run is pushed and first
  removed when it is removed: its presence is what makes a run visible. Written with
  ``If-None-Match: *``: a run's entry is never overwritten.
* ``index.json``, every entry in one object: a cache of the above, so that ``ls`` of a
  thousand runs is one listing and one GET. Replaced with ``If-Match`` (the ETag read),
  retried when another push won.

The listing of ``index/`` is the truth; ``index.json`` only saves requests. A reader takes
the entries of ``index.json`` whose key is listed, fetches the listed ones it lacks, and
writes the merged whole back. So where a store ignores conditional writes (and two pushes
at once lose one's update of ``index.json``), ``ls`` is still right: it fetches the lost
entry and repairs the cache.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import attrs
import cattrs

from precip_repro.record.summary import RunSummary
from precip_repro.stores.s3_bucket import Bucket, PreconditionFailed

__all__ = ["INDEX_VERSION", "IndexEntry", "RunIndex"]

INDEX_VERSION: Final = 1
_RETRIES: Final = 10
_converter = cattrs.Converter(forbid_extra_keys=False)


@attrs.frozen(kw_only=True)
class IndexEntry:
    """One run as ``ls`` lists it: :class:`RunSummary` without the local path."""

    run: str
    status: str
    events: int | None
    duration_ns: int | None
    digest: str
    started_ns: int | None = None
    script: str | None = None
    replay_of: str | None = None
    verdict: str | None = None
    signer: str | None = None

    @classmethod
    def of(cls, summary: RunSummary, *, digest: str) -> IndexEntry:
        fields = {f.name for f in attrs.fields(cls)} - {"digest"}
        return cls(digest=digest, **{name: getattr(summary, name) for name in fields})

    def summary(self, path: Path) -> RunSummary:
        return RunSummary(path=path, pushed=True, **attrs.asdict(self))

    def to_json(self) -> bytes:
        return json.dumps(_converter.unstructure(self), sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> IndexEntry | None:
        """None for bytes that are not an entry (written by a newer version, or damaged):
        the run is then listed from its entry alone, or not at all."""
        try:
            return _converter.structure(json.loads(raw), cls)
        except (ValueError, TypeError, cattrs.BaseValidationError):
            return None


class RunIndex:
    """The index of one S3 store."""

    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket
        self._dir = bucket.where.key("index") + "/"
        self._all = bucket.where.key("index.json")

    def entry_key(self, run: str) -> str:
        return f"{self._dir}{run}.json"

    def ids(self) -> list[str]:
        """The runs the store holds whole (one listing per thousand runs)."""
        return [
            item.key[len(self._dir) : -len(".json")]
            for item in self._bucket.listing(self._dir)
            if item.key.endswith(".json") and "/" not in item.key[len(self._dir) :]
        ]

    def entry(self, run: str) -> IndexEntry | None:
        found = self._bucket.get(self.entry_key(run))
        return IndexEntry.from_json(found[0]) if found is not None else None

    def publish(self, entry: IndexEntry) -> IndexEntry:
        """Make a run visible; the entry the store holds (an earlier push's, if any)."""
        try:
            self._bucket.put(self.entry_key(entry.run), entry.to_json(), if_none_match=True)
        except PreconditionFailed:
            there = self.entry(entry.run)
            return there if there is not None else entry
        self.update(add=[entry])
        return entry

    def withdraw(self, run: str) -> None:
        """Make a run invisible (its entry first, then the cache's)."""
        self._bucket.delete([self.entry_key(run)])
        self.update(remove=[run])

    def _read_all(self) -> tuple[dict[str, IndexEntry], str | None]:
        found = self._bucket.get(self._all)
        if found is None:
            return {}, None
        raw, etag = found
        try:
            document = json.loads(raw)
            runs = document["runs"] if document.get("version") == INDEX_VERSION else []
        except (ValueError, TypeError, KeyError, AttributeError):
            return {}, etag  # damaged: rebuilt from the entries
        entries: dict[str, IndexEntry] = {}
        for item in runs:
            try:
                entry = _converter.structure(item, IndexEntry)
            except (TypeError, ValueError, cattrs.BaseValidationError):
                continue
            entries[entry.run] = entry
        return entries, etag

    def _write_all(self, entries: dict[str, IndexEntry], etag: str | None) -> None:
        body: dict[str, Any] = {
            "version": INDEX_VERSION,
            "runs": [_converter.unstructure(entries[run]) for run in sorted(entries)],
        }
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        if etag is None:
            self._bucket.put(self._all, raw, if_none_match=True)
        else:
            self._bucket.put(self._all, raw, if_match=etag)

    def update(self, *, add: Iterable[IndexEntry] = (), remove: Iterable[str] = ()) -> None:
        """Add and remove entries of ``index.json`` (compare-and-swap, retried). Giving up
        is harmless: readers fetch what it lacks."""
        added = {entry.run: entry for entry in add}
        removed = set(remove)
        for attempt in range(_RETRIES):
            if attempt:  # another push won: apart, the next tries do not collide again
                time.sleep(random.uniform(0, 0.02 * attempt))
            entries, etag = self._read_all()
            entries.update(added)
            for run in removed:
                entries.pop(run, None)
            try:
                self._write_all(entries, etag)
            except PreconditionFailed:
                continue
            return

    def entries(self) -> list[IndexEntry]:
        """Every visible run's entry: one listing, one GET, and a GET for each entry the
        cache lacks (then the cache is repaired)."""
        listed = set(self.ids())
        cached, etag = self._read_all()
        entries = {run: entry for run, entry in cached.items() if run in listed}
        missing = sorted(listed - entries.keys())
        if missing:
            with ThreadPoolExecutor(max_workers=16) as pool:
                for run, entry in zip(missing, pool.map(self.entry, missing), strict=True):
                    if entry is not None:
                        entries[run] = entry
        if missing or len(entries) != len(cached):
            # Another writer may get there first: the next reader merges again.
            with contextlib.suppress(PreconditionFailed):
                self._write_all(entries, etag)
        return list(entries.values())
