"""The content-addressed blob store of one run: ``objects/ab/cdef…``, named by sha256.

Blobs are streamed to a temporary file while they are hashed, then renamed into place, so a
reader never sees half a blob and a large file is never held in memory. The same bytes are
stored once. Short UTF-8 output may instead be kept inline in its event (``BlobRef.text``):
then no object file is written, since the event holds the content itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

from precip_repro.exceptions import (
    BlobCorrupted,
    ContentWithheld,
    RecordCorrupted,
    RecordWriteFailed,
)
from precip_repro.record.files import fsync_dir, open_regular
from precip_repro.record.payloads import INLINE_TEXT_LIMIT, BlobRef

__all__ = ["CHUNK", "BackgroundWriter", "BlobSink", "BlobStore", "hash_file"]

CHUNK: Final = 1 << 20
_READONLY: Final = 0o444


def hash_file(path: Path) -> tuple[str, int]:
    """The sha256 hex and size of a file, read in chunks (the GIL is released while hashing)."""
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256")
        return digest.hexdigest(), f.tell()


class BlobStore:
    """The ``objects/`` directory of one run."""

    def __init__(self, root: Path, *, run: str | None = None) -> None:
        self.root = root
        self.run = run
        self._lock = threading.Lock()
        self._unsynced: list[Path] = []

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def objects(self) -> Iterator[tuple[str, Path]]:
        """Every object stored: its sha256 and path (blobs still being written excluded)."""
        if not self.root.is_dir():
            return
        for prefix in sorted(self.root.iterdir()):
            if len(prefix.name) != 2 or not prefix.is_dir():
                continue  # tmp/, where blobs are written before they are named
            for path in sorted(prefix.iterdir()):
                yield prefix.name + path.name, path

    def remove(self, sha256: str) -> None:
        """Delete an object for good (a blob found to hold a secret), durably."""
        path = self.path_for(sha256)
        path.unlink(missing_ok=True)
        with self._lock:
            self._unsynced = [p for p in self._unsynced if p != path]
        fsync_dir(path.parent)
        with contextlib.suppress(OSError):  # not empty: other blobs share the prefix
            path.parent.rmdir()

    def sink(self, *, inline: bool = False) -> BlobSink:
        """A writable sink: write chunks, then :meth:`BlobSink.commit` for the reference."""
        return BlobSink(self, inline=inline)

    def put_bytes(self, data: bytes, *, inline: bool = False) -> BlobRef:
        with self.sink(inline=inline) as sink:
            sink.write(data)
            return sink.commit()

    def put_stream(self, stream: BinaryIO, *, inline: bool = False) -> BlobRef:
        with self.sink(inline=inline) as sink:
            while chunk := stream.read(CHUNK):
                sink.write(chunk)
            return sink.commit()

    def put_file(self, path: Path, *, inline: bool = False) -> BlobRef:
        with path.open("rb") as f:
            return self.put_stream(f, inline=inline)

    def check(self, ref: BlobRef) -> None:
        """Raise :class:`BlobCorrupted` unless ``ref``'s bytes are present and hash right."""
        if ref.text is not None:
            content = ref.text.encode("utf-8")
            if len(content) != ref.size or hashlib.sha256(content).hexdigest() != ref.sha256:
                raise BlobCorrupted(
                    f"inline blob {ref.sha256} does not hash to its name",
                    run=self.run,
                    blob=ref.sha256,
                )
            return
        path = self.path_for(ref.sha256)
        try:
            # A run under review is untrusted: a link (to a copy elsewhere), a pipe or a
            # device is no blob of its own, and a file of another size is not hashed at all
            # (a sparse 50 GB one took minutes).
            f = open_regular(path, what="blob", run=self.run)
        except FileNotFoundError:
            raise BlobCorrupted(
                f"blob {ref.sha256} is missing (expected {path})",
                run=self.run,
                blob=ref.sha256,
                path=path,
            ) from None
        except RecordCorrupted as exc:
            raise BlobCorrupted(str(exc), run=self.run, blob=ref.sha256, path=path) from None
        with f:
            size = os.fstat(f.fileno()).st_size
            sha = "(not hashed)"
            if size == ref.size:
                sha = hashlib.file_digest(f, "sha256").hexdigest()  # type: ignore[arg-type]
        if size != ref.size or sha != ref.sha256:
            raise BlobCorrupted(
                f"blob {ref.sha256} is corrupt: {path} holds {size} bytes hashing to {sha}, "
                f"the record says {ref.size} bytes",
                run=self.run,
                blob=ref.sha256,
                path=path,
            )

    def iter_verified(self, ref: BlobRef) -> Iterator[bytes]:
        """Stream a blob's bytes, having checked them first (two reads, no memory spike).
        Raises :class:`ContentWithheld` for a reference kept by hash only."""
        if ref.withheld is not None and ref.text is None:
            raise ContentWithheld(
                f"run {self.run} keeps blob {ref.sha256} by hash only ({ref.withheld}): its "
                "bytes were never stored, or removed when the secret was registered. Compare "
                "your own copy with `sha256sum`",
                run=self.run,
                blob=ref.sha256,
                reason=ref.withheld,
            )
        self.check(ref)
        if ref.text is not None:
            yield ref.text.encode("utf-8")
            return
        with self.path_for(ref.sha256).open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def read_bytes(self, ref: BlobRef) -> bytes:
        return b"".join(self.iter_verified(ref))

    def sync(self) -> None:
        """fsync every object written through this store and not yet synced, and their dirs."""
        with self._lock:
            pending, self._unsynced = self._unsynced, []
        dirs: set[Path] = set()
        for path in pending:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            dirs.add(path.parent)
        if pending:
            dirs.add(self.root)
        for directory in dirs:
            fsync_dir(directory)

    def _install(self, tmp: Path, sha256: str) -> None:
        target = self.path_for(sha256)
        if target.exists():
            # Same name, same bytes: keep the one already there.
            tmp.unlink()
            return
        target.parent.mkdir(exist_ok=True)
        tmp.chmod(_READONLY)
        tmp.replace(target)
        with self._lock:
            self._unsynced.append(target)


class BlobSink:
    """Receives a blob's bytes in chunks, hashing them in the same pass."""

    def __init__(self, store: BlobStore, *, inline: bool) -> None:
        self._store = store
        self._inline = inline
        self._hash = hashlib.sha256()
        self._size = 0
        self._head = bytearray()
        self._fd: int | None = None
        self._tmp: Path | None = None
        self._ref: BlobRef | None = None

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._ref is not None:
            raise ValueError("blob already committed")
        self._hash.update(chunk)
        self._size += len(chunk)
        try:
            if self._fd is None:
                if self._size <= INLINE_TEXT_LIMIT:
                    self._head += chunk
                    return
                self._open()
                self._write(self._head)
                self._head = bytearray()
            # Unbuffered: os.write releases the GIL for the copy a buffered writer would
            # hold it for, which matters when a transfer runs beside this on another thread.
            self._write(chunk)
        except OSError as exc:
            raise self._refused(exc) from exc

    def _refused(self, exc: OSError) -> RecordWriteFailed:
        self.discard()  # nothing partial stays behind
        return RecordWriteFailed(
            f"could not store a blob of run {self._store.run} in {self._store.root}: "
            f"{exc.strerror or exc}; nothing partial was kept. Free space (or fix the disk) "
            "and try again",
            run=self._store.run,
            path=self._store.root,
            cause=exc,
        )

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def _open(self) -> None:
        tmpdir = self._store.root / "tmp"
        tmpdir.mkdir(parents=True, exist_ok=True)
        self._fd, name = tempfile.mkstemp(dir=tmpdir, prefix="blob-")
        self._tmp = Path(name)

    @property
    def size(self) -> int:
        return self._size

    @property
    def committed(self) -> bool:
        return self._ref is not None

    def commit(self) -> BlobRef:
        """Finish the blob: install it in the store (unless inline) and return its reference."""
        if self._ref is not None:
            return self._ref
        sha = self._hash.hexdigest()
        try:
            if self._fd is None:
                content = bytes(self._head)
                ref = BlobRef.of(content, inline=self._inline)
                if ref.text is None:
                    self._open()
                    self._write(content)
            else:
                ref = BlobRef(sha256=sha, size=self._size)
            if self._fd is not None:
                assert self._tmp is not None
                os.close(self._fd)
                self._fd = None
                self._store._install(self._tmp, sha)
                self._tmp = None
        except OSError as exc:
            raise self._refused(exc) from exc
        self._ref = ref
        return ref

    def withhold(self, reason: str) -> BlobRef:
        """Finish without storing the bytes: the reference keeps their hash and size only."""
        if self._ref is not None:
            raise ValueError("blob already committed")
        self.discard()
        self._head = bytearray()
        self._ref = BlobRef(sha256=self._hash.hexdigest(), size=self._size, withheld=reason)
        return self._ref

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> BlobSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ref is None:
            self.discard()


class BackgroundWriter:
    """Feeds chunks to ``consume`` on a thread of its own, so that hashing and storing a
    transfer's bytes runs beside the transfer instead of after each chunk of it.

    Chunks are handed over, not copied; at most ``depth`` wait at a time (bounded memory).
    :meth:`close` waits for the last chunk and re-raises what ``consume`` raised.
    """

    _DONE: Final = object()

    def __init__(self, consume: Callable[[bytes], None], *, depth: int = 8) -> None:
        self._consume = consume
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True, name="precip-blob")
        self._thread.start()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if self._error is None:
                try:
                    self._consume(item)  # type: ignore[arg-type]
                except BaseException as exc:
                    self._error = exc

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def close(self) -> None:
        self._queue.put(self._DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error
