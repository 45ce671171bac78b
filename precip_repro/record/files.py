"""Opening a run's own files as untrusted input.

A run sent for review may be hostile: a ``checkpoint`` that is a link to ``/dev/zero`` grew
memory without bound, a named pipe hung ``verify``, a sparse 50 GB file raised
``MemoryError``. Every file of a run is opened here without following a final symbolic
link and without blocking, must be a regular file, and is read within a size bound; anything
else is :class:`RecordCorrupted` naming the file and what it is.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Final

from precip_repro.exceptions import RecordCorrupted

__all__ = ["fsync_dir", "open_regular", "read_bounded", "write_durably"]

_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def open_regular(path: Path, *, what: str, run: str | None, buffering: int = -1) -> BinaryIO:
    """``path`` opened for reading, checked to be a regular file of the run's own.
    ``FileNotFoundError`` when it is not there at all."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RecordCorrupted(
                f"{what} {path} is a symbolic link, not a file of the run's own: a run is "
                "verified as it is, links are not followed (copy it with the files the "
                "links name, e.g. cp -rL)",
                run=run,
                path=path,
            ) from None
        raise RecordCorrupted(
            f"{what} {path} cannot be read: {exc.strerror or exc}", run=run, path=path
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        kind = next((name for test, name in _KINDS if test(mode)), None)
        if kind is not None or not stat.S_ISREG(mode):
            raise RecordCorrupted(
                f"{what} {path} is {kind or 'not a regular file'}, not a file: it is not "
                "what precip-repro writes (nothing was read from it)",
                run=run,
                path=path,
            )
        os.set_blocking(fd, True)
        return open(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, *, limit: int, what: str, run: str | None) -> bytes | None:
    """The bytes of ``path`` (a regular file of at most ``limit`` bytes), or None when it
    is not there."""
    try:
        f = open_regular(path, what=what, run=run, buffering=0)
    except FileNotFoundError:
        return None
    with f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise RecordCorrupted(
            f"{what} {path} holds more than {limit:,} bytes: not what precip-repro writes",
            run=run,
            path=path,
        )
    return data


def fsync_dir(directory: Path) -> None:
    """Make the names in ``directory`` durable (a file created or renamed there)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes, *, mode: int = 0o444) -> None:
    """Write ``path`` whole or not at all, and durably: a temporary file beside it, fsynced,
    renamed over it, the directory fsynced (the checkpoint and its signature)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    fsync_dir(path.parent)
