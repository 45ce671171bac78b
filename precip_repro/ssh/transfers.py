"""Transfers over SFTP: put and get stream in chunks, preserve the mode, and hand each
chunk to the caller; a put the instance did not take whole fails and is removed, a get is
written whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import stat
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Final

import paramiko

from precip_repro.destinations import destination
from precip_repro.exceptions import ExperimentException, RemoteFileMissing, TransferFailed
from precip_repro.ssh.flow import CHUNK, PREFETCH, REQUEST, Sink
from precip_repro.ssh.sessions import Sessions

__all__ = ["Transfers", "sftp_path", "special_kind"]


def _missing(exc: OSError) -> bool:
    return isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT


_SPECIAL: Final = (
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "named pipe"),
    (stat.S_ISSOCK, "socket"),
)


def special_kind(mode: int | None) -> str | None:
    """What a path that is neither a regular file nor a directory is (None: it is one of
    those). Reading a device or a pipe may never end, writing one may block, and ``put``'s
    chmod would change a device's mode — on a local instance, the host's own ``/dev``."""
    return next((kind for test, kind in _SPECIAL if test(mode or 0)), None)


def _collect_write_statuses(dst: paramiko.SFTPFile) -> None:
    """Raise the first error the server answered to ``dst``'s pipelined writes.

    paramiko files each pipelined write's answer under no file (``type(None)``), so
    ``close()`` never looks at them: a write refused for a full disk (``ENOSPC``) or by a
    special filesystem (``/proc/version``) was dropped, and put() returned as if every byte
    had arrived. The answers come in the order the writes went out; each is read here,
    and the first failure raises the ``OSError`` paramiko makes of it (errno and text)."""
    dst.flush()
    pending: Any = dst._reqs  # type: ignore[attr-defined]
    client: Any = dst.sftp
    while pending:
        client._read_response(pending.popleft())


def sftp_path(remote: str) -> str:
    """The path SFTP is given for a remote path as a user writes it: SFTP expands no ``~``,
    but starts relative paths in the login's home directory, so ``~/x`` is ``x`` (what scp
    makes of it)."""
    if remote == "~":
        return "."
    if remote.startswith("~/"):
        return remote[2:].lstrip("/") or "."
    return remote


class Transfers(Sessions):
    """Copying files to and from a connection's instance (a part of
    :class:`~precip_repro.ssh.connection.Connection`)."""

    def put(self, local: Path, remote: str, *, on_chunk: Sink | None = None) -> int:
        """Copy ``local`` to ``remote``, keeping its mode; return the mode. A relative
        ``remote`` (``~/x`` too) is in the login's home directory, as scp has it."""
        with self.sftp() as sftp:
            return self._put(sftp, local, remote, on_chunk)

    def _put(
        self, sftp: paramiko.SFTPClient, local: Path, remote: str, on_chunk: Sink | None
    ) -> int:
        mode = stat.S_IMODE(local.stat().st_mode)
        path = sftp_path(remote)
        try:
            kind = special_kind(sftp.stat(path).st_mode)
        except OSError:
            kind = None  # not there yet: the usual case
        except (paramiko.SSHException, EOFError) as exc:
            raise self._unreachable(f"the connection broke while putting {remote}", exc) from exc
        if kind is not None:
            raise self._transfer_failed(
                f"cannot put {local.name} to {remote}",
                None,
                why=f"it is a {kind}, not a file: put writes one regular file (nothing was "
                "sent, and its mode is left alone)",
            )
        try:
            sent = 0
            opened = False
            with local.open("rb", buffering=0) as src, sftp.open(path, "wb") as dst:
                opened = True
                dst.MAX_REQUEST_SIZE = REQUEST
                dst.set_pipelined(True)
                while chunk := src.read(CHUNK):
                    if on_chunk:
                        on_chunk(chunk)  # first: a recorder hashes it while it is sent
                    dst.write(chunk)
                    sent += len(chunk)
                _collect_write_statuses(dst)
                written = dst.stat().st_size
            if written != sent:
                raise self._short_write(sftp, path, remote, local, sent, None)
            sftp.chmod(path, mode)
        except ExperimentException:
            raise  # the recorder's own (a full disk here): not the transfer's fault
        except (paramiko.SSHException, EOFError) as exc:
            raise self._unreachable(f"the connection broke while putting {remote}", exc) from exc
        except OSError as exc:
            if opened:  # refused while writing: the instance holds part of the file
                raise self._short_write(sftp, path, remote, local, sent, exc) from exc
            if _missing(exc):
                raise RemoteFileMissing(
                    f"cannot write {remote} on instance {self.endpoint.instance_id} "
                    f"({self.endpoint.slot}): its directory does not exist",
                    instance=self.endpoint.instance_id,
                    slot=self.endpoint.slot,
                ) from exc
            why = None
            with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
                if stat.S_ISDIR(sftp.stat(path).st_mode or 0):
                    inside = f"{remote.rstrip('/')}/{local.name}"
                    why = f"it is a directory (name the file to write: {inside})"
            raise self._transfer_failed(f"cannot write {remote}", exc, why=why) from exc
        return mode

    def _short_write(
        self,
        sftp: paramiko.SFTPClient,
        path: str,
        remote: str,
        local: Path,
        sent: int,
        exc: OSError | None,
    ) -> TransferFailed:
        """The error for a put the instance did not take whole; what it kept is removed,
        so that no later command reads a truncated file as the one sent."""
        kept = None
        with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
            kept = sftp.stat(path).st_size
        removed = False
        with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
            sftp.remove(path)
            removed = True
        said = (exc.strerror or str(exc)) if exc is not None else ""
        if exc is None or exc.errno is None:
            # SFTP v3 has no code for ENOSPC or EIO: OpenSSH's sftp-server says "Failure".
            said = (
                f"the instance refused the write{f' ({said!r})' if said else ''}: its "
                "filesystem is full, or takes no writes there (/proc, /sys)"
            )
        kept_text = "" if kept is None else f"; it kept {kept} of {sent} bytes"
        if removed:
            left = "the incomplete file was removed"
        elif kept == 0:
            left = "nothing of it is there"
        else:
            left = "an incomplete file may be left there"
        return self._transfer_failed(
            f"cannot write {remote}",
            exc,
            why=f"{said}{kept_text}; {left} ({local.name} was not delivered)",
        )

    def get(self, remote: str, local: Path, *, on_chunk: Sink | None = None) -> int:
        """Copy ``remote`` to ``local`` (written whole or not at all); return the mode.
        A relative ``remote`` (``~/x`` too) is in the login's home directory."""
        with self.sftp() as sftp:
            return self._get(sftp, remote, local, on_chunk)

    def _get(
        self, sftp: paramiko.SFTPClient, remote: str, local: Path, on_chunk: Sink | None
    ) -> int:
        path = sftp_path(remote)
        try:
            attributes = sftp.stat(path)
        except (paramiko.SSHException, EOFError) as exc:
            raise self._unreachable("the connection broke", exc) from exc
        except OSError as exc:
            if _missing(exc):
                raise RemoteFileMissing(
                    f"{remote} does not exist on instance {self.endpoint.instance_id} "
                    f"({self.endpoint.slot})",
                    instance=self.endpoint.instance_id,
                    slot=self.endpoint.slot,
                ) from exc
            raise self._transfer_failed(f"cannot read {remote}", exc) from exc
        if stat.S_ISDIR(attributes.st_mode or 0):
            raise self._transfer_failed(
                f"cannot get {remote}",
                None,
                why="it is a directory; get copies one file (pack it first, e.g. "
                f"run(tags, 'tar czf /tmp/out.tgz -C {remote} .'))",
            )
        kind = special_kind(attributes.st_mode)
        if kind is not None:
            raise self._transfer_failed(
                f"cannot get {remote}",
                None,
                why=f"it is a {kind}, not a file: reading it may never end; get copies one "
                f"regular file (save what you need first, e.g. run(tags, 'head -c 1M {remote} "
                "> /tmp/out'), then get /tmp/out)",
            )
        if local.is_dir():
            raise self._transfer_failed(
                f"cannot write {local} on this machine",
                None,
                local_side=True,
                why="it is a directory (name the file to write: "
                f"{local / PurePosixPath(remote).name})",
            )
        try:
            target = destination(local)
        except OSError as exc:
            raise self._transfer_failed(
                f"cannot write {local} on this machine", None, local_side=True, why=exc.strerror
            ) from None
        if target.through:
            kind = special_kind(target.path.stat().st_mode)
            raise self._transfer_failed(
                f"cannot write {local} on this machine",
                None,
                local_side=True,
                why=f"it is a {kind}, not a file: get writes one regular file, and the record "
                "would name bytes that are nowhere (nothing was read)",
            )
        local = target.path  # a link is written through: the file it names is replaced
        mode = stat.S_IMODE(attributes.st_mode or 0o644)
        # A name of this transfer's own: two gets to one path (threads, processes) each
        # write a whole file of their own, and the last to finish replaces the other's.
        try:
            fd, name = tempfile.mkstemp(
                prefix=f".{local.name}.", suffix=".precip-partial", dir=local.parent
            )
        except OSError as exc:
            raise self._transfer_failed(
                f"cannot write {local} on this machine", exc, local_side=True
            ) from exc
        tmp = Path(name)
        try:
            with open(fd, "wb", buffering=0) as dst, sftp.open(path, "rb") as src:
                src.MAX_REQUEST_SIZE = REQUEST
                src.prefetch(attributes.st_size, max_concurrent_requests=PREFETCH)
                # Reading whole requests avoids re-joining prefetched pieces.
                while chunk := src.read(REQUEST):
                    try:
                        dst.write(chunk)
                    except OSError as exc:  # a write to a descriptor names no file
                        exc.filename = exc.filename or str(tmp)
                        raise
                    if on_chunk:
                        on_chunk(chunk)
            tmp.chmod(mode)
            tmp.replace(local)
        except ExperimentException:
            raise  # the recorder's own (a full disk here): not the transfer's fault
        except (paramiko.SSHException, EOFError) as exc:
            raise self._unreachable(f"the connection broke while getting {remote}", exc) from exc
        except OSError as exc:
            here = exc.filename in (str(tmp), str(local))
            doing = f"cannot write {local} on this machine" if here else f"cannot read {remote}"
            raise self._transfer_failed(doing, exc, local_side=here) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return mode

    def remove(self, remote: str) -> None:
        with self.sftp() as sftp:
            sftp.remove(remote)

    def chmod(self, remote: str, mode: int) -> None:
        with self.sftp() as sftp:
            sftp.chmod(remote, mode)

    def _transfer_failed(
        self, doing: str, exc: OSError | None, *, local_side: bool = False, why: str | None = None
    ) -> TransferFailed:
        e = self.endpoint
        if why is None:
            why = (exc.strerror or str(exc) or type(exc).__name__) if exc is not None else "?"
            if e.denied_hint and not local_side and exc is not None and exc.errno == errno.EACCES:
                why = f"{why} ({e.denied_hint})"
        where = "" if local_side else f" on instance {e.instance_id} ({e.slot}) as {self.who}"
        return TransferFailed(f"{doing}{where}: {why}", instance=e.instance_id, slot=e.slot)
