"""The JSON documents commands print with ``--json`` (docs/json.md): one per command, each
with its format ``version`` and a strict schema in ``docs/json/``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any, Final

__all__ = ["FORMAT", "iso_ns", "write_document"]

FORMAT: Final = 1
"""The version of every document this release writes (``ls``, ``show``, ``verify``,
``recover``, ``gc``, ``run``, ``precip-replay``): a change that removes or retypes a key makes
the command's next version."""


def write_document(document: dict[str, Any], out: IO[str] | None = None) -> None:
    """``document`` as indented JSON and a newline, on ``out`` (stdout)."""
    out = out or sys.stdout
    json.dump(document, out, indent=2, ensure_ascii=False)
    out.write("\n")
    out.flush()


def iso_ns(ns: int | None) -> str | None:
    """Nanoseconds since the epoch as RFC 3339 UTC (``…Z``), as records write times."""
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")
