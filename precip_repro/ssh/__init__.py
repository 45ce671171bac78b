"""SSH to instances over paramiko: pooled connections, pinned host keys, exec, SFTP.

- ``pool``: one connection per (instance, user), reused and watched for signs of life.
- ``hostkeys``: host keys pinned per instance id at first contact (``endpoint``: where an
  instance answers).
- ``connection``: a logged-in connection, made of its ``sessions`` (counted against what
  sshd allows), ``commands`` and ``transfers``; ``sudo`` runs them as another user.
- ``flow``: the sizes data moves in, and the callback each chunk is handed to.

The tunables a test may patch (``HELD_OUTPUT_WARNING``, ``ALIVE_INTERVAL``…) are read from
the module that defines them, not from here.
"""

from __future__ import annotations

from precip_repro.ssh.commands import MAX_COMMAND, ExecResult
from precip_repro.ssh.connection import Connection
from precip_repro.ssh.endpoint import Endpoint
from precip_repro.ssh.flow import Sink
from precip_repro.ssh.hostkeys import HostKeyPins
from precip_repro.ssh.pool import SshPool
from precip_repro.ssh.transfers import special_kind

__all__ = [
    "Connection",
    "Endpoint",
    "ExecResult",
    "HostKeyPins",
    "MAX_COMMAND",
    "Sink",
    "SshPool",
    "special_kind",
]
