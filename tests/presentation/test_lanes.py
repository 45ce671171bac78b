"""The timeline's marks: one per command while a reader can point at each, one for a run of
commands closer than a pixel, and every failure a mark of its own."""

from __future__ import annotations

from precip_repro.presentation.lanes import timeline
from precip_repro.presentation.model import (
    CommandRow,
    Content,
    InstanceRow,
    Integrity,
    ReportModel,
)

SECOND = 1_000_000_000


def report(commands: list[CommandRow], end_ns: int) -> ReportModel:
    instance = InstanceRow(
        slot="e1.p1.0", instance_ids="i-1", image="default", instance_type="m1.small",
        boot="0.1s", addresses="-", host_key="-", facts=[], launched_ns=0, ready_ns=SECOND // 10,
        terminated_ns=None,
    )  # fmt: skip
    return ReportModel(
        run="r", integrity=Integrity(state="intact", text="INTACT"), header=[],
        instances=[instance], script=None, calls=[], commands=commands, files=[], steps=[],
        notes=[], start_ns=0, end_ns=end_ns,
    )  # fmt: skip


def command(call: int, end_ns: int, *, exit_code: int = 0) -> CommandRow:
    out = Content(size=0, shown="(empty)", sha256=None)
    return CommandRow(
        call=call, slot="e1.p1.0", cmd=f"step {call}", summary=None, exit_code=exit_code,
        failed=exit_code != 0, duration="0.001s", duration_ns=1_000_000, end_ns=end_ns,
        stdout=out, stderr=out,
    )  # fmt: skip


def test_commands_a_reader_can_tell_apart_each_get_a_mark_with_their_own_title():
    commands = [command(n, n * SECOND) for n in range(1, 5)]
    (lane,) = timeline(report(commands, 5 * SECOND)).lanes
    titles = [mark.title for mark in lane.marks if mark.kind == "command"]
    assert titles == [f"#{n} step {n} → exit 0 in 0.001s" for n in range(1, 5)]


def test_commands_closer_than_a_pixel_are_one_mark_but_a_failure_stays_its_own():
    # 3,000 commands in a 1,000-pixel lane, one of them failing half way.
    commands = [command(n, SECOND + n * 1_000_000, exit_code=3 if n == 1500 else 0)
                for n in range(1, 3001)]  # fmt: skip
    (lane,) = timeline(report(commands, 5 * SECOND)).lanes
    marks = [(mark.kind, mark.title) for mark in lane.marks if mark.kind.startswith("command")]
    assert marks == [
        ("command", "1499 commands, #1 to #1499"),
        ("command failed", "#1500 step 1500 → exit 3 in 0.001s"),
        ("command", "1500 commands, #1501 to #3000"),
    ]
