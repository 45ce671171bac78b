"""How what a run did is shown in messages: short enough to read, never a secret."""

from __future__ import annotations

from typing import Final

__all__ = ["NO_EXIT_STATUS", "SHOWN_COMMAND", "STDERR_TAIL", "shown_command", "shown_difference"]

SHOWN_COMMAND: Final = 240
"""Past this many characters a command is shown in a message by its head and tail: a
generated script of thousands of lines would bury what the message says about it."""


STDERR_TAIL: Final = 400
"""How much of a failed command's stderr its error shows (its end: where the error is)."""
NO_EXIT_STATUS: Final = -1
"""The exit code of a command whose session ended without one (paramiko's, as the seed's)."""


def shown_command(cmd: str) -> str:
    """``cmd`` quoted for a message, its middle left out when it is long (the record and the
    exception's ``cmd`` keep it whole). Redact before: a secret cut in two is found by
    nothing."""
    if len(cmd) <= SHOWN_COMMAND:
        return repr(cmd)
    head, tail = cmd[: SHOWN_COMMAND * 2 // 3], cmd[-(SHOWN_COMMAND // 3) :]
    left_out = len(cmd) - len(head) - len(tail)
    return f"{head!r} …{left_out:,} characters… {tail!r}"


def shown_difference(a: str, b: str) -> tuple[str, str]:
    """Two texts that differ, quoted for a message side by side: whole when short, else
    each around the first place they differ (where the difference of two long generated
    commands is, not their common head)."""
    if len(a) <= SHOWN_COMMAND and len(b) <= SHOWN_COMMAND:
        return repr(a), repr(b)
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    at = min(len(a), len(b)) if first is None else first
    start = max(0, at - SHOWN_COMMAND // 4)

    def around(text: str) -> str:
        end = min(len(text), at + SHOWN_COMMAND // 2)
        before = f"…{start:,} characters… " if start else ""
        after = f" …{len(text) - end:,} characters…" if end < len(text) else ""
        return f"{before}{text[start:end]!r}{after}"

    return around(a), around(b)
