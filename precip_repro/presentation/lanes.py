"""The HTML report's timeline drawn from the model: one lane per instance, a box for its
boot and for each command, a tick for each file moved. Geometry only — where each mark
goes and what it says on hover —; the template writes the SVG (and escapes its text).
"""

from __future__ import annotations

from typing import Final

import attrs

from precip_repro.presentation.model import CommandRow, FileRow, ReportModel
from precip_repro.timeline import format_duration

__all__ = ["Lane", "Mark", "Timeline", "timeline"]

WIDTH: Final = 1000
LANE: Final = 22
LABEL: Final = 150

COLOURS: Final = {
    "boot": "#bbb",
    "terminated": "#555",
    "command": "#1e6bd6",
    "command failed": "#d32f2f",
    "transfer put": "#2e7d32",
    "transfer got": "#7b1fa2",
}


@attrs.define(kw_only=True)
class Mark:
    kind: str
    """Its CSS class: ``boot``, ``terminated``, ``command``, ``command failed``, ``transfer``."""
    x: str
    y: int
    width: str
    height: int
    fill: str
    title: str


@attrs.define(kw_only=True)
class Lane:
    slot: str
    y: int
    marks: list[Mark]


@attrs.define(kw_only=True)
class Timeline:
    width: int
    height: int
    label_x: int
    line_end: int
    lanes: list[Lane]
    end_label: str


@attrs.define(kw_only=True)
class _Span:
    """A command or a transfer in pixels, before marks less than a pixel apart are drawn
    as one (ten thousand commands in a thousand pixels: no one can point at one of them)."""

    kind: str
    start: float
    end: float
    call: int
    about: CommandRow | FileRow
    count: int = 1
    last_call: int = 0

    def absorbs(self, other: _Span) -> bool:
        return (
            other.kind == self.kind
            and self.kind != "command failed"  # each failure stays a mark of its own
            and other.start - self.end < 1.0
        )

    def mark(self, y: int) -> Mark:
        if self.count > 1:
            what = "commands" if self.kind == "command" else f"files moved ({self.kind[9:]})"
            title = f"{self.count} {what}, #{self.call} to #{self.last_call}"
        elif isinstance(self.about, CommandRow):
            title = (
                f"#{self.call} {self.about.cmd} → exit {self.about.exit_code} in "
                f"{self.about.duration}"
            )
        else:
            title = f"{self.about.kind} {self.about.remote_path} ({self.about.content.size} bytes)"
        kind = "transfer" if self.kind.startswith("transfer") else self.kind
        command = kind.startswith("command")
        return Mark(
            kind=kind, x=f"{self.start:.1f}", y=y + 4 if command else y + 1,
            width=f"{max(1.0 if command else 3.0, self.end - self.start):.1f}",
            height=12 if command else 18, fill=COLOURS[self.kind], title=title,
        )  # fmt: skip


def timeline(model: ReportModel) -> Timeline:
    start, end = model.start_ns, max(model.end_ns, model.start_ns + 1)
    scale = WIDTH / (end - start)

    def x(ns: int) -> float:
        return LABEL + (ns - start) * scale

    lanes: dict[str, Lane] = {}
    spans: dict[str, list[_Span]] = {}
    for index, inst in enumerate(model.instances):  # in slot order (e1.p1.2 before e1.p1.10)
        y = 5 + index * LANE
        boot_end = inst.ready_ns or inst.terminated_ns or model.end_ns
        marks = [
            Mark(
                kind="boot", x=f"{x(inst.launched_ns):.1f}", y=y + 4,
                width=f"{max(1.0, (boot_end - inst.launched_ns) * scale):.1f}", height=12,
                fill=COLOURS["boot"],
                title=f"boot {inst.slot}: {format_duration(boot_end - inst.launched_ns)}",
            )
        ]  # fmt: skip
        if inst.terminated_ns:
            marks.append(
                Mark(
                    kind="terminated", x=f"{x(inst.terminated_ns):.1f}", y=y + 2, width="2",
                    height=16, fill=COLOURS["terminated"], title="terminated",
                )
            )  # fmt: skip
        lanes[inst.slot] = Lane(slot=inst.slot, y=y, marks=marks)
        spans[inst.slot] = []
    for command in model.commands:
        found = spans.get(command.slot)
        if found is not None:
            begin = x(command.end_ns - command.duration_ns)
            found.append(
                _Span(
                    kind="command failed" if command.failed else "command", start=begin,
                    end=begin + command.duration_ns * scale, call=command.call, about=command,
                )
            )  # fmt: skip
    for moved in model.files:
        found = spans.get(moved.slot)
        if found is not None:
            at = x(moved.at_ns)
            found.append(
                _Span(
                    kind=f"transfer {moved.kind}", start=at, end=at + 3, call=moved.call,
                    about=moved,
                )
            )  # fmt: skip
    for slot, found in spans.items():
        lanes[slot].marks.extend(span.mark(lanes[slot].y) for span in _merged(found))
    return Timeline(
        width=LABEL + WIDTH + 10,
        height=LANE * max(len(lanes), 1) + 30,
        label_x=LABEL,
        line_end=LABEL + WIDTH,
        lanes=list(lanes.values()),
        end_label=format_duration(end - start),
    )


def _merged(spans: list[_Span]) -> list[_Span]:
    out: list[_Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        last = out[-1] if out else None
        if last is not None and last.absorbs(span):
            last.end = max(last.end, span.end)
            last.count += 1
            last.last_call = span.call
        else:
            span.last_call = span.call
            out.append(span)
    return out
