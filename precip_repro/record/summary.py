"""A quick summary of a run for listings: status, events, duration — without verifying.

``ls`` must stay fast over a store of many large runs, so this reads the checkpoint and the
first and last lines only (and counts lines of unfinished runs). ``verify`` is the check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

import attrs

from precip_repro.exceptions import RecordError
from precip_repro.record.events import parse_ts
from precip_repro.record.files import open_regular
from precip_repro.record.journal import is_locked
from precip_repro.record.store import EVENTS, read_checkpoint

__all__ = ["RunSummary", "summarize"]

_TAIL: Final = 1 << 16


@attrs.frozen(kw_only=True)
class RunSummary:
    """``status`` is the run.finished status, or ``open``, ``abandoned`` or ``unreadable``."""

    run: str
    path: Path
    status: str
    events: int | None
    duration_ns: int | None


def _first_line(path: Path) -> dict[str, Any] | None:
    with open_regular(path, what="event log", run=None) as f:
        raw = f.readline(_TAIL)
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _last_line(path: Path) -> dict[str, Any] | None:
    with open_regular(path, what="event log", run=None) as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    lines = [line for line in tail.split(b"\n") if line]
    for raw in reversed(lines):
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        return obj if isinstance(obj, dict) else None
    return None


def _count_lines(path: Path) -> int:
    count = 0
    with open_regular(path, what="event log", run=None) as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def _ts_ns(ts: object) -> int | None:
    if not isinstance(ts, str):
        return None
    try:
        return parse_ts(ts)
    except ValueError:
        return None


def summarize(run_dir: Path) -> RunSummary:
    events_path = run_dir / EVENTS
    try:
        checkpoint = read_checkpoint(run_dir)
        if checkpoint is not None:
            last = _last_line(events_path) or {}
            found = last.get("data")
            data: dict[str, Any] = found if isinstance(found, dict) else {}
            status = data.get("status") if last.get("type") == "run.finished" else None
            duration = data.get("duration_ns")
            return RunSummary(
                run=run_dir.name,
                path=run_dir,
                status=status if isinstance(status, str) else "unreadable",
                events=checkpoint.events,
                duration_ns=duration if isinstance(duration, int) else None,
            )
        head, tail = _first_line(events_path), _last_line(events_path)
        if head is None and events_path.stat().st_size > 0:
            # Not even a first event to read: only `verify` can say more.
            return RunSummary(
                run=run_dir.name, path=run_dir, status="unreadable", events=None, duration_ns=None
            )
        start = _ts_ns(head.get("ts")) if head else None
        end = _ts_ns(tail.get("ts")) if tail else None
        return RunSummary(
            run=run_dir.name,
            path=run_dir,
            status="open"
            if is_locked(events_path)
            else "unsealed"
            if tail is not None and tail.get("type") == "run.finished"
            else "abandoned",
            events=_count_lines(events_path),
            duration_ns=end - start if start is not None and end is not None else None,
        )
    except (OSError, RecordError):
        return RunSummary(
            run=run_dir.name, path=run_dir, status="unreadable", events=None, duration_ns=None
        )
