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
from precip_repro.record.signature import read_signature
from precip_repro.record.store import EVENTS, Checkpoint, read_checkpoint

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
    started_ns: int | None = None
    script: str | None = None
    """The experiment script's path as recorded."""
    replay_of: str | None = None
    """The run a replay re-executed."""
    verdict: str | None = None
    """A replay's verdict (``reproduced``, ``diverged``) and its steps, as its last note
    says; None for a run that is not a replay, or a replay that judged no step."""
    digest: str | None = None
    """The checkpoint's digest (a finished run's)."""
    signer: str | None = None
    """The fingerprint of the key that signed the checkpoint."""
    pushed: bool | None = None
    """In a shared store (S3): whether the run is in it (False: in this machine's cache
    only, not pushed yet); None in a directory of runs."""

    @property
    def name(self) -> str:
        """The name the run was given (the middle of its id)."""
        parts = self.run.split("-")
        return "-".join(parts[1:-1]) if len(parts) > 2 else self.run


def _first_line(path: Path) -> dict[str, Any] | None:
    with open_regular(path, what="event log", run=None) as f:
        raw = f.readline(_TAIL)
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _tail_lines(path: Path) -> list[dict[str, Any]]:
    """The events in the last bytes of the log that parse as JSON objects, in order."""
    with open_regular(path, what="event log", run=None) as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    found = []
    for raw in tail.split(b"\n"):
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict):
            found.append(obj)
    return found


def _last_line(path: Path) -> dict[str, Any] | None:
    lines = _tail_lines(path)
    return lines[-1] if lines else None


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


def _started(head: dict[str, Any] | None) -> dict[str, Any]:
    """What ``ls`` shows of ``run.started``: its time, the script, the source of a replay."""
    data = head.get("data") if head and head.get("type") == "run.started" else None
    if not isinstance(data, dict):
        return {}
    replay_of = data.get("replay_of")
    source = replay_of.get("run") if isinstance(replay_of, dict) else None
    script = data.get("script_path")
    return {
        "started_ns": _ts_ns(head.get("ts")) if head else None,
        "script": script if isinstance(script, str) else None,
        "replay_of": source if isinstance(source, str) else None,
    }


def _verdict(lines: list[dict[str, Any]]) -> str | None:
    """A replay's verdict, from the note it writes last."""
    for obj in reversed(lines):
        data = obj.get("data")
        if obj.get("type") == "note" and isinstance(data, dict):
            fields = data.get("fields")
            if isinstance(fields, dict) and isinstance(fields.get("replay_verdict"), str):
                steps = fields.get("steps")
                counts = (
                    ", ".join(f"{n} {v}" for v, n in sorted(steps.items()))
                    if isinstance(steps, dict)
                    else ""
                )
                if counts and isinstance(fields.get("of"), int):
                    counts += f" of {fields['of']}"
                return (
                    f"{fields['replay_verdict']} ({counts})" if counts else fields["replay_verdict"]
                )
    return None


def _signer(run_dir: Path, checkpoint: Checkpoint) -> str | None:
    try:
        signature = read_signature(run_dir, checkpoint, run=run_dir.name)
    except RecordError:
        return "BAD"
    return signature.fingerprint if signature is not None and signature.checked else None


def summarize(run_dir: Path) -> RunSummary:
    events_path = run_dir / EVENTS
    try:
        checkpoint = read_checkpoint(run_dir)
        if checkpoint is not None:
            started = _started(_first_line(events_path))
            lines = _tail_lines(events_path)
            last = lines[-1] if lines else {}
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
                # Only a replay's own note says its verdict (a script's note may look alike).
                verdict=_verdict(lines) if started.get("replay_of") else None,
                digest=checkpoint.digest,
                signer=_signer(run_dir, checkpoint),
                **started,
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
            **_started(head),
        )
    except (OSError, RecordError):
        return RunSummary(
            run=run_dir.name, path=run_dir, status="unreadable", events=None, duration_ns=None
        )
