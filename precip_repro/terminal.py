"""Progress shown at the terminal, for both CLIs.

On a terminal, a live table drawn with rich: each instance being waited for (what it waits
for, for how long), transfers under way (bytes, rate), a replay's step n of N and its
verdicts so far, the verification of a run. Elsewhere (stderr piped to a file or CI), plain
lines, one per change worth keeping in a log. Nothing with ``--quiet``. Colours follow
rich, which honours ``NO_COLOR``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Final

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from precip_repro import progress
from precip_repro.progress import (
    InstanceProgress,
    ProgressEvent,
    StepProgress,
    TransferProgress,
    VerifyProgress,
)

__all__ = ["PlainLines", "ProgressBoard", "showing_progress"]

_KEEP_DONE: Final = 2.0
"""Seconds a finished transfer stays on the board."""


def _bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover - the loop returns


class ProgressBoard:
    """What is under way, from progress events; renders as a rich table. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.instances: dict[str, InstanceProgress] = {}
        self.transfers: dict[tuple[str, str, str], tuple[TransferProgress, float]] = {}
        self.step: StepProgress | None = None
        self.verifying: VerifyProgress | None = None

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if isinstance(event, InstanceProgress):
                self.instances[event.slot] = event
            elif isinstance(event, TransferProgress):
                key = (event.slot, event.direction, event.path)
                self.transfers[key] = (event, time.monotonic())
            elif isinstance(event, StepProgress):
                self.step = event
            elif isinstance(event, VerifyProgress):
                self.verifying = None if event.finished else event

    def __rich__(self) -> RenderableType:
        with self._lock:
            parts: list[RenderableType] = []
            waiting = [i for i in self.instances.values() if i.state != "ready"]
            if waiting or self.instances:
                ready = sum(1 for i in self.instances.values() if i.state == "ready")
                table = Table(box=None, show_header=False, pad_edge=False)
                for row in sorted(waiting, key=lambda i: i.slot):
                    style = "red" if row.state == "failed" else "yellow"
                    table.add_row(
                        row.slot, row.instance_id, Text(row.state, style=style),
                        f"{row.elapsed_s:.0f} s", row.detail[:80],
                    )  # fmt: skip
                done = "green" if ready == len(self.instances) else "yellow"
                title = Text(f"instances: {ready} of {len(self.instances)} ready", f"bold {done}")
                parts += [title, table] if waiting else [title]
            now = time.monotonic()
            moving = [(t, at) for t, at in self.transfers.values()
                      if not t.finished or now - at < _KEEP_DONE]  # fmt: skip
            if moving:
                table = Table(box=None, show_header=False, pad_edge=False)
                for moved, _ in moving:
                    of = f" of {_bytes(moved.total)}" if moved.total is not None else ""
                    table.add_row(
                        moved.direction, moved.slot, moved.path,
                        f"{_bytes(moved.done)}{of}", f"{_bytes(moved.rate)}/s",
                        Text("done", "green") if moved.finished else "",
                    )  # fmt: skip
                parts += [Text("transfers", "bold"), table]
            if self.step is not None:
                counts = ", ".join(f"{n} {v}" for v, n in sorted(self.step.verdicts.items()))
                parts.append(Text(f"step {self.step.step} of {self.step.of} ({counts})", "bold"))
            if self.verifying is not None:
                v = self.verifying
                parts.append(Text(f"verifying {v.run}: {_bytes(v.done)} of {_bytes(v.total)}"))
            return Group(*parts)


class PlainLines:
    """Progress as plain lines, one per change worth a line in a log."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._states: dict[str, str] = {}

    def __call__(self, event: ProgressEvent) -> None:
        line = self._line(event)
        if line is not None:
            with self._lock:
                self._stream.write(line + "\n")
                self._stream.flush()

    def _line(self, event: ProgressEvent) -> str | None:
        if isinstance(event, InstanceProgress):
            key = f"{event.slot} {event.instance_id}"
            with self._lock:
                if self._states.get(key) == event.state:
                    return None  # a new detail only: the state changes are the log
                self._states[key] = event.state
            detail = f" ({event.detail})" if event.state != "ready" else ""
            after = f"after {event.elapsed_s:.1f} s"
            return f"{event.slot} {event.instance_id}: {event.state} {after}{detail}"
        if isinstance(event, TransferProgress) and event.finished:
            return (
                f"{event.direction} {event.slot} {event.path}: {_bytes(event.done)} in "
                f"{event.elapsed_s:.1f} s ({_bytes(event.rate)}/s)"
            )
        if isinstance(event, VerifyProgress) and event.finished:
            return f"verified {event.run}: {event.events} events, {_bytes(event.total)}"
        return None  # a replay prints its steps itself


@contextlib.contextmanager
def showing_progress(*, quiet: bool = False, stream: IO[str] | None = None) -> Iterator[None]:
    """Show progress on ``stream`` (stderr) while the block runs: drawn live on a terminal,
    as plain lines elsewhere, not at all when ``quiet``."""
    if quiet:
        yield
        return
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        with progress.listening(PlainLines(out)):
            yield
        return
    board = ProgressBoard()
    console = Console(file=out)
    # What the script prints goes above the live table where it shares the terminal (and
    # stays where it was sent when stdout is piped).
    live = Live(board, console=console, transient=True, refresh_per_second=4,
                redirect_stdout=sys.stdout.isatty(), redirect_stderr=out is sys.stderr)  # fmt: skip
    with progress.listening(board), live:
        yield
