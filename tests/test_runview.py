"""Reading runs into views: verified in one pass here, or in forked children for large logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from precip_repro.loading import ViewBuilder, load_run, load_verified
from precip_repro.normalize import Normalizer
from precip_repro.record import Event, LogReader, Run, RunStore
from precip_repro.record.events import GENESIS, format_ts
from precip_repro.record.lines import seal
from precip_repro.record.payloads import InstanceLaunched, InstanceReady
from precip_repro.record.store import EVENTS
from precip_repro.runview import ts_ns
from tests.test_diff import synthetic

# The parallel path forks, which it only does in a process without other threads (a pytest
# session may have some): it runs in a fresh interpreter with the size threshold at zero.
PARALLEL = """
import sys
import precip_repro.loading as runview
runview.PARALLEL_BYTES = 0
chosen = runview._parallel_worth_it
def tell(run_dirs):
    forking = chosen(run_dirs)
    print("forking:", forking, file=sys.stderr)
    return forking
runview._parallel_worth_it = tell
from precip_repro.cli import main
sys.exit(main(["--records", sys.argv[1], *sys.argv[2:]]))
"""


def cli(store: RunStore, *args: str, parallel: bool) -> subprocess.CompletedProcess[str]:
    script = PARALLEL if parallel else PARALLEL.replace("= 0", "= 1 << 62")
    done = subprocess.run(
        [sys.executable, "-c", script, str(store.root), *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert f"forking: {parallel}" in done.stderr, done.stderr
    return done


def flip(path: Path, offset: int) -> None:
    log = path / "events.jsonl"
    log.chmod(0o644)
    data = bytearray(log.read_bytes())
    data[offset] ^= 1
    log.write_bytes(bytes(data))


def test_one_process_reading_hands_intact_views_to_meanwhile(store):
    a, b = synthetic(store), synthetic(store)
    seen: list[list[str]] = []
    found = load_verified(
        [a.path, b.path], meanwhile=lambda views: seen.append([v.run for v in views])
    )
    assert [verdict.state for _, verdict in found] == ["intact", "intact"]
    assert seen == [[a.id, b.id]]
    view = found[0][0]
    assert view is not None
    assert view.calls == load_run(a.path).calls


def test_a_damaged_run_gets_no_view_and_meanwhile_is_not_called(store):
    a, b = synthetic(store), synthetic(store)
    flip(b.path, 300)
    seen: list[object] = []
    found = load_verified([a.path, b.path], meanwhile=seen.append)
    assert found[0][0] is not None and found[1][0] is None
    assert found[1][1].state == "corrupt"
    assert seen == []


def test_children_and_one_process_reach_the_same_diff(store):
    a, b = synthetic(store), synthetic(store, stdout="left {addr}\n", exit_code=2)
    alone = cli(store, "diff", "--json", a.id, b.id, parallel=False)
    forked = cli(store, "diff", "--json", a.id, b.id, parallel=True)
    assert alone.returncode == forked.returncode == 1, forked.stderr
    assert json.loads(forked.stdout) == json.loads(alone.stdout)
    assert json.loads(forked.stdout)["a"]["digest"] == a.digest


@pytest.mark.parametrize("offset", [150, -40])
def test_children_find_a_damaged_run_and_the_diff_exits_3(store, offset):
    a, b = synthetic(store), synthetic(store)
    size = (b.path / "events.jsonl").stat().st_size
    flip(b.path, offset % size)
    done = cli(store, "diff", a.id, b.id, parallel=True)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"run {b.id} is corrupt, not intact" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_line_that_is_not_json_fails_the_read_and_its_verdict_explains(store):
    a, b = synthetic(store), synthetic(store)
    log = b.path / "events.jsonl"
    log.chmod(0o644)
    lines = log.read_bytes().splitlines(keepends=True)
    lines[3] = b"{not json\n"
    log.write_bytes(b"".join(lines))
    done = cli(store, "diff", a.id, b.id, parallel=True)
    assert done.returncode == 3
    assert "line 4" in done.stderr and "not valid JSON" in done.stderr


def test_without_a_working_process_pool_one_process_does_it_all(store):
    a, b = synthetic(store), synthetic(store, exit_code=4)
    broken = PARALLEL.replace(
        "runview._parallel_worth_it = tell",
        "runview._parallel_worth_it = tell\n"
        "def no_pool(*args, **kwargs):\n"
        "    raise OSError('no /dev/shm here')\n"
        "runview.ProcessPoolExecutor = no_pool",
    )
    done = subprocess.run(
        [sys.executable, "-c", broken, str(store.root), "diff", "--json", a.id, b.id],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert "forking: True" in done.stderr
    assert "cannot verify in child processes" in done.stderr and "no /dev/shm" in done.stderr
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["steps"][-1]["differences"][0]["kind"] == "exit_code"


def test_equal_references_and_results_are_read_into_one_object_each():
    from precip_repro.loading import ViewBuilder

    builder = ViewBuilder(Path("run"))
    empty = {"sha256": "e3b0" + "0" * 60, "size": 0, "text": ""}
    withheld = {"sha256": "e3b0" + "0" * 60, "size": 0, "withheld": "a secret"}
    ts = "2026-11-25T00:00:00.000000Z"
    for call, stderr in ((1, empty), (2, dict(empty)), (3, withheld)):
        builder.add_parts("call.started", ts, {"call": call, "exp": "e1", "method": "run"})
        builder.add_parts(
            "command.finished", ts,
            {"call": call, "slot": "e1.p1.0", "instance_id": "i-1", "user": "root",
             "cmd": "true", "exit_code": 0, "stdout": dict(empty), "stderr": stderr,
             "duration_ns": 1},
        )  # fmt: skip
        builder.add_parts("call.finished", ts, {"call": call, "result": {"exit_codes": [0]}})
    builder.add_parts("call.finished", ts, {"call": 3, "result": {"exit_codes": [[0]]}})
    one, two, three = builder.build().calls
    assert one.commands[0].stderr is two.commands[0].stderr is one.commands[0].stdout
    from precip_repro.content import ContentRef

    assert three.commands[0].stderr == ContentRef.of(withheld)  # same hash, other fields: its own
    assert one.result is two.result
    assert three.result == {"exit_codes": [[0]]}  # unhashable codes: kept as read


def test_instances_come_in_slot_order_whatever_order_overlapping_launches_were_recorded_in(
    store,
):
    recorded = ["e1.p1.1", "e1.p1.10", "e2.p1.0", "e1.p1.0", "e1.p2.0", "e1.p1.2"]
    with Run.open(store, name="overlap") as run:
        for n, slot in enumerate(recorded):
            run.append(InstanceLaunched(call=1, exp=slot.split(".")[0], slot=slot,
                                        instance_id=f"i-{n}", image_id="default",
                                        instance_type="m1.small", tags=[]))  # fmt: skip
    view = load_run(run.path)
    in_turn = ["e1.p1.0", "e1.p1.1", "e1.p1.2", "e1.p1.10", "e1.p2.0", "e2.p1.0"]
    assert list(view.instances) == in_turn


def test_an_instance_ready_again_keeps_its_boot_and_its_earlier_address_still_normalises(store):
    with Run.open(store, name="restarted") as run:
        run.append(InstanceLaunched(call=1, exp="e1", slot="e1.p1.0", instance_id="i-1",
                                    image_id="ami-1", instance_type="t3", tags=[]))  # fmt: skip
        for public in ("127.0.0.77", "127.0.0.78"):  # stopped and started at its cloud
            run.append(InstanceReady(slot="e1.p1.0", instance_id="i-1", public_address=public,
                                     private_address="127.0.0.4"))  # fmt: skip
    view = load_run(run.path)
    inst = view.instances["e1.p1.0"]
    first, second = (e.ts for e in LogReader(run.path / EVENTS) if e.type == "instance.ready")
    assert first != second and inst.ready_ns == ts_ns(first)
    assert inst.public_address == "127.0.0.78"
    norm = Normalizer(view)
    assert norm.text("was 127.0.0.77, is 127.0.0.78") == (
        "was {e1.p1.0.public_address}, is {e1.p1.0.public_address}"
    )


@pytest.mark.parametrize(
    ("version", "expected"),
    # v1 had no typed values: a note's field shaped like one is the user's own object.
    [(1, {"x": {"$float": "2"}}), (2, {"x": 2.0})],
)
def test_a_note_field_shaped_like_a_typed_value_reads_by_its_events_version(
    version, expected, tmp_path
):
    event = Event(
        v=version, seq=1, ts="2026-12-04T10:00:00.000000Z", type="note",
        data={"text": "t", "fields": {"x": {"$float": "2"}}}, prev="0" * 64, hash="1" * 64,
    )  # fmt: skip
    builder = ViewBuilder(tmp_path)
    builder.add(event)
    assert builder.notes[0][2] == expected


def test_views_not_kept_are_meanwhiles_alone_and_the_verdicts_still_count(store):
    a, b = synthetic(store), synthetic(store)
    seen: list[list[str]] = []
    found = load_verified(
        [a.path, b.path], meanwhile=lambda views: seen.append([v.run for v in views]), keep=False
    )
    assert [(view, verdict.state) for view, verdict in found] == [(None, "intact")] * 2
    assert seen == [[a.id, b.id]]


# In a fresh interpreter, forking: `miscount` makes the first run's unchecked read differ
# from what its child verified (as when the log changes between the two reads).
NOT_KEPT = """
import json, sys
from pathlib import Path
import attrs
import precip_repro.loading as loading
loading.PARALLEL_BYTES = 0
if sys.argv[3] == "miscount":
    first = Path(sys.argv[1])
    unchecked = loading._read_unchecked
    def _read(run_dir):
        view = unchecked(run_dir)
        return attrs.evolve(view, events=view.events - 1) if run_dir == first else view
    loading._read_unchecked = _read
seen = []
found = loading.load_verified(
    [Path(sys.argv[1]), Path(sys.argv[2])],
    meanwhile=lambda views: seen.append([(v.run, v.events) for v in views]),
    keep=False,
)
print(json.dumps({"found": [[view, v.state, v.events] for view, v in found], "seen": seen}))
"""


@pytest.mark.parametrize("how", ["as read", "miscount"])
def test_children_hand_views_not_kept_to_meanwhile_and_read_them_all_again_if_one_changed(
    store, how
):
    a, b = synthetic(store), synthetic(store)
    done = subprocess.run(
        [sys.executable, "-c", NOT_KEPT, str(a.path), str(b.path), how],
        capture_output=True, text=True, check=False, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    events = [load_run(a.path).events, load_run(b.path).events]
    assert answer["found"] == [[None, "intact", n] for n in events]
    whole = [[a.id, events[0]], [b.id, events[1]]]
    if how == "as read":
        assert answer["seen"] == [whole]
    else:  # the miscounted read first, then both read again and verified
        assert answer["seen"] == [[[a.id, events[0] - 1], [b.id, events[1]]], whole]


@given(st.lists(st.integers(0, 3 * 10**9), min_size=1, max_size=40))
def test_lines_read_unchecked_make_the_view_their_events_make(offsets):
    # Timestamps within a second and across seconds: the unchecked reader parses a second
    # once and then only the microseconds.
    start = 1_790_000_000 * 10**9
    lines, events = [], []
    for call, offset in enumerate(sorted(offsets), start=1):
        event, line = seal(
            seq=call - 1, ts=format_ts(start + offset), type="call.started",
            data={"call": call, "exp": "e1", "method": "list", "args": {}}, prev=GENESIS,
        )  # fmt: skip
        lines.append(line)
        events.append(event)
    unchecked, checked = ViewBuilder(Path("run")), ViewBuilder(Path("run"))
    unchecked.add_lines([*lines, b'{"torn'])
    for event in events:
        checked.add(event)
    assert unchecked.build() == checked.build()
    assert [call.start_ns for call in unchecked.build().calls] == [
        ts_ns(event.ts) for event in events
    ]
