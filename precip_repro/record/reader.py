"""Streams a run's log, one checked event at a time, in bounded memory.

The reader checks each line (canonical form, hash) and the chain (``seq`` without gaps,
``prev`` = the previous ``hash``). The first bad line raises :class:`RecordCorrupted`
naming its seq and line; a last line without its newline is a torn tail — what a crash in
the middle of a write leaves — and is reported in :attr:`LogReader.torn` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs

from precip_repro.exceptions import RecordCorrupted
from precip_repro.record.events import GENESIS, Event
from precip_repro.record.files import open_regular
from precip_repro.record.lines import parse_line

__all__ = ["MAX_LINE", "LogReader", "TornTail"]

MAX_LINE: Final = 64 << 20
"""The longest line a reader accepts; large content lives in blobs, not in events."""

_BUFFER: Final = 1 << 20


@attrs.frozen(kw_only=True)
class TornTail:
    """Bytes after the last complete line: an event whose write was cut off."""

    line: int
    offset: int
    size: int


class LogReader:
    """Iterate over the intact events of ``events.jsonl``.

    After iteration: ``count`` events were read, ending at byte ``end`` with hash
    ``last_hash``; ``torn`` describes a torn tail (or, in an open run, a write in
    progress), if any. :meth:`more` then reads what a writer appended since, checked
    against the same chain (``show --follow``).
    """

    def __init__(self, path: Path, *, run: str | None = None) -> None:
        self.path = path
        self.run = run
        self.count = 0
        self.end = 0
        self.last_hash = GENESIS
        self.last: Event | None = None
        self.first: Event | None = None
        self.torn: TornTail | None = None

    def __iter__(self) -> Iterator[Event]:
        self.count = self.end = 0
        self.last_hash = GENESIS
        self.first = self.last = None
        return self.more()

    def more(self) -> Iterator[Event]:
        """The events after the last one read (all of them before any): a line still being
        written is left for the next call, and reported in ``torn`` meanwhile."""
        self.torn = None
        with open_regular(self.path, what="event log", run=self.run, buffering=_BUFFER) as f:
            f.seek(self.end)
            lineno = self.count
            while True:
                raw = f.readline(MAX_LINE + 1)
                if not raw:
                    return
                lineno += 1
                if not raw.endswith(b"\n"):
                    if len(raw) > MAX_LINE:
                        raise RecordCorrupted(
                            f"line {lineno} is longer than {MAX_LINE} bytes: not an event",
                            run=self.run,
                            line=lineno,
                            path=self.path,
                        )
                    self.torn = TornTail(line=lineno, offset=self.end, size=len(raw))
                    return
                event = parse_line(raw[:-1], line=lineno, run=self.run, prev=self.last_hash)
                if event.seq != self.count:
                    raise RecordCorrupted(
                        f"event seq {event.seq} (line {lineno}): expected seq {self.count} — "
                        + (
                            "an event is missing or lines were reordered"
                            if event.seq > self.count
                            else "an event is duplicated or lines were reordered"
                        ),
                        run=self.run,
                        seq=event.seq,
                        line=lineno,
                        path=self.path,
                    )
                if event.prev != self.last_hash:
                    raise RecordCorrupted(
                        f"event seq {event.seq} (line {lineno}): 'prev' does not match the "
                        "hash of the event before it (the chain is broken)",
                        run=self.run,
                        seq=event.seq,
                        line=lineno,
                        path=self.path,
                    )
                self.count += 1
                self.end += len(raw)
                self.last_hash = event.hash
                self.last = event
                if self.first is None:
                    self.first = event
                yield event
