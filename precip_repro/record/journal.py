"""The journal writer: appends sealed events to ``events.jsonl``, one writer per run.

Each event is handed to the OS with a single ``write`` before ``append`` returns, so the
side effect it announces can only happen after it is in the kernel: a killed process loses
nothing it announced. Events that announce cost (provisioning, termination) and the run's
end are also fsynced, so a power cut loses none of them either.

The writer holds an exclusive ``flock`` on the log for its whole life; a second writer — in
this process or another — is refused with :class:`RunLocked`, and ``verify`` uses the same
lock to tell an ``open`` run from an ``abandoned`` one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from precip_repro.exceptions import (
    RecordWriteFailed,
    RunAlreadyFinished,
    RunLocked,
    UnrecordableValue,
)
from precip_repro.logs import get_logger
from precip_repro.record.canonical import JSON
from precip_repro.record.events import FORMAT_VERSION, GENESIS, Event, format_ts
from precip_repro.record.lines import seal
from precip_repro.record.reader import MAX_LINE

__all__ = ["WRITING", "Journal", "is_locked"]

log = get_logger(__name__)

_process = os.getpid()
"""This process's id, kept current across forks: asking the kernel at every append would
cost the hot path a system call."""


def _forked() -> None:
    global _process
    _process = os.getpid()


os.register_at_fork(after_in_child=_forked)


def _lock(fd: int, path: Path, run: str | None, *, exclusive: bool = True) -> None:
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunLocked(
                f"run {run or path.parent.name} is open for writing by another writer "
                f"(lock on {path}); wait for it to finish, or stop that process",
                run=run,
                path=path,
            ) from None
        raise


def is_locked(path: Path) -> bool:
    """Whether a writer currently holds the log at ``path``."""
    try:
        # Neither blocking on a named pipe nor following a link: a run under review may
        # be hostile, and no writer of ours holds either.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


class Journal:
    """Appends events to one run's log. Thread-safe."""

    def __init__(self, path: Path, fd: int, *, run: str, seq: int, prev: str) -> None:
        self.path = path
        self.run = run
        self._fd: int | None = fd
        self._seq = seq
        self._prev = prev
        self._lock = threading.Lock()
        self._version = FORMAT_VERSION
        """The format the events are written in: the run's own (a v1 run is finished in v1)."""
        self._closed_reason: str | None = None
        self._end = os.fstat(fd).st_size
        """Where the last complete event ends: a failed write is cut back to here."""
        self._pid = _process
        """The writing process: a fork of it shares the descriptor and the lock, not the
        right to append (the two would interleave their seqs and break the chain)."""

    @classmethod
    def create(cls, path: Path, *, run: str) -> Journal:
        """Start a new log at ``path`` (which must not exist) and hold it for writing."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _lock(fd, path, run)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, run=run, seq=0, prev=GENESIS)

    @classmethod
    def acquire(cls, path: Path, *, run: str) -> Journal:
        """Hold an existing log for writing, to recover it; :meth:`resume_at` before appending.

        Only recovery does this: a finished run is never appended to.
        """
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            _lock(fd, path, run)
        except BaseException:
            os.close(fd)
            raise
        journal = cls(path, fd, run=run, seq=0, prev=GENESIS)
        journal._closed_reason = "not resumed"
        return journal

    def resume_at(self, *, seq: int, prev: str, end: int, v: int = FORMAT_VERSION) -> None:
        """Continue after the last intact event, which ends at byte ``end``, in the run's
        format version ``v``.

        Bytes past ``end`` — a torn tail, which the caller has saved — are cut off.
        """
        with self._lock:
            assert self._fd is not None
            if os.fstat(self._fd).st_size != end:
                os.ftruncate(self._fd, end)
            self._seq, self._prev, self._closed_reason = seq, prev, None
            self._end = end
            self._version = v

    @property
    def seq(self) -> int:
        """The seq the next event will get (= events written so far)."""
        return self._seq

    @property
    def last_hash(self) -> str:
        return self._prev

    def append(
        self,
        type: str,
        data: dict[str, JSON],
        *,
        sync: bool = False,
        final: bool = False,
    ) -> Event:
        """Seal and write one event; fsync it when ``sync``. ``final`` closes the journal."""
        # Before the lock: a thread of the parent may have held it when the process forked.
        self._refuse_fork()
        with self._lock:
            if self._fd is None or self._closed_reason is not None:
                raise RunAlreadyFinished(
                    f"run {self.run} is {self._closed_reason or 'closed'}: "
                    "nothing is appended to it any more",
                    run=self.run,
                    path=self.path,
                )
            event, line = seal(
                seq=self._seq, ts=format_ts(time.time_ns()), type=type, data=data,
                prev=self._prev, v=self._version,
            )  # fmt: skip
            if len(line) > MAX_LINE:
                raise self._too_large(type, data, len(line))
            # Not a context manager: this is the hot path of every event.
            main = WRITING.enter()
            try:
                _write_all(self._fd, line)
                if sync:
                    os.fsync(self._fd)
            except OSError as exc:
                raise self._write_failed(exc, type) from exc
            else:
                self._end += len(line)
                self._seq += 1
                self._prev = event.hash
                if final:
                    self._closed_reason = "finished"
            finally:
                if main:
                    WRITING.leave()
            return event

    def _too_large(self, type: str, data: dict[str, JSON], size: int) -> UnrecordableValue:
        # Written, it would make the log unreadable from here on (readers refuse longer
        # lines: a line that long is no event but damage): refused, nothing written.
        field = max(data, key=lambda key: len(json.dumps(data[key], ensure_ascii=False)))
        return UnrecordableValue(
            f"{type} of run {self.run} would be {size:,} bytes, past the {MAX_LINE:,} an "
            f"event may hold (its field {field!r} is the bulk of it); nothing was written. "
            "Keep large data in a file — put() stores its bytes in the run's blob store — "
            "and note where it is instead",
            field=field,
            run=self.run,
            seq=self._seq,
        )

    def _refuse_fork(self) -> None:
        if _process != self._pid:
            raise RunLocked(
                f"run {self.run} is written by process {self._pid}; this process "
                f"({os.getpid()}) is a fork of it (os.fork, multiprocessing) and cannot append "
                "to its log: record from the process that opened the run",
                run=self.run,
                path=self.path,
            )

    def _write_failed(self, exc: OSError, type: str) -> RecordWriteFailed:
        # A partial line would make every later event unreadable: cut it off, so the log
        # ends with its last complete event (abandoned, recoverable) and a later append
        # (once there is room again) continues the chain.
        assert self._fd is not None
        then = f"; if the process ends first, `precip-repro recover {self.run}` finishes the run"
        try:
            os.ftruncate(self._fd, self._end)
            if self._seq == 0:  # nothing to keep, nothing to recover
                state, then = "the log holds no event", ""
            else:
                state = f"the log is intact up to event seq {self._seq - 1}"
        except OSError as cut:
            self._closed_reason = "broken (a failed write could not be cut off)"
            state = f"its partial line could not be cut off either ({cut.strerror or cut})"
        failed = RecordWriteFailed(
            f"could not write event seq {self._seq} ({type}) of run {self.run} to "
            f"{self.path}: {exc.strerror or exc}; {state}. Free space (or fix the disk){then}",
            run=self.run,
            seq=self._seq,
            path=self.path,
            cause=exc,
        )
        log.error("event not written", run=self.run, seq=self._seq, error=exc.strerror)
        return failed

    def sync(self) -> None:
        self._refuse_fork()
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)

    def close(self) -> None:
        """Release the log (and its lock). Appending afterwards raises
        :class:`RunAlreadyFinished`."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self._closed_reason = self._closed_reason or "closed"


class _Writing:
    """Whether the main thread is between writing an event's line and counting it.

    A signal handler runs in the main thread, between any two of its bytecodes; one that
    raised (KeyboardInterrupt) in there would leave a line written, or half of it, that the
    journal never counted: the next event would repeat its seq, and the log be corrupt. So
    a handler that is about to raise asks here first, and hands its raising over
    (:meth:`defer`), to be done the moment the event is whole."""

    def __init__(self) -> None:
        self.active = False
        self._deferred: Callable[[], None] | None = None

    def defer(self, action: Callable[[], None]) -> None:
        self._deferred = action

    def enter(self) -> bool:
        """Mark the start of a write; whether it is the main thread's (then ``leave``)."""
        if threading.get_ident() != threading.main_thread().ident:
            return False  # a signal handler never runs in another thread
        self.active = True
        return True

    def leave(self) -> None:
        self.active = False
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            deferred()


WRITING: Final = _Writing()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
