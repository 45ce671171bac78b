"""Fetching a run of an S3 store into the local cache: its files, then the blobs a reader
needs, each checked against the hash it is named for before it is put in place."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from precip_repro.exceptions import BlobCorrupted, RecordCorrupted, RunNotFound
from precip_repro.record.blobs import BlobStore
from precip_repro.record.files import fsync_dir
from precip_repro.record.signature import SIGNATURE
from precip_repro.record.store import EVENTS, OBJECTS
from precip_repro.stores.s3_bucket import Bucket
from precip_repro.stores.s3_files import (
    MANIFEST,
    RUN_FILES,
    blob_key,
    parse_manifest,
    run_key,
)

__all__ = ["fetch_blobs", "fetch_run"]

_WORKERS: Final = 8


def fetch_run(bucket: Bucket, run: str, cache: Path) -> Path:
    """The run's files (no blob) in ``cache/<run>``, fetched unless there."""
    where = bucket.where
    target = cache / run
    if (target / MANIFEST).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".pulling-{run}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        for name in (*RUN_FILES, MANIFEST):
            try:
                bucket.download(run_key(where, run, name), staging / name)
            except KeyError:
                if name == SIGNATURE:
                    continue  # an unsigned run
                raise RunNotFound(
                    f"run {run} is listed in {where.url} but its {name} is missing there: "
                    f"`precip-repro push {run}` from the machine that recorded it sends it again",
                    run=run,
                ) from None
        (staging / OBJECTS).mkdir()
        for path in staging.iterdir():
            if path.is_file():
                with path.open("rb") as f:
                    os.fsync(f.fileno())
        fsync_dir(staging)
        try:
            staging.rename(target)
        except OSError:  # another reader pulled it meanwhile
            if not (target / EVENTS).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _fetch_blob(bucket: Bucket, run: str, blobs: BlobStore, sha: str, size: int) -> None:
    key = blob_key(bucket.where, sha)
    tmpdir = blobs.root / "tmp"
    tmpdir.mkdir(exist_ok=True)
    tmp = tmpdir / f"pull-{secrets.token_hex(8)}"
    try:
        try:
            bucket.download(key, tmp)
        except KeyError:
            raise BlobCorrupted(
                f"corrupt: blob {sha} of run {run} is missing from the store: no object "
                f"{bucket.where.key_url(key)}; `precip-repro push {run}` from a machine "
                "that has the run sends it again",
                run=run,
                blob=sha,
            ) from None
        with tmp.open("rb") as f:
            got = hashlib.file_digest(f, "sha256").hexdigest()
            got_size = f.tell()
        if got != sha or got_size != size:
            raise BlobCorrupted(
                f"corrupt: the object {bucket.where.key_url(key)} is damaged: its "
                f"{got_size} bytes hash to {got}, not to the {size} bytes of blob {sha} it "
                f"is named for (run {run}); push an intact copy of a run that holds it",
                run=run,
                blob=sha,
            )
        final = blobs.path_for(sha)
        final.parent.mkdir(exist_ok=True)
        tmp.chmod(0o444)
        tmp.replace(final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def fetch_blobs(bucket: Bucket, run_dir: Path) -> int:
    """Every blob the run's manifest lists that its cached copy lacks; how many were
    fetched. :class:`BlobCorrupted` names an object that does not hash to its name."""
    run = run_dir.name
    raw = (run_dir / MANIFEST).read_bytes()
    manifest = parse_manifest(raw)
    if manifest is None:
        raise RecordCorrupted(
            f"corrupt: the manifest {bucket.where.key_url(run_key(bucket.where, run, MANIFEST))}"
            " is not a list of blobs",
            run=run,
            path=run_dir / MANIFEST,
        )
    blobs = BlobStore(run_dir / OBJECTS, run=run)
    wanted = [(sha, size) for sha, size in manifest if not blobs.has(sha)]
    if not wanted:
        return 0
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for done in [pool.submit(_fetch_blob, bucket, run, blobs, s, n) for s, n in wanted]:
            done.result()
    with contextlib.suppress(OSError):
        (blobs.root / "tmp").rmdir()
    return len(wanted)
