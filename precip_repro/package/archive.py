"""Packages on disk: written as a deterministic zip or a directory, read back as untrusted
input.

The zip is the same bytes for the same members: sorted names, one fixed timestamp
(1980-01-01, the earliest a zip can hold), mode 0644 from a Unix "system", deflate at a
fixed level, no extra fields and no comment. A package read back may be hostile: names
that climb out (``../``), absolute names, links, devices and duplicate names are refused,
naming the entry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

from precip_repro.exceptions import PackageTampered
from precip_repro.package.layout import Member, safe_name

__all__ = ["FIXED_TIME", "PackageReader", "open_package", "write_directory", "write_zip"]

FIXED_TIME: Final = (1980, 1, 1, 0, 0, 0)
_FILE_MODE: Final = 0o100644
_LEVEL: Final = 6
_ZIP64_FROM: Final = 1 << 31


def write_zip(path: Path, members: Iterable[Member]) -> None:
    """Write ``members`` as a deterministic zip at ``path`` (atomically: a temporary file
    beside it, renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, compresslevel=_LEVEL) as zf,
        ):
            for member in sorted(members, key=lambda m: m.name):
                info = zipfile.ZipInfo(member.name, date_time=FIXED_TIME)
                info.create_system = 3  # Unix: the mode below is read
                info.external_attr = _FILE_MODE << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                info.file_size = member.size
                with zf.open(info, "w", force_zip64=member.size >= _ZIP64_FROM) as out:
                    for chunk in member.chunks():
                        out.write(chunk)
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_directory(path: Path, members: Iterable[Member]) -> None:
    """Write ``members`` into a new directory ``path`` (built beside it, then renamed; an
    existing empty directory is replaced, a non-empty one refused by the rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for member in members:
            target = tmp / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if member.source is not None and member.data is None:
                shutil.copyfile(member.source, target)
            else:
                target.write_bytes(member.read())
            target.chmod(0o644)
        tmp.chmod(0o755)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class PackageReader:
    """The files of a package (a zip or a directory), by name, each read once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self.names: list[str] = []
        if path.is_dir():
            self.names = self._walk()
        else:
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise PackageTampered(
                    f"{path} is neither a package directory nor a zip ({exc})", path=path
                ) from None
            self.names = self._entries(self._zip)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def _refuse(self, name: str, why: str) -> PackageTampered:
        return PackageTampered(f"{self.path}: {name} {why}", path=name)

    def _walk(self) -> list[str]:
        names = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            here = Path(dirpath)
            for name in [*dirnames, *filenames]:
                entry = here / name
                relative = entry.relative_to(self.path).as_posix()
                mode = entry.lstat().st_mode
                if stat.S_ISLNK(mode):
                    raise self._refuse(relative, "is a link: a package holds regular files only")
                if stat.S_ISREG(mode):
                    names.append(relative)
                elif not stat.S_ISDIR(mode):
                    raise self._refuse(relative, "is not a regular file")
        return sorted(names)

    def _entries(self, zf: zipfile.ZipFile) -> list[str]:
        names: list[str] = []
        seen: set[str] = set()
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename
            if not safe_name(name):
                raise self._refuse(name, "is not a plain relative name (.., /, \\)")
            mode = info.external_attr >> 16
            # Type bits are optional (zips made elsewhere give permissions alone): a link
            # or a device says so in them.
            if info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                raise self._refuse(name, "is a link or a special file, not a regular file")
            if name in seen:
                raise self._refuse(name, "is in the zip twice")
            seen.add(name)
            names.append(name)
        return sorted(names)

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        if self._zip is None:
            with (self.path / name).open("rb") as f:
                yield f
            return
        try:
            with self._zip.open(name) as f:
                yield f  # type: ignore[misc]
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            # A changed byte of compressed data: the CRC (or deflate) says so at the end.
            raise self._refuse(name, f"is damaged in the zip ({exc})") from None


def open_package(path: Path) -> PackageReader:
    return PackageReader(path)
