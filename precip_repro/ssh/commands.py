"""Commands on a connection.

``exec`` reads stdout and stderr as they arrive (no deadlock on large output), hands each
chunk to the caller (to hash and store in the same pass) and keeps the exact bytes. Its
stdin is closed with the request; past its timeout, what it started is ended on the
instance.
"""

from __future__ import annotations

import contextlib
import secrets
import select
import time
from typing import Any, Final

import attrs
import paramiko

from precip_repro.exceptions import InstanceError, InstanceUnreachable, SessionNotOpened
from precip_repro.logs import get_logger
from precip_repro.messages import shown_command
from precip_repro.ssh.flow import CHUNK, Sink
from precip_repro.ssh.sessions import Sessions
from precip_repro.ssh.sudo import _IN_LOGIN_SHELL, through_sudo

__all__ = ["HELD_OUTPUT_WARNING", "MAX_COMMAND", "Commands", "ExecResult"]


# The ssh layer logs under the one name it had as a single module: applications may
# filter on it.
log = get_logger("precip_repro.ssh")


HELD_OUTPUT_WARNING: Final = 5.0
"""Seconds after a command's exit while a background process it started keeps its output
open (``nohup server &``: without a terminal, nohup leaves output where it was) before a
warning says why run() has not returned (OpenSSH's ssh waits the same way)."""


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


class Commands(Sessions):
    """Running commands on a connection (a part of
    :class:`~precip_repro.ssh.connection.Connection`)."""

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
            raise self._unreachable("could not open a session", exc, SessionNotOpened) from exc
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
            if not received and self.transport.is_active():
                # Closed without an exit status: the command died of a signal — or the
                # connection did, and paramiko's thread has not read the end yet. sshd
                # answers a global request on a live connection; on a dead one the
                # transport ends before it returns.
                with contextlib.suppress(Exception):
                    self.transport.global_request("keepalive@openssh.com", wait=True)
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
            # On a connection that broke, closing the channel has no one left to tell: the
            # error it raises (EOFError, a broken pipe — depending on whether paramiko saw
            # the end first) must not hide why the command failed.
            with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
                chan.close()
        return ExecResult(
            exit_code=exit_code,
            stdout=bytes(out),
            stderr=bytes(err),
            duration_ns=time.monotonic_ns() - started,
        )

    def _warn_held_output(self, exit_code: int) -> None:
        log.warning(
            "the command exited, but a process it started in the background still holds "
            "its output: run() returns when that process ends; send its output elsewhere "
            "to return at once (`… > log 2>&1 &`)",
            instance=self.endpoint.instance_id,
            slot=self.endpoint.slot,
            exit_code=exit_code,
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
