"""SSH to instances over paramiko: pooled connections, pinned host keys, exec, SFTP.

- One connection per (instance, user), reused; the socket has TCP_NODELAY (paramiko does
  not set it, and a round trip costs ~48 ms instead of ~3 without it).
- Host keys are pinned per instance id at first contact and never accepted when they
  change — not per address, since clouds reuse addresses.
- ``exec`` reads stdout and stderr as they arrive (no deadlock on large output), hands each
  chunk to the caller (to hash and store in the same pass) and keeps the exact bytes.
- SFTP put/get stream in chunks, preserve the mode, and hand each chunk to the caller.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import secrets
import select
import shlex
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Final, TypeVar

import attrs
import paramiko

from precip_repro.destinations import destination
from precip_repro.exceptions import (
    ExperimentException,
    HostKeyChanged,
    InstanceError,
    InstanceUnreachable,
    LoginRefused,
    RemoteFileMissing,
    TransferFailed,
)
from precip_repro.keys import fingerprint
from precip_repro.logs import get_logger
from precip_repro.messages import shown_command

__all__ = ["MAX_COMMAND", "Connection", "Endpoint", "ExecResult", "HostKeyPins", "SshPool"]

log = get_logger(__name__)

# paramiko logs what its transport thread meets ("Socket exception: Connection reset by
# peer") through logging. In a script that configured none, logging's last-resort handler
# would print it bare on stderr, beside our own error naming the instance; a NullHandler
# keeps it out, and an application's own handlers still get it (propagation is unchanged).
logging.getLogger("paramiko").addHandler(logging.NullHandler())

HELD_OUTPUT_WARNING: Final = 5.0
"""Seconds after a command's exit while a background process it started keeps its output
open (``nohup server &``: without a terminal, nohup leaves output where it was) before a
warning says why run() has not returned (OpenSSH's ssh waits the same way)."""

ALIVE_INTERVAL: Final = 15.0
ALIVE_TIMEOUT: Final = 45.0
"""Every ALIVE_INTERVAL seconds each connection asks sshd for a sign of life (as OpenSSH's
``ServerAliveInterval``); one left unanswered for ALIVE_TIMEOUT is closed, so that what
waits on it — a command without a timeout, a transfer — fails as unreachable, naming the
instance, instead of hanging until TCP gives up (a quarter of an hour) or for ever (an
instance that hangs or is stopped while its kernel still acknowledges)."""

Sink = Callable[[bytes], None]

CHUNK: Final = 1 << 20
WINDOW: Final = 16 << 20
PACKET: Final = 255 << 10
REQUEST: Final = 255 << 10
"""SFTP read/write request size: OpenSSH's sftp-server accepts 255 KiB (paramiko asks for
32 KiB by default, which makes a download four times slower)."""
PREFETCH: Final = 64
SFTP_WINDOW: Final = 1 << 20
"""The SFTP channel's receive window. Small on purpose: paramiko buffers what arrives in an
array it trims from the front, so a download through a 16 MiB window spends its time moving
megabytes of buffer; through 1 MiB (with 64 requests in flight) it runs at ~500 MB/s on
loopback instead of ~350 (bench/sftp.py)."""
_PREFERRED_CIPHERS: Final = ("aes128-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


@attrs.frozen(kw_only=True)
class Endpoint:
    """Where an instance answers ssh."""

    instance_id: str
    slot: str
    host: str
    port: int = 22
    session_user: str | None = None
    """Whom every session runs as inside, whatever account logs in (an ordinary user's
    local instance: root): the user messages name."""
    denied_hint: str | None = None
    """Added to a transfer refused for want of permission (see ``Cloud.denied_hint``)."""


@attrs.frozen(kw_only=True)
class ExecResult:
    """A finished command: ``exit_code`` is None when it was stopped at its timeout (the
    output is then what arrived until then)."""

    exit_code: int | None
    stdout: bytes = attrs.field(repr=False)
    stderr: bytes = attrs.field(repr=False)
    duration_ns: int
    timed_out: bool = False
    still_running: bool = False
    """Timed out, and what it started could not be ended on the instance (no GNU grep or
    ``/proc`` there, or the instance did not answer): it may still be running."""


class HostKeyPins:
    """Host keys pinned per instance id for one run. Thread-safe."""

    def __init__(self) -> None:
        self._pins: dict[str, paramiko.PKey] = {}
        self._lock = threading.Lock()

    def check(self, endpoint: Endpoint, key: paramiko.PKey) -> str:
        """Pin ``key`` at first contact; raise :class:`HostKeyChanged` if it differs later."""
        with self._lock:
            pinned = self._pins.setdefault(endpoint.instance_id, key)
        if pinned.asbytes() != key.asbytes():
            raise HostKeyChanged(
                f"instance {endpoint.instance_id} ({endpoint.slot}) at "
                f"{endpoint.host}:{endpoint.port} presented host key {fingerprint(key)} "
                f"({key.get_name()}), but {fingerprint(pinned)} was pinned at first contact: "
                "something else answers at that address, or the instance was replaced. "
                "Not connecting; deprovision and provision it again if this is expected",
                instance=endpoint.instance_id,
                slot=endpoint.slot,
            )
        return fingerprint(key)

    def get(self, instance_id: str) -> paramiko.PKey | None:
        with self._lock:
            return self._pins.get(instance_id)


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


def _exec_with_stdin_closed(chan: paramiko.Channel, cmd: str) -> None:
    """``exec`` ``cmd`` on ``chan`` with its stdin closed (EOF sent with the request).

    ``exec_command()`` then ``shutdown_write()`` races paramiko's transport thread
    (paramiko#1115, #1705, still open): a quick command's CLOSE can arrive between them,
    the transport thread answers with its own CLOSE, our EOF follows it onto the wire, and
    sshd drops the whole connection — every other session on it too ("ieof packet referred
    to nonexistent channel"; threads sharing an experiment saw it under load). Here the
    EOF is sent right behind the request while the channel's lock is held, so no CLOSE for
    it can be sent in between: the server cannot end a command it has not yet been asked
    to run, and nothing else needs that lock before the request is answered."""
    request = paramiko.Message()
    request.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    request.add_int(chan.remote_chanid)
    request.add_string("exec")
    request.add_boolean(True)
    request.add_string(cmd)
    transport: Any = chan.transport
    with chan.lock:
        chan._event_pending()  # type: ignore[attr-defined]
        transport._send_user_message(request)
        eof = chan._send_eof()  # type: ignore[attr-defined]
        if eof is not None:
            transport._send_user_message(eof)
    chan._wait_for_event()  # type: ignore[attr-defined]


_MARK: Final = "PRECIP_EXEC"
_END_TIMEOUT: Final = 30.0
"""How long ending a timed-out command may take (it needs about two seconds)."""
MAX_COMMAND: Final = 128 * 1024 - 1
"""The longest command, in bytes: sshd hands it to the remote shell as one ``-c`` argument,
and Linux refuses an argument longer than 128 KiB with its NUL (MAX_ARG_STRLEN)."""
_END_MARKED: Final = r"""
t='PRECIP_EXEC=TOKEN'
marked() { grep -lsxzF "$t" /proc/[0-9]*/environ | cut -d/ -f3; }
pids=$(marked)
[ -z "$pids" ] && exit 0
kill -TERM $pids 2>/dev/null
for i in 1 2 3 4 5 6 7 8 9 10; do
  [ -z "$(marked)" ] && exit 0
  sleep 0.2
done
kill -KILL $(marked) 2>/dev/null
sleep 0.2
[ -z "$(marked)" ]
"""
"""Ends a timed-out command and all it started: every process whose environment holds
its mark (inherited by children, kept across exec — the shell may exec the command in its
place — and by daemons that leave the session), TERM first, KILL two seconds later."""


MAX_SESSIONS: Final = 10
"""Sessions (channels) sshd allows on one connection: OpenSSH's default ``MaxSessions``,
which stock cloud images keep. One more is refused ("administratively prohibited")."""


SESSION_RETRY: Final = 5.0
"""Seconds a session sshd refuses is asked for again (see ``Connection._refused_again``)."""

SFTP_SERVERS: Final = (
    "/usr/lib/openssh/sftp-server",  # Debian, Ubuntu
    "/usr/libexec/openssh/sftp-server",  # Amazon Linux, RHEL, Fedora
    "/usr/lib/ssh/sftp-server",  # Arch, SUSE
    "/usr/libexec/sftp-server",
    "/usr/lib/sftp-server",
)
"""Where images keep OpenSSH's sftp-server, run through sudo for a transfer as another
user than the login (sshd's own ``Subsystem sftp`` runs as the login)."""

_IN_LOGIN_SHELL: Final = (
    'cd 2>/dev/null; s=$(getent passwd "$(id -un)" | cut -d: -f7); exec "${s:-/bin/sh}" -c "$1"'
)
_SFTP_SERVER: Final = (
    "cd 2>/dev/null; for p in "
    + " ".join(SFTP_SERVERS)
    + '; do [ -x "$p" ] && exec "$p"; done; '
    + f'echo "no sftp-server in any of {", ".join(SFTP_SERVERS)}" >&2; exit 127'
)


def through_sudo(user: str, script: str, *args: str) -> str:
    """The command line that runs the shell ``script`` as ``user`` through sudo, never
    asking for a password, where a login as ``user`` would be: its HOME, its home as the
    working directory (``_IN_LOGIN_SHELL`` adds its login shell, as sshd runs a command)."""
    quoted = " ".join(shlex.quote(arg) for arg in ("precip", *args))
    return f"sudo -n -H -u {shlex.quote(user)} -- /bin/sh -c {shlex.quote(script)} {quoted}"


T = TypeVar("T")


class Connection:
    """A logged-in ssh connection to one instance as one user — or, with ``become``, as
    the login ``user`` acting as ``become`` through sudo: every command and transfer on it
    runs as ``become``.

    Its sessions are counted, so that threads sharing it never open more than sshd allows:
    a command or transfer beyond that waits for one to end (an idle SFTP session is closed
    to make room), and one session is kept for ending a timed-out command.
    """

    def __init__(
        self,
        transport: paramiko.Transport,
        endpoint: Endpoint,
        user: str,
        *,
        become: str | None = None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.transport = transport
        self.endpoint = endpoint
        self.user = user
        self.become = become
        self._redact = redact
        """Hides the secrets in a command before it is shown in a message, long or not."""
        self.who = endpoint.session_user or (
            user if become is None else f"{become} (sudo from {user})"
        )
        """Whom its commands run as, for messages."""
        self._idle: list[paramiko.SFTPClient] = []
        self._closed = False
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_SESSIONS - 1)
        self._ending = threading.Lock()  # the session kept for ending timed-out commands
        self._asked: float | None = None  # when the sign of life not yet given was asked
        self.lost: str | None = None
        """Why this connection was closed as dead, when it was."""

    @contextlib.contextmanager
    def _session_slot(self, *, ending: bool = False) -> Iterator[None]:
        """Hold one of the sessions sshd allows for the block (``ending``: the one kept
        for ending timed-out commands)."""
        if ending:
            with self._ending:
                yield
            return
        self._acquire_slot()
        try:
            yield
        finally:
            self._slots.release()

    def _acquire_slot(self) -> None:
        while not self._slots.acquire(blocking=False):
            with self._lock:
                idle = self._idle.pop() if self._idle else None
            if idle is not None:  # an idle SFTP session holds a slot: close it for room
                idle.close()
                self._slots.release()
            elif self._slots.acquire(timeout=1.0):
                return

    @property
    def active(self) -> bool:
        return bool(self.transport.is_active())

    def exec(
        self,
        cmd: str,
        *,
        timeout: float | None = None,
        on_stdout: Sink | None = None,
        on_stderr: Sink | None = None,
        end_on_timeout: bool = True,
    ) -> ExecResult:
        """Run ``cmd``; return its exit code and exact output. No pty, stdin closed.

        Past ``timeout`` the command is ended on the instance, with all it started there
        (closing the channel alone would leave it running): it runs behind an
        ``export PRECIP_EXEC=TOKEN;``, a mark its processes inherit, for a second session
        to find them by."""
        started = time.monotonic_ns()
        deadline = None if timeout is None else time.monotonic() + timeout
        token = secrets.token_hex(8) if timeout is not None and end_on_timeout else None
        sent = self._as_become(f"export {_MARK}={token}; {cmd}" if token is not None else cmd)
        if len(sent.encode()) > MAX_COMMAND:  # no room for the mark: it cannot be found
            token, sent = None, self._as_become(cmd)
        # Only _end_marked runs with end_on_timeout=False: it takes the session kept for it.
        with self._session_slot(ending=not end_on_timeout):
            return self._exec(cmd, sent, started, deadline, token, on_stdout, on_stderr)

    def _as_become(self, cmd: str) -> str:
        # The mark goes inside: sudo starts the command with an environment of its own.
        return cmd if self.become is None else through_sudo(self.become, _IN_LOGIN_SHELL, cmd)

    def _exec(
        self,
        cmd: str,
        sent: str,
        started: int,
        deadline: float | None,
        token: str | None,
        on_stdout: Sink | None,
        on_stderr: Sink | None,
    ) -> ExecResult:
        try:
            chan = self._refused_again(lambda: self.transport.open_session(timeout=30))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._unreachable("could not open a session", exc) from exc
        out, err = bytearray(), bytearray()
        try:
            _exec_with_stdin_closed(chan, sent)
            ready = chan.fileno()
            exited: float | None = None  # when the exit status came, the output still open
            warned = False
            while True:
                while chan.recv_ready():
                    data = chan.recv(CHUNK)
                    out += data
                    if on_stdout:
                        on_stdout(data)
                while chan.recv_stderr_ready():
                    data = chan.recv_stderr(CHUNK)
                    err += data
                    if on_stderr:
                        on_stderr(data)
                if chan.eof_received and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if not warned and chan.exit_status_ready():
                    exited = exited or time.monotonic()
                    if time.monotonic() - exited > HELD_OUTPUT_WARNING:
                        warned = True
                        self._warn_held_output(chan.recv_exit_status())
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if wait <= 0:
                    return self._stopped(out, err, started, token)
                if exited is not None and not warned:  # wake up in time to say so
                    wait = max(0.0, min(wait, exited + HELD_OUTPUT_WARNING - time.monotonic()))
                select.select([ready], [], [], wait)
            while not chan.exit_status_ready():
                if deadline is not None and time.monotonic() > deadline:
                    return self._stopped(out, err, started, token)
                if chan.closed:
                    break
                chan.status_event.wait(0.5)
            # paramiko calls a closed channel's exit status ready, and -1: sshd sent one only
            # where it is another number.
            received = chan.exit_status_ready() and chan.recv_exit_status() != -1
            if not received and not self.transport.is_active():
                raise self._unreachable(
                    f"the connection was lost while running {shown_command(self._redact(cmd))}"
                )
            # No exit status on a live connection: the command died of a signal.
            exit_code = chan.recv_exit_status() if chan.exit_status_ready() else None
        except InstanceUnreachable:
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._unreachable(
                f"the connection broke while running {shown_command(self._redact(cmd))}", exc
            ) from exc
        finally:
            chan.close()
        return ExecResult(
            exit_code=exit_code,
            stdout=bytes(out),
            stderr=bytes(err),
            duration_ns=time.monotonic_ns() - started,
        )

    @contextlib.contextmanager
    def sftp(self) -> Iterator[paramiko.SFTPClient]:
        """An SFTP session of this connection, this thread's alone until the block ends.

        paramiko's SFTPClient is not safe for concurrent requests (paramiko#1836: threads
        sharing one deadlock), so a thread that finds every session busy opens another
        channel on the same connection; sessions are kept for reuse.
        """
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:  # a new session: it holds a slot until it is closed
            self._acquire_slot()
            try:
                client = self._open_sftp()
            except BaseException:
                self._slots.release()
                raise
        try:
            yield client
        finally:
            channel = client.get_channel()
            with self._lock:
                keep = not self._closed and channel is not None and not channel.closed
                if keep:
                    self._idle.append(client)
            if not keep:
                client.close()
                self._slots.release()

    def _refused_again(self, open_channel: Callable[[], T]) -> T:
        """Open a channel, asking again for a few seconds while sshd refuses it: a session
        just closed here is freed there only once sshd has read the close, so a new one
        can arrive first and find every session still taken. (paramiko keeps the refusal
        per connection, so a thread opening another channel may take it: this thread then
        sees "Unable to open channel." alone.)"""
        delay = 0.02
        deadline = time.monotonic() + SESSION_RETRY
        while True:
            try:
                return open_channel()
            except paramiko.SSHException as exc:
                refused = isinstance(exc, paramiko.ChannelException) or (
                    str(exc) == "Unable to open channel." and self.transport.is_active()
                )
                if not refused or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _open_sftp(self) -> paramiko.SFTPClient:
        if self.become is not None:
            return self._open_sftp_through_sudo(self.become)
        try:
            client = self._refused_again(
                lambda: paramiko.SFTPClient.from_transport(
                    self.transport, window_size=SFTP_WINDOW, max_packet_size=PACKET
                )
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._unreachable("SFTP is not available", exc) from exc
        if client is None:  # pragma: no cover - paramiko returns None on failure
            raise self._unreachable("SFTP is not available")
        return client

    def _open_sftp_through_sudo(self, user: str) -> paramiko.SFTPClient:
        """An SFTP session served by sftp-server run as ``user`` through sudo."""
        try:
            chan = self._refused_again(
                lambda: self.transport.open_session(
                    window_size=SFTP_WINDOW, max_packet_size=PACKET, timeout=30
                )
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._unreachable("could not open a session", exc) from exc
        try:
            chan.exec_command(through_sudo(user, _SFTP_SERVER))
            return paramiko.SFTPClient(chan)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            said = b""
            with contextlib.suppress(Exception):
                while chan.recv_stderr_ready():
                    said += chan.recv_stderr(4096)
            chan.close()
            if not self.transport.is_active():
                raise self._unreachable("SFTP is not available", exc) from exc
            e = self.endpoint
            raise TransferFailed(
                f"instance {e.instance_id} ({e.slot}): no SFTP session as {self.who}: "
                f"{said.decode(errors='replace').strip() or exc or type(exc).__name__}",
                instance=e.instance_id,
                slot=e.slot,
            ) from exc

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

    def probe(self) -> None:
        """Ask sshd for a sign of life, unless the last question is still unanswered: then,
        past ALIVE_TIMEOUT, close the connection as dead (its channels end at once)."""
        asked = self._asked
        if asked is not None:
            if time.monotonic() - asked > ALIVE_TIMEOUT and self.transport.is_active():
                self.lost = (
                    f"it answered nothing for {ALIVE_TIMEOUT:.0f} s: the instance may have "
                    "crashed, hung or been stopped, or its network failed"
                )
                log.warning("an instance stopped answering", instance=self.endpoint.instance_id,
                            slot=self.endpoint.slot, user=self.who)  # fmt: skip
                self.transport.close()
            return
        self._asked = time.monotonic()

        def ask() -> None:
            # An unknown global request: sshd answers it with a refusal, a sign of life.
            with contextlib.suppress(Exception):
                self.transport.global_request("keepalive@openssh.com", wait=True)
            self._asked = None

        threading.Thread(target=ask, daemon=True, name="precip-alive").start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()
        self.transport.close()

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

    def _warn_held_output(self, exit_code: int) -> None:
        log.warning(
            "the command exited, but a process it started in the background still holds "
            "its output: run() returns when that process ends; send its output elsewhere "
            "to return at once (`… > log 2>&1 &`)",
            instance=self.endpoint.instance_id,
            slot=self.endpoint.slot,
            exit_code=exit_code,
        )

    def _unreachable(self, why: str, exc: BaseException | None = None) -> InstanceUnreachable:
        e = self.endpoint
        if self.lost:  # what closed it says more than the error it left behind
            why = f"{why} ({self.lost})"
        elif exc is not None:
            why = f"{why}: {str(exc) or type(exc).__name__}"
        return InstanceUnreachable(
            f"instance {e.instance_id} ({e.slot}) at {e.host}:{e.port} as {self.who}: {why}",
            instance=e.instance_id,
            slot=e.slot,
        )

    def _stopped(
        self, out: bytearray, err: bytearray, started: int, token: str | None
    ) -> ExecResult:
        duration = time.monotonic_ns() - started
        ended = token is not None and self._end_marked(token)
        return ExecResult(
            exit_code=None,
            stdout=bytes(out),
            stderr=bytes(err),
            duration_ns=duration,
            timed_out=True,
            still_running=not ended,
        )

    def _end_marked(self, token: str) -> bool:
        """End the marked command and everything it started on the instance: TERM, then
        KILL two seconds later. True when nothing of it is left."""
        try:
            done = self.exec(
                _END_MARKED.replace("TOKEN", token), timeout=_END_TIMEOUT, end_on_timeout=False
            )
        except InstanceError as exc:
            log.warning("a timed-out command could not be ended", error=str(exc))
            return False
        return done.exit_code == 0 and not done.timed_out


class SshPool:
    """Connections per (instance id, user), created on demand and reused. Thread-safe."""

    def __init__(
        self,
        pkey: paramiko.PKey,
        *,
        pins: HostKeyPins | None = None,
        connect_timeout: float = 10,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.pkey = pkey
        self.pins = pins or HostKeyPins()
        self.connect_timeout = connect_timeout
        self.redact = redact
        self._connections: dict[tuple[str, str, str | None], Connection] = {}
        self._lock = threading.Lock()
        self._connecting: dict[tuple[str, str, str | None], threading.Lock] = {}
        self._closing = threading.Event()
        self._watcher: threading.Thread | None = None

    def _watch(self) -> None:
        """One thread for the pool: every connection is asked for a sign of life."""
        while not self._closing.wait(ALIVE_INTERVAL):
            with self._lock:
                conns = list(self._connections.values())
            for conn in conns:
                conn.probe()

    def connection(self, endpoint: Endpoint, user: str, *, become: str | None = None) -> Connection:
        """A connection logged in as ``user`` (acting as ``become`` through sudo, if
        given)."""
        key = (endpoint.instance_id, user, become)
        with self._lock:
            gate = self._connecting.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                existing = self._connections.get(key)
            if existing is not None and existing.active and existing.endpoint == endpoint:
                return existing
            if existing is not None:
                existing.close()
            conn = self._connect(endpoint, user, become)
            with self._lock:
                self._connections[key] = conn
                if self._watcher is None and not self._closing.is_set():
                    self._watcher = threading.Thread(
                        target=self._watch, daemon=True, name="precip-alive-watch"
                    )
                    self._watcher.start()
            return conn

    def _connect(self, endpoint: Endpoint, user: str, become: str | None) -> Connection:
        where = (
            f"instance {endpoint.instance_id} ({endpoint.slot}) at {endpoint.host}:{endpoint.port}"
        )
        try:
            sock = socket.create_connection(
                (endpoint.host, endpoint.port), timeout=self.connect_timeout
            )
        except TimeoutError as exc:
            raise InstanceUnreachable(
                f"{where}: cannot connect (nothing answered within {self.connect_timeout:g} s: "
                f"the instance is not up yet, or a security group or firewall drops tcp/"
                f"{endpoint.port} from this machine)",
                instance=endpoint.instance_id,
                slot=endpoint.slot,
            ) from exc
        except OSError as exc:
            raise InstanceUnreachable(
                f"{where}: cannot connect ({exc.strerror or exc})",
                instance=endpoint.instance_id,
                slot=endpoint.slot,
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(
            sock, default_window_size=WINDOW, default_max_packet_size=PACKET
        )
        transport.get_security_options().ciphers = _PREFERRED_CIPHERS
        try:
            transport.start_client(timeout=self.connect_timeout)
            self.pins.check(endpoint, transport.get_remote_server_key())
            transport.auth_publickey(user, self.pkey)
        except paramiko.AuthenticationException as exc:
            transport.close()
            raise LoginRefused(
                f"{where}: login as {user!r} was refused ({exc}); the user may not exist "
                "there, or lacks the precip public key in its authorized_keys",
                instance=endpoint.instance_id,
                slot=endpoint.slot,
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise InstanceUnreachable(
                f"{where}: ssh handshake failed ({exc or type(exc).__name__})",
                instance=endpoint.instance_id,
                slot=endpoint.slot,
            ) from exc
        except BaseException:
            transport.close()
            raise
        return Connection(transport, endpoint, user, become=become, redact=self.redact)

    def drop(self, instance_id: str) -> None:
        """Close every connection to an instance (it is being terminated)."""
        with self._lock:
            doomed = [key for key in self._connections if key[0] == instance_id]
            conns = [self._connections.pop(key) for key in doomed]
        for conn in conns:
            conn.close()

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            conns = list(self._connections.values())
            self._connections.clear()
        for conn in conns:
            conn.close()
