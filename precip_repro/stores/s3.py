"""A store of runs in S3 (or any S3-compatible store), with a local cache.

Runs are recorded in the cache (``events.jsonl`` written and fsynced locally, as in a
directory store) and pushed when they finish; readers fetch what they need into the cache,
checked: ``ls`` reads the index alone, ``show`` a run's files, ``verify``, ``diff``,
``report`` and ``precip-replay`` its blobs too. The layout is records/README.md's "An S3
store".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import attrs
import structlog

from precip_repro.exceptions import AmbiguousRun, RunNotFound, StoreUnreachable
from precip_repro.record.store import EVENTS, RunStore
from precip_repro.record.summary import RunSummary, summarize
from precip_repro.stores.base import PushResult, Removal, StoreCapability
from precip_repro.stores.local import remove_run_dir
from precip_repro.stores.location import S3Location
from precip_repro.stores.s3_bucket import Bucket
from precip_repro.stores.s3_files import MANIFEST
from precip_repro.stores.s3_index import RunIndex
from precip_repro.stores.s3_pull import fetch_blobs, fetch_run
from precip_repro.stores.s3_push import push_run
from precip_repro.stores.s3_removal import DEFAULT_GRACE, prune_store, remove_run

__all__ = ["S3Store"]

log = structlog.get_logger(__name__)


class S3Store:
    """``s3://bucket/prefix``, read and written through boto3, cached locally."""

    capabilities = frozenset({StoreCapability.SHARED})

    def __init__(self, url: str, *, cache: Path | None = None) -> None:
        self.where = S3Location.parse(url)
        self.bucket = Bucket(self.where)
        self.index = RunIndex(self.bucket)
        self._cache = RunStore(cache if cache is not None else self.where.cache_dir(
            self.bucket.endpoint if self._endpoint_set() else None
        ))  # fmt: skip

    @staticmethod
    def _endpoint_set() -> bool:
        return bool(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))

    def __repr__(self) -> str:
        return f"S3Store({self.where.url!r})"

    @property
    def location(self) -> str:
        return self.where.url

    @property
    def local(self) -> RunStore:
        return self._cache

    @property
    def root(self) -> Path:
        return self._cache.root

    @property
    def _pushed_dir(self) -> Path:
        return self._cache.root.parent / "pushed"

    def pushed_locally(self, run: str) -> bool:
        """Whether this machine knows ``run`` to be in the store (pushed or pulled)."""
        return (self._pushed_dir / run).is_file()

    def _mark_pushed(self, run: str, digest: str) -> None:
        self._pushed_dir.mkdir(parents=True, exist_ok=True)
        (self._pushed_dir / run).write_text(f"{self.where.url} {digest}\n")

    def _cached(self) -> dict[str, Path]:
        return {path.name: path for path in self._cache.run_dirs()}

    # -- reading --------------------------------------------------------------------------

    def summaries(self) -> list[RunSummary]:
        """The store's runs from its index, and the runs recorded here and not in it
        (``pushed`` False). Offline: the runs this machine has, from their files."""
        cached = self._cached()
        online = True
        try:
            entries = self.index.entries()
        except StoreUnreachable as exc:
            if not exc.offline:
                raise
            log.warning("the store cannot be reached: listing this machine's runs only",
                        store=self.where.url, error=str(exc))  # fmt: skip
            entries, online = [], False
        rows = {e.run: e.summary(self._cache.root / e.run) for e in entries}
        for run, path in cached.items():
            if run in rows:
                continue
            pulled = (path / MANIFEST).is_file()
            if online and pulled:
                continue  # a copy of a run since removed from the store
            row = summarize(path)
            if not pulled:  # recorded here
                row = attrs.evolve(row, pushed=not online and self.pushed_locally(run))
            rows[run] = row
        return [rows[run] for run in sorted(rows, key=_order(rows))]

    def run_dirs(self) -> Iterator[Path]:
        return self._cache.run_dirs()

    def _ids(self) -> list[str]:
        """Every run id: the store's and the cache's, oldest first."""
        found = set(self.index.ids()) | set(self._cached())
        return sorted(found, key=lambda run: (run[:16], run))

    def resolve(self, spec: str, *, blobs: bool = True) -> Path:
        as_path = Path(spec)
        if spec and as_path.exists() and ("/" in spec or spec in (".", "..")):
            return self._cache.resolve(spec)  # a run directory given by its path
        plain = spec and "/" not in spec and spec not in (".", "..", "latest")
        here = self._cache.root / spec
        if plain and (here / EVENTS).is_file():
            run = spec
        else:
            runs = self._ids()
            if spec == "latest":
                if not runs:
                    raise RunNotFound(f"the store {self.where.url} holds no runs yet", run=spec)
                run = runs[-1]
            else:
                matches = [run for run in runs if run.startswith(spec)] if spec else []
                if spec in runs:
                    matches = [spec]
                if len(matches) > 1:
                    shown = ", ".join(matches[:10]) + (" …" if len(matches) > 10 else "")
                    raise AmbiguousRun(
                        f"{spec!r} matches {len(matches)} runs in {self.where.url}: {shown}; "
                        "give more of the id",
                        candidates=matches,
                        run=spec,
                    )
                if not matches:
                    hint = f"; latest is {runs[-1]}" if runs else "; it holds no runs"
                    raise RunNotFound(
                        f"no run {spec!r} in {self.where.url} (not a path, an id, 'latest' or "
                        f"a prefix){hint}",
                        run=spec,
                    )
                run = matches[0]
        path = self._cache.root / run
        if not (path / EVENTS).is_file():
            path = fetch_run(self.bucket, run, self._cache.root)
            self._mark_pushed(run, "")
        if blobs and (path / MANIFEST).is_file():
            fetch_blobs(self.bucket, path)
        return path

    def pull(self, spec: str) -> Path:
        return self.resolve(spec, blobs=True)

    # -- writing --------------------------------------------------------------------------

    def push(self, run_dir: Path) -> PushResult:
        result = push_run(self.bucket, self.index, run_dir)
        self._mark_pushed(result.run, result.digest)
        return result

    def remove(self, spec: str) -> Removal:
        run_dir = self.resolve(spec, blobs=False)
        run = run_dir.name
        if run in set(self.index.ids()):
            removal = remove_run(self.bucket, self.index, run)
        else:
            removal = Removal(runs=(run,), blobs=0, bytes=0)
        if run_dir.parent == self._cache.root:
            remove_run_dir(run_dir)
        (self._pushed_dir / run).unlink(missing_ok=True)
        return removal

    def prune(self, *, grace: timedelta | None = None) -> Removal:
        return prune_store(self.bucket, self.index, grace=DEFAULT_GRACE if grace is None else grace)


def _order(rows: dict[str, RunSummary]) -> Callable[[str], tuple[str, int, str]]:
    """Oldest first: by the id's time, then the first event's (runs of one second)."""

    def key(run: str) -> tuple[str, int, str]:
        return run[:16], rows[run].started_ns or 0, run

    return key
