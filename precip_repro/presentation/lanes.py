"""The HTML report's timeline drawn from the model: one lane per instance, a box for its
boot and for each command, a tick for each file moved. Geometry only — where each mark
goes and what it says on hover —; the template writes the SVG (and escapes its text).
"""

from __future__ import annotations

from typing import Final

import attrs

from precip_repro.presentation.model import ReportModel
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


def timeline(model: ReportModel) -> Timeline:
    start, end = model.start_ns, max(model.end_ns, model.start_ns + 1)
    scale = WIDTH / (end - start)

    def x(ns: int) -> str:
        return f"{LABEL + (ns - start) * scale:.1f}"

    def width(ns: int) -> str:
        return f"{max(1.0, ns * scale):.1f}"

    lanes: dict[str, Lane] = {}
    for index, inst in enumerate(model.instances):  # in slot order (e1.p1.2 before e1.p1.10)
        y = 5 + index * LANE
        boot_end = inst.ready_ns or inst.terminated_ns or model.end_ns
        marks = [
            Mark(
                kind="boot", x=x(inst.launched_ns), y=y + 4,
                width=width(boot_end - inst.launched_ns), height=12, fill=COLOURS["boot"],
                title=f"boot {inst.slot}: {format_duration(boot_end - inst.launched_ns)}",
            )
        ]  # fmt: skip
        if inst.terminated_ns:
            marks.append(
                Mark(
                    kind="terminated", x=x(inst.terminated_ns), y=y + 2, width="2", height=16,
                    fill=COLOURS["terminated"], title="terminated",
                )
            )  # fmt: skip
        lanes[inst.slot] = Lane(slot=inst.slot, y=y, marks=marks)
    for command in model.commands:
        lane = lanes.get(command.slot)
        if lane is None:
            continue
        kind = "command failed" if command.failed else "command"
        lane.marks.append(
            Mark(
                kind=kind, x=x(command.end_ns - command.duration_ns), y=lane.y + 4,
                width=width(command.duration_ns), height=12, fill=COLOURS[kind],
                title=f"#{command.call} {command.cmd} → exit {command.exit_code} in "
                f"{command.duration}",
            )
        )  # fmt: skip
    for moved in model.files:
        lane = lanes.get(moved.slot)
        if lane is None:
            continue
        lane.marks.append(
            Mark(
                kind="transfer", x=x(moved.at_ns), y=lane.y + 1, width="3", height=18,
                fill=COLOURS[f"transfer {moved.kind}"],
                title=f"{moved.kind} {moved.remote_path} ({moved.content.size} bytes)",
            )
        )  # fmt: skip
    return Timeline(
        width=LABEL + WIDTH + 10,
        height=LANE * max(len(lanes), 1) + 30,
        label_x=LABEL,
        line_end=LABEL + WIDTH,
        lanes=list(lanes.values()),
        end_label=format_duration(end - start),
    )
