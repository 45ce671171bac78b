"""Files between this machine and instances: ``put`` and ``get``, each file's bytes kept as
a blob (hashed and scanned for secrets while they move), a file sent to several instances
stored once."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Final

from precip_repro import progress as _progress
from precip_repro.exceptions import LocalFileMissing, TransferFailed
from precip_repro.experiment.fanout import fan_out
from precip_repro.experiment.fleet import Fleet
from precip_repro.experiment.instance import Instance
from precip_repro.experiment.reach import Reacher
from precip_repro.experiment.recording import Call, Calls
from precip_repro.logs import get_logger
from precip_repro.record.blobs import CHUNK
from precip_repro.record.events import BlobRef, FileGot, FilePut
from precip_repro.ssh import Connection, Sink, special_kind

__all__ = ["CHANGED_WHILE_SENT", "KeyedLocks", "Transfers"]

log = get_logger(__name__)

CHANGED_WHILE_SENT: Final = "the file changed while it was sent: these bytes were not kept"
"""Why a file put to several instances is kept by hash only for one of them: it is stored
once, and what reached that instance was not what was stored."""


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


class KeyedLocks:
    """A lock per key, made on first use and dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def held(self, key: str) -> Iterator[None]:
        with self._lock:
            lock, users = self._held.get(key, (threading.Lock(), 0))
            self._held[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._held[key]
                if users == 1:
                    del self._held[key]
                else:
                    self._held[key] = (lock, users - 1)


_LOCAL_PATHS: Final = KeyedLocks()
"""Local paths a get() is writing, in this process (every experiment alike)."""


class Transfers:
    """Moves an experiment's files."""

    def __init__(self, *, fleet: Fleet, reacher: Reacher, calls: Calls) -> None:
        self.fleet = fleet
        self.reacher = reacher
        self.calls = calls

    def put(
        self,
        call: Call,
        tags: Sequence[str],
        local_path: str,
        remote_path: str,
        user: str,
        *,
        fan: bool,
        workers: int,
    ) -> None:
        local = self.local_file(local_path)
        targets = self.fleet.targets(tags, "put")
        # To several instances the file is stored once, and each transfer only hashed
        # against it: a copy of it per instance written to disk and scanned cost a third of
        # a fan-out's speed.
        kept = self._keep_local(local) if len(targets) > 1 else None
        outcomes = fan_out(
            lambda inst: self.put_one(call, inst, local, remote_path, user, kept=kept),
            targets,
            parallel=fan,
            workers=workers,
        )
        for _, error in outcomes:
            if error is not None:
                raise error
        call.result = [inst.instance_id for inst in targets]

    def get(
        self,
        call: Call,
        tags: Sequence[str],
        remote_path: str,
        local_path: str,
        user: str,
        *,
        fan: bool,
        workers: int,
    ) -> None:
        targets = self.fleet.targets(tags, "get")
        base = Path(local_path).expanduser()  # `~/results/out` as a shell has it
        inside = base / PurePosixPath(remote_path).name
        if base.is_dir():
            # Not left to each transfer: with several instances the seed's ".<id>" files
            # would land beside the directory, where nobody looks for them.
            raise TransferFailed(
                f"cannot write {base} on this machine: it is a directory (name the file to "
                f"write: {inside}; with several instances, .<instance id> is appended)"
            )
        if local_path.endswith(os.sep):
            what = "is not a directory" if base.exists() else "does not exist"
            raise LocalFileMissing(
                f"local directory {base} {what}; create it before get(), and name the file "
                f"to write in it ({inside})",
                path=base,
            )
        if not base.parent.is_dir():
            raise LocalFileMissing(
                f"local directory {base.parent} does not exist; create it before get()",
                path=base.parent,
            )
        single = len(targets) == 1

        def one(inst: Instance) -> str:
            local = base if single else base.with_name(f"{base.name}.{inst.instance_id}")
            self.get_one(call, inst, remote_path, local, user)
            return str(local)

        outcomes = fan_out(one, targets, parallel=fan, workers=workers)
        for _, error in outcomes:
            if error is not None:
                raise error
        call.result = [path for path, _ in outcomes]

    def local_file(self, local_path: str | Path) -> Path:
        local = Path(local_path).expanduser()  # `~/data.csv` is what a shell would send
        if local.is_dir():
            raise LocalFileMissing(
                f"local path {local} is a directory, not a file; nothing was copied (put and "
                "copy_and_run send one file: pack a directory with tar first)",
                path=local,
            )
        kind = special_kind(local.stat().st_mode) if local.exists() else None
        if kind is not None:
            raise LocalFileMissing(
                f"local path {local} is a {kind}, not a file: reading it may never end; "
                "nothing was copied (put and copy_and_run send one regular file)",
                path=local,
            )
        if not local.is_file():
            raise LocalFileMissing(
                f"local file {local} does not exist (cwd {Path.cwd()}); nothing was copied",
                path=local,
            )
        return local

    def put_one(
        self,
        call: Call,
        inst: Instance,
        local: Path,
        remote: str,
        user: str,
        *,
        temporary: bool = False,
        kept: BlobRef | None = None,
    ) -> None:
        if kept is None:
            mode, content = self._recorded_transfer(
                inst,
                user,
                lambda conn, on_chunk: conn.put(local, remote, on_chunk=on_chunk),
                f"the file {local} (put)",
                progress=("put", remote, _size(local)),
            )
        else:
            mode, content = self._checked_transfer(inst, user, local, remote, kept)
        if content is None:
            return
        self.calls.append(
            FilePut(
                call=call.number,
                slot=inst.slot,
                instance_id=inst.instance_id,
                user=user,
                local_path=str(local),
                remote_path=remote,
                mode=mode,
                content=content,
                temporary=temporary,
            )
        )

    def _recorded_transfer(
        self,
        inst: Instance,
        user: str,
        transfer: Callable[[Connection, Sink | None], int],
        what: str,
        *,
        progress: tuple[str, str, int | None],
    ) -> tuple[int, BlobRef | None]:
        """Run ``transfer`` on a connection to ``inst`` (given where to send each chunk; it
        returns the file's mode) and, when recording, keep what moved as a blob: hashed,
        scanned for secrets and written on a thread of its own while the transfer runs.
        ``progress`` (direction, remote path, size if known) is said as it moves, to
        whoever listens."""
        meter = self._meter(inst, *progress)
        with self.reacher.reaching(inst):
            conn = self.reacher.connection(inst, user)
            if meter is None:
                return self.calls.kept(lambda on_chunk: transfer(conn, on_chunk), what)
            found = self.calls.kept(lambda on_chunk: transfer(conn, meter.wrap(on_chunk)), what)
            meter.finish()
            return found

    @staticmethod
    def _meter(
        inst: Instance, direction: str, path: str, total: int | None
    ) -> _progress.TransferMeter | None:
        """What counts a transfer's bytes for whoever listens (None: nobody does)."""
        if not _progress.active():
            return None
        return _progress.TransferMeter(slot=inst.slot, instance_id=inst.instance_id,
                                       direction=direction, path=path, total=total)  # fmt: skip

    def _keep_local(self, local: Path) -> BlobRef | None:
        """Store a local file (scanned for secrets, as any file moved): None when not
        recording."""

        def read(on_chunk: Sink | None) -> int:
            with local.open("rb") as f:
                while on_chunk is not None and (chunk := f.read(CHUNK)):
                    on_chunk(chunk)
            return 0

        return self.calls.kept(read, f"the file {local} (put)")[1]

    def _checked_transfer(
        self, inst: Instance, user: str, local: Path, remote: str, kept: BlobRef
    ) -> tuple[int, BlobRef]:
        """Send ``local``, hashing what is sent: the stored ``kept`` when it matches, else
        the hash of bytes that were not kept (the file changed as it was sent)."""
        sent = hashlib.sha256()
        size = 0

        def count(chunk: bytes) -> None:
            nonlocal size
            sent.update(chunk)
            size += len(chunk)

        meter = self._meter(inst, "put", remote, kept.size)
        with self.reacher.reaching(inst):
            conn = self.reacher.connection(inst, user)
            mode = conn.put(local, remote, on_chunk=count if meter is None else meter.wrap(count))
        if meter is not None:
            meter.finish()
        if sent.hexdigest() == kept.sha256:
            return mode, kept
        log.warning("the file changed while it was sent: these bytes are kept by hash only",
                    path=str(local), instance=inst.instance_id, slot=inst.slot)  # fmt: skip
        return mode, BlobRef(sha256=sent.hexdigest(), size=size, withheld=CHANGED_WHILE_SENT)

    def get_one(self, call: Call, inst: Instance, remote: str, local: Path, user: str) -> None:
        # Gets to one local path take turns, each recorded before the next writes: the
        # last file.got of a path describes what is on disk (two threads getting at once
        # left one file there and recorded the other's hash last).
        with _LOCAL_PATHS.held(os.path.realpath(local)):
            mode, content = self._recorded_transfer(
                inst,
                user,
                lambda conn, on_chunk: conn.get(remote, local, on_chunk=on_chunk),
                f"the file {remote} (got)",
                progress=("get", remote, None),
            )
            if content is None:
                return
            self.calls.append(
                FileGot(
                    call=call.number,
                    slot=inst.slot,
                    instance_id=inst.instance_id,
                    user=user,
                    local_path=str(local),
                    remote_path=remote,
                    mode=mode,
                    content=content,
                )
            )
