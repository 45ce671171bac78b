"""A logged-in ssh connection to one instance: its sessions, commands and transfers, and
the sign of life asked of it, which closes it when the instance stops answering."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Final

from precip_repro.logs import get_logger
from precip_repro.ssh.commands import Commands
from precip_repro.ssh.transfers import Transfers

__all__ = ["ALIVE_TIMEOUT", "Connection"]


# The ssh layer logs under the one name it had as a single module: applications may
# filter on it.
log = get_logger("precip_repro.ssh")


ALIVE_TIMEOUT: Final = 45.0
"""A connection's sign of life, asked every ``ALIVE_INTERVAL`` seconds (pool.py), left
unanswered for ALIVE_TIMEOUT closes it, so that what waits on it — a command without a
timeout, a transfer — fails as unreachable, naming the instance, instead of hanging until
TCP gives up (a quarter of an hour) or for ever (an instance that hangs or is stopped while
its kernel still acknowledges)."""


class Connection(Commands, Transfers):
    """A logged-in ssh connection to one instance as one user — or, with ``become``, as
    the login ``user`` acting as ``become`` through sudo: every command and transfer on it
    runs as ``become``.

    Its sessions are counted, so that threads sharing it never open more than sshd allows:
    a command or transfer beyond that waits for one to end (an idle SFTP session is closed
    to make room), and one session is kept for ending a timed-out command.
    """

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
