"""How what a run did is shown in messages: short enough to read, never a secret."""

from __future__ import annotations

from typing import Final

__all__ = ["SHOWN_COMMAND", "shown_command"]

SHOWN_COMMAND: Final = 240
"""Past this many characters a command is shown in a message by its head and tail: a
generated script of thousands of lines would bury what the message says about it."""


def shown_command(cmd: str) -> str:
    """``cmd`` quoted for a message, its middle left out when it is long (the record and the
    exception's ``cmd`` keep it whole). Redact before: a secret cut in two is found by
    nothing."""
    if len(cmd) <= SHOWN_COMMAND:
        return repr(cmd)
    head, tail = cmd[: SHOWN_COMMAND * 2 // 3], cmd[-(SHOWN_COMMAND // 3) :]
    left_out = len(cmd) - len(head) - len(tail)
    return f"{head!r} …{left_out:,} characters… {tail!r}"
