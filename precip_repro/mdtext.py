"""Markdown that shows recorded text as it is: a command, an output or a note holds
whatever the experiment wrote — backticks, pipes, ```` ``` ````, ``<script>`` — and must
neither end the code span or fence around it, split a table row, nor turn into markup.
(CommonMark rules, and GitHub's for tables.)
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["code", "fenced", "prose"]

_BACKTICKS: Final = re.compile(r"`+")
_INLINE: Final = re.compile(r"([\\`*\[\]<>|~&]|(?<![^\W_])_|_(?![^\W_]))")
"""What is markup anywhere in a line (links need ``[``; ``!``, ``(`` are harmless without;
a lone ``_`` between letters or digits, as in ``memory_kb``, neither opens nor closes
emphasis)."""
_LEADING: Final = re.compile(r"^(\s*)([#>+\-]|\d+[.)](?=\s|$))")
"""What is markup at the start of a line (a heading, a quote, a list: ``1.`` only before a
space, so that ``0.5s`` is left as it is)."""
_PLAIN: Final = re.compile(r"[^\n\\`*\[\]<>|~&_]*")
"""Text none of whose characters is ever markup (its start aside): most values, checked in
one step."""


def _longest_backticks(text: str) -> int:
    if "`" not in text:
        return 0
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)


def code(text: str, *, in_table: bool = False) -> str:
    """An inline code span holding ``text``: fenced by more backticks than any run inside,
    line breaks shown as ⏎, and ``|`` escaped where a table would split on it. Empty text
    (no code span can hold it) is ``(empty)``."""
    if not text:
        return "(empty)"
    text = text.replace("\n", "⏎")
    if in_table:
        text = text.replace("|", "\\|")
    fence = "`" * (_longest_backticks(text) + 1)
    # CommonMark strips one space from each end when both have one: pad to keep them.
    spaced = text[:1] == " " and text[-1:] == " " and bool(text.strip())
    pad = " " if text.startswith("`") or text.endswith("`") or spaced else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def fenced(text: str) -> list[str]:
    """A fenced code block holding ``text`` (as lines): its fence longer than any run of
    backticks inside, so that no line of it closes the block."""
    fence = "`" * max(3, _longest_backticks(text) + 1)
    return [fence, text, fence]


def prose(text: str) -> str:
    """``text`` as plain words: every character Markdown would read as markup escaped (and
    ``|``, so it also fits a table cell), line breaks shown as ⏎."""
    if _PLAIN.fullmatch(text) and not _LEADING.match(text):
        return text
    escaped = _INLINE.sub(r"\\\1", text.replace("\n", " ⏎ "))
    return _LEADING.sub(lambda m: f"{m.group(1)}{m.group(2)[:-1]}\\{m.group(2)[-1]}", escaped)
