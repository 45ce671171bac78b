"""A store of runs: a directory holding one self-contained directory per run.

::

    <store>/<run-id>/events.jsonl      the hash-chained log
    <store>/<run-id>/objects/ab/cdef…  blobs, named by the sha256 of their bytes
    <store>/<run-id>/checkpoint        written when the run finishes: id, events, digest

Run ids sort by time and read well: ``20261125T023000Z-hello-world-3f9a``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs

from precip_repro.exceptions import (
    AmbiguousRun,
    RecordCorrupted,
    RunNotFound,
    StoreError,
    UnrecordableValue,
)
from precip_repro.record.canonical import canonical
from precip_repro.record.events import FORMAT_VERSION, READABLE
from precip_repro.record.files import open_regular, read_bounded, write_durably

__all__ = [
    "CHECKPOINT",
    "Checkpoint",
    "EVENTS",
    "OBJECTS",
    "RunStore",
    "default_store_path",
    "new_run_id",
    "read_checkpoint",
    "write_checkpoint",
]

EVENTS: Final = "events.jsonl"
OBJECTS: Final = "objects"
CHECKPOINT: Final = "checkpoint"
MAX_CHECKPOINT: Final = 4096
"""A checkpoint is one short line (about 150 bytes): a larger one is not ours."""

_SLUG_RE: Final = re.compile(r"[a-z0-9]+")
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")


def default_store_path() -> Path:
    """``PRECIP_RECORDS`` if set, else ``./records`` (a directory: see
    :func:`precip_repro.stores.open_store` for ``s3://``)."""
    return Path(os.environ.get("PRECIP_RECORDS") or "records")


def slug(name: str | None) -> str:
    words = _SLUG_RE.findall((name or "").lower())
    return "-".join(words)[:40].strip("-") or "run"


_URL: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")

_ID_STAMP: Final = re.compile(r"\d{8}T\d{6}Z-")


_TS: Final = re.compile(rb'"ts":"([^"]{1,40})"')


def _started_ts(run_dir: Path) -> bytes:
    """The first event's timestamp (microseconds), read from the log's first line; empty
    when it cannot be read. The top-level ``ts`` is the line's last one: keys are sorted
    and only ``type`` and ``v`` follow it."""
    try:
        with open_regular(run_dir / EVENTS, what="event log", run=None) as log:
            first = log.readline(1 << 20)
    except (OSError, RecordCorrupted):
        return b""
    found = _TS.findall(first)
    return found[-1] if found else b""


def _age_key(run_dir: Path) -> tuple[str, bytes, str]:
    # Run ids begin with their start time, to the second; two runs started within the same
    # second are ordered by their first event's microseconds (their ids' random suffixes
    # would make "latest" a coin toss). For any other name the log's last change stands
    # in, so that "latest" never means "a directory whose name sorts after the digits".
    if _ID_STAMP.match(run_dir.name):
        return run_dir.name[:16], _started_ts(run_dir), run_dir.name
    try:
        mtime = (run_dir / EVENTS).stat().st_mtime
    except OSError:
        mtime = 0.0
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(mtime)), b"", run_dir.name


def new_run_id(name: str | None, *, now_ns: int | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime((now_ns or time.time_ns()) // 10**9))
    return f"{stamp}-{slug(name)}-{secrets.token_hex(2)}"


@attrs.frozen(kw_only=True)
class Checkpoint:
    """What a finished run's ``checkpoint`` file says: its id, event count and digest, in
    the run's format version ``v``."""

    run: str
    events: int
    digest: str
    v: int = FORMAT_VERSION


def write_checkpoint(run_dir: Path, checkpoint: Checkpoint) -> None:
    """Write the checkpoint atomically and durably (temp file, fsync, rename, fsync dir)."""
    body = {
        "v": checkpoint.v,
        "run": checkpoint.run,
        "events": checkpoint.events,
        "digest": checkpoint.digest,
    }
    write_durably(run_dir / CHECKPOINT, canonical(body, v=checkpoint.v) + b"\n")


def read_checkpoint(run_dir: Path, *, run: str | None = None) -> Checkpoint | None:
    """The run's checkpoint, None when it has none; :class:`RecordCorrupted` when unreadable."""
    path = run_dir / CHECKPOINT
    raw = read_bounded(path, limit=MAX_CHECKPOINT, what="checkpoint", run=run)
    if raw is None:
        return None

    def bad(reason: str) -> RecordCorrupted:
        return RecordCorrupted(f"checkpoint {path}: {reason}", run=run, path=path)

    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise bad(f"is not valid JSON ({exc})") from None
    if (
        type(obj) is not dict
        or set(obj) != {"v", "run", "events", "digest"}
        or type(obj["v"]) is not int
        or obj["v"] not in READABLE
        or type(obj["run"]) is not str
        or type(obj["events"]) is not int
        or type(obj["digest"]) is not str
        or not _HEX64_RE.fullmatch(obj["digest"])
    ):
        raise bad("does not hold v, run, events and digest as the record format writes them")
    try:
        again = canonical(obj, v=obj["v"]) + b"\n"
    except UnrecordableValue as exc:
        raise bad(f"is not in canonical form ({exc})") from None
    if again != raw:
        raise bad("is not in canonical form, one line ending in a newline (it was edited)")
    return Checkpoint(run=obj["run"], events=obj["events"], digest=obj["digest"], v=obj["v"])


class RunStore:
    """A directory of runs."""

    def __init__(self, root: Path | str | None = None) -> None:
        named = os.environ.get("PRECIP_RECORDS") or "records" if root is None else root
        if isinstance(named, str) and _URL.match(named):
            # Path() would make s3://bucket/prefix a directory named "s3:".
            raise StoreError(
                f"{named} is not a directory: a store named by URL is opened with "
                "precip_repro.open_store (the CLIs and records= do so)",
                store=named,
            )
        self.root = Path(named)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def create_run_dir(self, name: str | None) -> tuple[str, Path]:
        """Make a fresh, empty run directory and return its id and path."""
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            run_id = new_run_id(name)
            path = self.root / run_id
            try:
                path.mkdir()
            except FileExistsError:
                continue
            (path / OBJECTS).mkdir()
            return run_id, path
        raise FileExistsError(f"could not find a free run id in {self.root}")  # pragma: no cover

    def run_dirs(self) -> Iterator[Path]:
        """Every run directory in the store (a directory holding ``events.jsonl``), oldest
        first: by id, which starts with the time the run started; a directory named
        otherwise (a run copied in under another name) by its log's modification time."""
        if not self.root.is_dir():
            if self.root.exists():
                raise RunNotFound(
                    f"the store {self.root} is not a directory of runs (it is a file): give "
                    "the directory runs are recorded in (--records DIR, $PRECIP_RECORDS)",
                    path=self.root,
                )
            return
        found = [p for p in self.root.iterdir() if p.is_dir() and (p / EVENTS).is_file()]
        yield from sorted(found, key=_age_key)

    def resolve(self, spec: str) -> Path:
        """Find a run: an existing path, else an exact id, else ``latest``, else a unique prefix.

        Raises :class:`RunNotFound` or :class:`AmbiguousRun` (listing the candidates).
        """
        as_path = Path(spec)
        if as_path.exists():
            if as_path.is_file() and as_path.name == EVENTS:
                return as_path.parent
            if (as_path / EVENTS).is_file():
                return as_path
            if as_path.is_dir() and spec not in ("", "."):
                raise RunNotFound(
                    f"{spec} is a directory but not a run (it holds no {EVENTS}); "
                    "give a run directory, a run id, a unique prefix or 'latest'",
                    run=spec,
                    path=as_path,
                )
        plain = spec and "/" not in spec and spec not in (".", "..", "latest")
        if plain and (self.root / spec / EVENTS).is_file():
            return self.root / spec  # an exact id: no need to list (and order) every run
        runs = [path.name for path in self.run_dirs()]
        if spec == "latest":
            if not runs:
                raise RunNotFound(f"the store {self.root} holds no runs yet", run=spec)
            return self.root / runs[-1]
        matches = [run for run in runs if run.startswith(spec)] if spec else []
        if len(matches) == 1:
            return self.root / matches[0]
        if matches:
            shown = ", ".join(matches[:10]) + (" …" if len(matches) > 10 else "")
            raise AmbiguousRun(
                f"{spec!r} matches {len(matches)} runs in {self.root}: {shown}; "
                "give more of the id",
                candidates=matches,
                run=spec,
            )
        hint = f"; latest is {runs[-1]}" if runs else f"; the store {self.root} holds no runs"
        raise RunNotFound(
            f"no run {spec!r} in {self.root} (not a path, an id, 'latest' or a prefix){hint}",
            run=spec,
        )
