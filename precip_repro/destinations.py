"""Local paths a user names for something to be written: a report, a file got.

Writing a temporary file and renaming it over the target keeps a regular file whole or
unchanged, but renamed over anything else it replaces that thing: ``report -o /dev/full``
as root replaced the system's ``/dev/full`` with a regular file, ``-o link`` replaced the
link instead of writing where it points. Here a link is followed to what it names; a
regular file (or none yet) is replaced whole; a character device or a named pipe is written
through, as a shell's ``>`` would (``-o /dev/stdout``); a block device or a socket is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Final

__all__ = ["Destination", "destination", "write_bytes"]

_REFUSED: Final = (
    (stat.S_ISBLK, "a block device: writing it would overwrite a disk"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


class Destination:
    """Where bytes for a user-named path go: ``path`` itself when it is a regular file or
    absent (``through`` False: replaced whole), or the special file it is (``through``)."""

    def __init__(self, named: Path, path: Path, *, through: bool) -> None:
        self.named = named
        self.path = path
        self.through = through


def destination(named: Path) -> Destination:
    """Where writing ``named`` lands, links followed; ``OSError`` (naming ``named``) for
    what must not be written: a block device, a socket, a directory."""
    try:
        # Through the links as open() goes (/dev/stdout → /proc/self/fd/1 → a pipe, which
        # realpath names "pipe:[N]", a path that does not exist).
        mode = named.stat().st_mode
    except FileNotFoundError:
        return Destination(named, Path(os.path.realpath(named)), through=False)
    path = Path(os.path.realpath(named)) if stat.S_ISREG(mode) else named
    for test, what in _REFUSED:
        if test(mode):
            shown = str(named) if path == named else f"{named} (a link to {path})"
            code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
            raise OSError(code, f"{shown} is {what}; name a file to write", str(named))
    return Destination(named, path, through=not stat.S_ISREG(mode))


def write_bytes(named: Path, data: bytes) -> Path:
    """Write ``data`` to ``named`` as :func:`destination` says: a regular file whole or not
    at all (its mode kept), a device or pipe through. Returns the path written.

    ``OSError`` names ``named`` in its ``filename`` and says what failed in ``strerror``."""
    target = destination(named)
    if target.through:
        try:
            with target.path.open("wb", buffering=0) as out:
                out.write(data)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), str(named)) from None
        return target.path
    tmp: Path | None = None
    try:
        target.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.path.with_name(f".{target.path.name}.{secrets.token_hex(6)}.tmp")
        # Created as open() creates (0o666 less the umask), unless a file is replaced.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, "wb") as out:
            out.write(data)
        with contextlib.suppress(FileNotFoundError):
            tmp.chmod(stat.S_IMODE(target.path.stat().st_mode))
        tmp.replace(target.path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise OSError(exc.errno, exc.strerror or str(exc), str(named)) from None
    return target.path
