"""Commands and SFTP sessions as another user than the login, through sudo."""

from __future__ import annotations

import shlex
from typing import Final

__all__ = ["SFTP_SERVERS", "through_sudo"]


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
