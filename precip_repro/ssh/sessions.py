"""The sessions (channels) of one logged-in ssh connection.

- They are counted, so that threads sharing a connection never open more than sshd allows
  (``MaxSessions``); one is kept for ending a timed-out command.
- SFTP sessions are kept for reuse, each one thread's alone while in use; one run as
  another user is served by sftp-server through sudo.
- A channel sshd refuses while it has not yet freed a closed one is asked for again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final, TypeVar

import paramiko

from precip_repro.exceptions import InstanceUnreachable, TransferFailed
from precip_repro.ssh.endpoint import Endpoint
from precip_repro.ssh.flow import PACKET, SFTP_WINDOW
from precip_repro.ssh.sudo import _SFTP_SERVER, through_sudo

__all__ = ["MAX_SESSIONS", "SESSION_RETRY", "Sessions"]


MAX_SESSIONS: Final = 10
"""Sessions (channels) sshd allows on one connection: OpenSSH's default ``MaxSessions``,
which stock cloud images keep. One more is refused ("administratively prohibited")."""


SESSION_RETRY: Final = 5.0
"""Seconds a session sshd refuses is asked for again (see ``Connection._refused_again``)."""


T = TypeVar("T")


class Sessions:
    """A logged-in ssh connection's transport and sessions: the base of
    :class:`~precip_repro.ssh.connection.Connection`, which adds commands, transfers and
    the sign of life asked of it."""

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

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()
        self.transport.close()

    def _unreachable(
        self,
        why: str,
        exc: BaseException | None = None,
        kind: type[InstanceUnreachable] = InstanceUnreachable,
    ) -> InstanceUnreachable:
        e = self.endpoint
        if self.lost:  # what closed it says more than the error it left behind
            why = f"{why} ({self.lost})"
        elif exc is not None:
            why = f"{why}: {str(exc) or type(exc).__name__}"
        return kind(
            f"instance {e.instance_id} ({e.slot}) at {e.host}:{e.port} as {self.who}: {why}",
            instance=e.instance_id,
            slot=e.slot,
        )
