"""Removing runs from an S3 store, and the blobs no remaining run references.

A run is withdrawn from the index first (it is no longer listed), then its files go, then
the blobs of its manifest that no other run's manifest lists. ``prune`` removes what no
run needs: blobs no manifest lists, the files of pushes never completed (no index entry),
multipart uploads never completed — each only once older than ``grace``, so that a push
under way keeps what it has sent so far.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Final

from precip_repro.stores.base import Removal
from precip_repro.stores.s3_bucket import Bucket, Listed
from precip_repro.stores.s3_files import MANIFEST, parse_manifest, run_key
from precip_repro.stores.s3_index import RunIndex

__all__ = ["DEFAULT_GRACE", "prune_store", "remove_run"]

DEFAULT_GRACE: Final = timedelta(days=1)


def _manifests(bucket: Bucket, runs: Iterable[str]) -> set[str]:
    """The blobs the manifests of ``runs`` list (a run without one lists none)."""
    where = bucket.where

    def blobs_of(run: str) -> list[tuple[str, int]]:
        found = bucket.get(run_key(where, run, MANIFEST))
        return (parse_manifest(found[0]) or []) if found is not None else []

    with ThreadPoolExecutor(max_workers=16) as pool:
        return {sha for listed in pool.map(blobs_of, list(runs)) for sha, _ in listed}


def _runs_in(bucket: Bucket) -> dict[str, list[Listed]]:
    """Every run with files in the store, listed or not: its objects."""
    root = run_key(bucket.where, "x").removesuffix("x/")
    found: dict[str, list[Listed]] = {}
    for item in bucket.listing(root):
        run = item.key[len(root) :].split("/", 1)[0]
        found.setdefault(run, []).append(item)
    return found


def _blobs_in(bucket: Bucket) -> list[Listed]:
    return list(bucket.listing(bucket.where.key("objects") + "/"))


def _sha_of(bucket: Bucket, item: Listed) -> str:
    return item.key[len(bucket.where.key("objects")) + 1 :].replace("/", "")


def remove_run(bucket: Bucket, index: RunIndex, run: str) -> Removal:
    """Withdraw ``run``, remove its files and the blobs only it referenced."""
    own = _manifests(bucket, [run])
    index.withdraw(run)
    runs = _runs_in(bucket)
    files = runs.pop(run, [])
    bucket.delete([item.key for item in files])
    kept = _manifests(bucket, runs)
    gone = [item for item in _blobs_in(bucket) if _sha_of(bucket, item) in own - kept]
    bucket.delete([item.key for item in gone])
    return Removal(runs=(run,), blobs=len(gone), bytes=sum(item.size for item in gone))


def prune_store(bucket: Bucket, index: RunIndex, *, grace: timedelta = DEFAULT_GRACE) -> Removal:
    """Remove blobs no run lists, pushes never completed, uploads never completed (each
    older than ``grace``)."""
    before = datetime.now(UTC) - grace
    listed = set(index.ids())
    runs = _runs_in(bucket)
    abandoned = [
        run
        for run, items in runs.items()
        if run not in listed and all(item.modified < before for item in items)
    ]
    for run in abandoned:
        bucket.delete([item.key for item in runs.pop(run)])
    kept = _manifests(bucket, runs)
    gone = [
        item
        for item in _blobs_in(bucket)
        if _sha_of(bucket, item) not in kept and item.modified < before
    ]
    bucket.delete([item.key for item in gone])
    for key, upload in bucket.stale_uploads(bucket.where.key("objects") + "/", before):
        bucket.abort(key, upload)
    return Removal(
        runs=tuple(sorted(abandoned)), blobs=len(gone), bytes=sum(item.size for item in gone)
    )
