"""Pushing a finished run to an S3 store, so that it becomes visible whole or not at all.

Order: the run is verified where it is (its log, checkpoint and signature; every blob it
refers to present, each hashed as it is sent); the blobs its manifest lists that the store lacks
go up (each key is its sha256: a blob already there, another run's, is not sent again;
a large one goes up multipart, in parallel, with SHA-256 checksums, and appears only when
complete); then the run's files and manifest; then, last, its index entry — before that
no reader lists it. A push cut off anywhere leaves blobs and files nobody lists; pushed
again it sends what is missing and ends as a whole one would have. Two people pushing the
same run send the same bytes to the same keys; the entry is written once
(``If-None-Match``).
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import structlog

from precip_repro.exceptions import (
    BlobCorrupted,
    RecordCorrupted,
    RecordIncomplete,
    RunConflict,
    RunLocked,
)
from precip_repro.record.blobs import hash_file
from precip_repro.record.events import Event
from precip_repro.record.journal import is_locked
from precip_repro.record.references import blob_refs
from precip_repro.record.store import EVENTS, OBJECTS, read_checkpoint
from precip_repro.record.summary import summarize
from precip_repro.record.verify import verify
from precip_repro.stores.base import PushResult
from precip_repro.stores.s3_bucket import TRANSFER, Bucket
from precip_repro.stores.s3_files import (
    MANIFEST,
    RUN_FILES,
    blob_key,
    manifest_of,
    render_manifest,
    run_key,
)
from precip_repro.stores.s3_index import IndexEntry, RunIndex

__all__ = ["push_run"]

log = structlog.get_logger(__name__)

_WORKERS: Final = 8
_LARGE_AT_ONCE: Final = 2
_SMALL: Final = 1 << 20
"""A run's files up to this size go up in one PUT; larger ones through the transfer
manager."""


def _finished(run_dir: Path, blobs: list[tuple[str, int]]) -> str:
    """The digest of a finished run whose log, checkpoint and signature are intact and
    whose every referenced blob is among ``blobs``; an error saying why it cannot be
    pushed. The blobs' bytes are hashed as they are sent (:func:`_send_blob`): hashing
    them here as well would read each twice."""
    run = run_dir.name
    if is_locked(run_dir / EVENTS):
        raise RunLocked(
            f"run {run} is still being recorded: it is pushed when it finishes", run=run
        )
    checkpoint = read_checkpoint(run_dir, run=run)
    if checkpoint is None:
        raise RecordIncomplete(
            f"run {run} is not finished (it has no checkpoint): `precip-repro recover {run}` "
            "first, then push it",
            run=run,
        )
    referenced: dict[str, int] = {}
    withheld: set[str] = set()

    def note(event: Event) -> None:
        if event.type == "blob.withheld":
            withheld.add(str(event.data["sha256"]))
        for ref in blob_refs(event, run=run):
            if ref.text is None:
                referenced[ref.sha256] = ref.size

    verdict = verify(run_dir, check_blobs=False, observe=note)
    if verdict.state != "intact":
        raise RecordCorrupted(
            f"run {run} is {verdict.state}, not pushed: {verdict.reason}", run=run, path=run_dir
        )
    held = dict(blobs)
    for sha, size in referenced.items():
        if sha not in withheld and held.get(sha) != size:
            raise BlobCorrupted(
                f"run {run} is corrupt, not pushed: it refers to blob {sha} of {size} bytes, "
                f"which its objects/ {'lacks' if sha not in held else 'holds at another size'}",
                run=run,
                blob=sha,
            )
    return checkpoint.digest


def _send_blob(bucket: Bucket, path: Path, sha: str, large: threading.Semaphore) -> int:
    """Upload one blob unless the store holds it, after checking its bytes hash to its
    name (a damaged copy must never take the name every run shares); the bytes sent."""
    key = blob_key(bucket.where, sha)
    if bucket.exists(key):
        return 0
    size = path.stat().st_size
    with contextlib.ExitStack() as turn:
        if size >= TRANSFER.multipart_threshold:
            # Each goes up in parallel parts already: a few at a time keep the link busy
            # without a hundred parts fighting over it.
            turn.enter_context(large)
        got, got_size = hash_file(path)
        if got != sha:
            raise BlobCorrupted(
                f"blob {sha} of run {path.parent.parent.parent.name} is damaged here, not "
                f"pushed: its {got_size} bytes hash to {got}",
                blob=sha,
                path=path,
            )
        bucket.upload(path, key)
    return size


def push_run(bucket: Bucket, index: RunIndex, run_dir: Path) -> PushResult:
    """Send a finished run (see the module's docstring for the order)."""
    run = run_dir.name
    blobs = manifest_of(run_dir)
    digest = _finished(run_dir, blobs)
    there = index.entry(run)
    if there is not None and there.digest != digest:
        raise RunConflict(
            f"{bucket.where.url} already holds a run {run} with digest {there.digest[:16]}…, "
            f"not this one's {digest[:16]}…: it is not replaced",
            store=bucket.where.url,
            run=run,
        )
    where = bucket.where
    objects = run_dir / OBJECTS
    large = threading.Semaphore(_LARGE_AT_ONCE)
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        sent_bytes = list(
            pool.map(
                lambda item: _send_blob(
                    bucket, objects / item[0][:2] / item[0][2:], item[0], large
                ),
                blobs,
            )
        )
    sent = sum(1 for size in sent_bytes if size)
    if there is not None:  # pushed before: only blobs a prune took were missing
        return PushResult(
            run=run, digest=digest, sent=sent, present=len(blobs) - sent,
            bytes_sent=sum(sent_bytes), already=True,
        )  # fmt: skip
    for name in RUN_FILES:
        path = run_dir / name
        if not path.is_file():
            continue
        if path.stat().st_size > _SMALL:
            bucket.upload(path, run_key(where, run, name))
        else:
            bucket.put(run_key(where, run, name), path.read_bytes())
    bucket.put(run_key(where, run, MANIFEST), render_manifest(blobs))
    entry = index.publish(IndexEntry.of(summarize(run_dir), digest=digest))
    if entry.digest != digest:
        raise RunConflict(
            f"{where.url} got a run {run} with digest {entry.digest[:16]}… from another push "
            "meanwhile: this one is not listed",
            store=where.url,
            run=run,
        )
    log.info("run pushed", run=run, store=where.url, blobs_sent=sent)
    return PushResult(
        run=run, digest=digest, sent=sent, present=len(blobs) - sent, bytes_sent=sum(sent_bytes)
    )
