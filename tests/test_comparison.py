"""One comparison of two recorded calls, as diff and replay's verdicts use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from precip_repro import (
    DIFF_COMPARING,
    REPLAY_COMPARING,
    ComparisonSide,
    Difference,
    DifferenceKind,
    compare_calls,
)
from precip_repro.comparison import unified
from precip_repro.loading import ViewBuilder
from precip_repro.runview import RunView

TS = "2026-12-04T00:00:00.000000Z"
EMPTY = {"sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "size": 0,
         "text": ""}  # fmt: skip


def text_ref(text: str) -> dict[str, Any]:
    import hashlib

    data = text.encode()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "text": text}


def view(
    tmp: Path,
    *,
    address: str,
    cmd: str = "hostname -I",
    stdout: str,
    exit_code: int = 0,
    user: str = "root",
    duration_ns: int = 1_000_000_000,
) -> RunView:
    """A run of one instance and one ``run`` call printing ``stdout``."""
    builder = ViewBuilder(tmp)
    builder.add_parts("run.started", TS, {"run": tmp.name})
    builder.add_parts(
        "instance.launched", TS,
        {"slot": "e1.p1.0", "exp": "e1", "instance_id": f"i-{address}", "image_id": "img",
         "instance_type": "t", "tags": []},
    )  # fmt: skip
    builder.add_parts(
        "instance.ready", TS,
        {"instance_id": f"i-{address}", "public_address": address, "private_address": address},
    )  # fmt: skip
    args = {"tags": [], "cmd": cmd, "user": user, "check_exit_code": False, "timeout": None}
    builder.add_parts("call.started", TS, {"call": 1, "exp": "e1", "method": "run", "args": args})
    builder.add_parts(
        "command.finished", TS,
        {"call": 1, "slot": "e1.p1.0", "instance_id": f"i-{address}", "user": user, "cmd": cmd,
         "exit_code": exit_code, "stdout": text_ref(stdout), "stderr": EMPTY, "duration_ns": 1},
    )  # fmt: skip
    builder.add_parts(
        "call.finished", TS, {"call": 1, "result": {"exit_codes": [0]}, "duration_ns": duration_ns}
    )
    return builder.build()


def differences(a: RunView, b: RunView, how: Any, *, one_host: bool = False) -> list[Difference]:
    side_a, side_b = ComparisonSide(a, one_host=one_host), ComparisonSide(b, one_host=one_host)
    return list(compare_calls(side_a, side_b, a.calls[0], b.calls[0], how))


def test_volatile_values_compare_by_slot(tmp_path):
    a = view(tmp_path / "a", address="127.1.0.2", stdout="127.1.0.2\n")
    b = view(tmp_path / "b", address="127.9.0.7", stdout="127.9.0.7\n")
    assert differences(a, b, DIFF_COMPARING) == []


def test_diff_names_changed_arguments_where_a_replay_does_not(tmp_path):
    # A replay maps users (and images, types) on purpose: not a divergence.
    a = view(tmp_path / "a", address="127.1.0.2", stdout="x\n", user="root")
    b = view(tmp_path / "b", address="127.1.0.3", stdout="x\n", user="cc")
    found = differences(a, b, DIFF_COMPARING)
    assert [(d.kind, d.name, d.a, d.b) for d in found] == [
        (DifferenceKind.ARGS, "user", "root", "cc")
    ]
    assert differences(a, b, REPLAY_COMPARING) == []


def test_a_changed_output_and_exit_code_diverge_for_both(tmp_path):
    a = view(tmp_path / "a", address="127.1.0.2", stdout="1\n")
    b = view(tmp_path / "b", address="127.1.0.3", stdout="2\n", exit_code=3)
    for how in (DIFF_COMPARING, REPLAY_COMPARING):
        found = {d.kind: d for d in differences(a, b, how)}
        assert set(found) == {DifferenceKind.EXIT_CODE, DifferenceKind.STDOUT}
        assert (found[DifferenceKind.EXIT_CODE].a, found[DifferenceKind.EXIT_CODE].b) == (0, 3)
        assert found[DifferenceKind.STDOUT].slot == "e1.p1.0"
        assert "-1\n+2\n" in str(found[DifferenceKind.STDOUT].diff)


def test_durations_count_for_diff_only(tmp_path):
    a = view(tmp_path / "a", address="127.1.0.2", stdout="x\n", duration_ns=1_000_000_000)
    b = view(tmp_path / "b", address="127.1.0.3", stdout="x\n", duration_ns=9_000_000_000)
    assert [d.kind for d in differences(a, b, DIFF_COMPARING)] == [DifferenceKind.DURATION]
    assert differences(a, b, REPLAY_COMPARING) == []


def test_one_host_makes_every_name_of_a_slots_host_the_same(tmp_path):
    # The local cloud has one address per instance; EC2 a public and a private one.
    a = view(tmp_path / "a", address="127.1.0.2", stdout="reached 127.1.0.2\n")
    b = view(tmp_path / "b", address="127.1.0.3", stdout="reached 127.1.0.3\n")
    b.instances["e1.p1.0"].public_address = "127.200.0.3"  # b now names it as its private one
    assert [d.kind for d in differences(a, b, DIFF_COMPARING)] == [DifferenceKind.STDOUT]
    assert differences(a, b, DIFF_COMPARING, one_host=True) == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(
    kind=st.sampled_from(DifferenceKind),
    a=_json,
    b=_json,
    slot=st.none() | st.text(min_size=1),
    name=st.none() | st.text(min_size=1),
    diff=st.none() | st.text(),
    sha=st.none() | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
)
def test_a_difference_round_trips_through_its_json(kind, a, b, slot, name, diff, sha):
    found = Difference(kind=kind, a=a, b=b, slot=slot, name=name, diff=diff, a_sha256=sha)
    data = found.to_json()
    assert Difference.from_json(data) == found
    assert {"kind", "a", "b"} <= data.keys()
    assert all(data[key] is not None for key in data.keys() - {"a", "b"})  # unset: left out


def test_a_last_line_without_its_newline_is_marked_not_run_together():
    diff = unified("a\nb", "a\nc")
    assert "-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n" in diff
    assert unified("x\n", "x").endswith("+x\n\\ No newline at end of file\n")


def test_a_copied_scripts_command_line_is_shown_by_the_scripts_name(tmp_path):
    def run_of(path: Path, arg: str) -> RunView:
        builder = ViewBuilder(path)
        cmd = f"/tmp/precip-exec.{path.name * 12} {arg}"
        args = {"tags": [], "local_script": "/home/me/sweep.sh", "args": [arg], "user": "root",
                "check_exit_code": True, "timeout": None}  # fmt: skip
        builder.add_parts(
            "call.started", TS, {"call": 1, "exp": "e1", "method": "copy_and_run", "args": args}
        )
        builder.add_parts(
            "command.finished", TS,
            {"call": 1, "slot": "e1.p1.0", "instance_id": "i-1", "user": "root", "cmd": cmd,
             "exit_code": 0, "stdout": EMPTY, "stderr": EMPTY, "duration_ns": 1},
        )  # fmt: skip
        builder.add_parts("call.finished", TS, {"call": 1, "result": None, "duration_ns": 1})
        return builder.build()

    a, b = run_of(tmp_path / "a", "1"), run_of(tmp_path / "b", "2")
    found = [d for d in differences(a, b, DIFF_COMPARING) if d.kind == DifferenceKind.COMMAND]
    assert [(d.a, d.b) for d in found] == [("sweep.sh 1", "sweep.sh 2")]


def test_a_provision_that_started_nothing_is_compared_by_its_image_and_type(tmp_path):
    def failed_provision(path: Path, image: str) -> RunView:
        builder = ViewBuilder(path)
        args = {"image_id": image, "instance_type": "t", "count": 1, "tags": []}
        builder.add_parts("call.started", TS, {"call": 1, "exp": "e1", "method": "provision",
                                               "args": args})  # fmt: skip
        error = {"type": "CloudError", "message": "no capacity"}
        builder.add_parts("call.failed", TS, {"call": 1, "duration_ns": 1, "error": error})
        return builder.build()

    a, b = failed_provision(tmp_path / "a", "ami-1"), failed_provision(tmp_path / "b", "ami-2")
    found = differences(a, b, DIFF_COMPARING)
    assert [(d.kind, d.name, d.a, d.b) for d in found] == [
        (DifferenceKind.ARGS, "image_id", "ami-1", "ami-2")
    ]
