"""diff: volatile values normalised, calls aligned by sequence, instances by slot — and each
kind of change reported, and nothing else."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from precip_repro.cli import main
from precip_repro.clouds.base import CloudInfo
from precip_repro.diff import diff_runs, render_text
from precip_repro.loading import load_run
from precip_repro.record import Run, RunStore
from precip_repro.record.payloads import (
    CallFinished,
    CallStarted,
    CommandFinished,
    ExperimentCreated,
    FilePut,
    InstanceLaunched,
    InstanceReady,
    Note,
)
from tests.documents import valid


def synthetic(store: RunStore, **change: Any) -> Run:
    """A run of a small experiment; every volatile value (ids, addresses, temp paths) fresh."""
    ids = [f"i-{secrets.token_hex(8)}" for _ in range(change.get("instances", 2))]
    block = f"127.{secrets.randbelow(100) + 128}.{secrets.randbelow(250)}"
    addrs = [f"{block}.{index + 2}" for index in range(len(ids))]
    run = Run.open(store, name="synthetic")
    run.append(
        ExperimentCreated(exp="e1", name="synthetic", cloud=CloudInfo(kind="local").as_record())
    )
    call = 0

    def started(method: str, args: dict[str, Any]) -> int:
        nonlocal call
        call += 1
        run.append(CallStarted(call=call, exp="e1", method=method, args=args))
        return call

    image = change.get("image", "default")
    itype = change.get("instance_type", "m1.small")
    number = started("provision", {"image_id": image, "instance_type": itype, "count": len(ids)})
    for index, instance_id in enumerate(ids):
        run.append(
            InstanceLaunched(
                call=number, exp="e1", slot=f"e1.p1.{index}", instance_id=instance_id,
                image_id=image, instance_type=itype, tags=["precip", instance_id],
            )
        )  # fmt: skip
    run.append(CallFinished(call=number, result=ids, duration_ns=1000))
    number = started("wait", {"tags": [], "timeout": 600})
    for index, instance_id in enumerate(ids):
        cpus = change.get("cpus", 2) if index == 1 else 2
        run.append(
            InstanceReady(
                slot=f"e1.p1.{index}", instance_id=instance_id, public_address=addrs[index],
                private_address=addrs[index], host_key=f"SHA256:{secrets.token_hex(4)}",
                facts={"cpus": cpus, "uname": "Linux 6.1", "hostname": instance_id},
            )
        )  # fmt: skip
    run.append(CallFinished(call=number, result=ids, duration_ns=1000))
    if change.get("extra_list"):
        number = started("list", {"tags": []})
        run.append(CallFinished(call=number, result=[{"id": i} for i in ids], duration_ns=10))
    number = started("get_private_hostnames", {"tags": []})
    run.append(CallFinished(call=number, result=addrs, duration_ns=10))
    if not change.get("drop_put"):
        number = started("put", {"tags": [], "local_path": "data.txt", "remote_path": "/srv/d"})
        content = run.add_blob(change.get("file", b"line one\nline two\n"))
        for index, instance_id in enumerate(ids):
            run.append(
                FilePut(
                    call=number, slot=f"e1.p1.{index}", instance_id=instance_id, user="root",
                    local_path="data.txt", remote_path="/srv/d", mode=0o644, content=content,
                )
            )  # fmt: skip
        run.append(CallFinished(call=number, result=ids, duration_ns=10))
    cmd = change.get("cmd", "worker --master {addr}").format(addr=addrs[0])
    number = started("run", {"tags": [], "cmd": cmd, "user": "root"})
    for index, instance_id in enumerate(ids):
        stdout = change.get("stdout", "joined {addr}\n") if index == 1 else "joined {addr}\n"
        code = change.get("exit_code", 0) if index == 1 else 0
        run.append(
            CommandFinished(
                call=number, slot=f"e1.p1.{index}", instance_id=instance_id, user="root",
                cmd=cmd, exit_code=code,
                stdout=run.add_blob(stdout.format(addr=addrs[0]).encode(), inline=True),
                stderr=run.add_blob(b"", inline=True), duration_ns=2_000_000,
            )
        )  # fmt: skip
    run.append(CallFinished(call=number, result={"exit_codes": [0] * len(ids)}, duration_ns=3))
    note = change.get("note", {"text": "joined", "fields": {"worker": ids[1], "took_s": "1.5"}})
    if note is not None:
        run.append(Note(text=note["text"], fields=note["fields"]))
    if "ended" in change:
        status, why = change["ended"]
        run.append(Note(text=why, fields={"ended": status}))
    run.finish(change["ended"][0] if "ended" in change else "ok")
    return run


def kinds(store: RunStore, a: Run, b: Run) -> set[tuple[str, ...]]:
    result = diff_runs(load_run(a.path), load_run(b.path))
    found: set[tuple[str, ...]] = {
        ("step", d.kind.value) for step in result.steps for d in step.differences
    }
    found |= {("only_in_a", c["method"]) for c in result.only_in_a}
    found |= {("only_in_b", c["method"]) for c in result.only_in_b}
    found |= {("instance", d.kind.value) for i in result.instances for d in i.differences}
    found |= {("run", d.kind.value) for d in result.run}
    return found


def test_two_runs_differing_only_in_volatile_values_are_the_same(store):
    assert kinds(store, synthetic(store), synthetic(store)) == set()


def test_a_run_diffed_with_itself_reports_nothing(store, capsys):
    run = synthetic(store)
    assert main(["--records", str(store.root), "diff", run.id, run.id]) == 0
    assert "same" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"stdout": "refused {addr}\n"}, {("step", "stdout")}),
        ({"exit_code": 7}, {("step", "exit_code")}),
        ({"file": b"line one\nline 2\n"}, {("step", "file")}),
        ({"image": "/images/other"}, {("instance", "image")}),
        ({"instance_type": "m1.large"}, {("instance", "instance_type")}),
        ({"cpus": 8}, {("instance", "fact")}),
        ({"extra_list": True}, {("only_in_b", "list")}),
        ({"drop_put": True}, {("only_in_b", "put")}),
        ({"note": {"text": "joined", "fields": {"took_s": "9.5"}}}, {("run", "note")}),
        ({"note": None}, {("run", "note")}),
        ({"ended": ("failed", "the script exited with status 3")}, {("run", "status")}),
    ],
)
def test_each_change_is_reported_and_nothing_else(store, change, expected):
    base = synthetic(store)
    changed = synthetic(store, **change)
    if change.get("drop_put"):
        base, changed = changed, base  # the put is missing from a
        expected = {("only_in_b", "put")}
    assert kinds(store, base, changed) == expected


def test_an_extra_call_in_the_middle_shifts_no_other_step(store):
    a, b = synthetic(store), synthetic(store, extra_list=True)
    result = diff_runs(load_run(a.path), load_run(b.path))
    pairs = [(s.a_call, s.b_call, s.method) for s in result.steps]
    assert pairs == [
        (1, 1, "provision"), (2, 2, "wait"), (3, 4, "get_private_hostnames"),
        (4, 5, "put"), (5, 6, "run"),
    ]  # fmt: skip
    assert all(not s.differences for s in result.steps)


def test_how_a_run_ended_and_its_notes_are_compared_after_normalisation(store, capsys):
    ok = synthetic(store)
    failed = synthetic(store, ended=("failed", "the script ended with an uncaught KeyError: x"))
    interrupted = synthetic(store, ended=("interrupted", "interrupted by SIGTERM"))
    again = synthetic(store, ended=("failed", "the script ended with an uncaught KeyError: x"))
    assert diff_runs(load_run(failed.path), load_run(again.path)).same  # same reason, ids apart
    result = diff_runs(load_run(failed.path), load_run(interrupted.path))
    assert [d.to_json() for d in result.run] == [
        {
            "kind": "status",
            "a": "failed: the script ended with an uncaught KeyError: x",
            "b": "interrupted: interrupted by SIGTERM",
        }
    ]
    assert main(["--records", str(store.root), "diff", ok.id, failed.id]) == 1
    assert "run status:\n    a: ok\n    b: failed: the script ended" in capsys.readouterr().out
    quiet = synthetic(store, note={"text": "joined", "fields": {"worker": "x", "took_s": "9"}})
    (found,) = diff_runs(load_run(ok.path), load_run(quiet.path)).run
    assert found.name == "#1"
    assert found.a == {"text": "joined", "fields": {"worker": "{e1.p1.1}", "took_s": "1.5"}}


def test_replay_leaves_how_the_run_ended_and_notes_out_of_its_diff(store):
    a, b = synthetic(store), synthetic(store, note=None, ended=("failed", "exit 3"))
    assert diff_runs(load_run(a.path), load_run(b.path), whole_run=False).same


def test_what_one_run_has_and_the_other_lacks_reads_as_only_in_that_run(store):
    a, b = synthetic(store), synthetic(store, instances=3)
    text = list(render_text(diff_runs(load_run(a.path), load_run(b.path))))
    assert "  command e1.p1.2: only in b: worker --master {e1.p1.0.address}" in text
    assert "  file e1.p1.2 /srv/d: only in b" in text
    assert text[-2:] == ["instance e1.p1.2:", "  only in b"]


def test_a_changed_output_shows_a_unified_diff_of_normalised_text(store):
    a, b = synthetic(store), synthetic(store, stdout="refused {addr}\n")
    result = diff_runs(load_run(a.path), load_run(b.path))
    (found,) = [d for s in result.steps for d in s.differences]
    assert found.slot == "e1.p1.1"
    assert found.diff is not None
    assert "-joined {e1.p1.0.address}" in found.diff
    assert "+refused {e1.p1.0.address}" in found.diff
    text = list(render_text(result))
    at = text.index("  stdout e1.p1.1:")
    assert text[at + 1 : at + 6] == [
        "    --- a",
        "    +++ b",
        "    @@ -1 +1 @@",
        "    -joined {e1.p1.0.address}",
        "    +refused {e1.p1.0.address}",
    ]  # the changed lines once, never the whole texts again with their line breaks


def generated(changed: int | None) -> str:
    lines = [f"key{i} = value {i}" for i in range(300)]
    if changed is not None:
        lines[changed] = "key = CHANGED"
    return "cat > /etc/app.conf <<'EOF'\n" + "\n".join(lines) + "\nEOF\nworker {addr}"


def test_a_changed_generated_command_shows_the_lines_that_changed(store):
    a, b = synthetic(store, cmd=generated(150)), synthetic(store, cmd=generated(151))
    result = diff_runs(load_run(a.path), load_run(b.path))
    (found,) = [d for s in result.steps for d in s.differences]
    assert found.kind == "command" and found.a.endswith("worker {e1.p1.0.address}")
    text = list(render_text(result))
    at = text.index("  command cmd:")
    assert text[at + 1 : at + 4] == ["    --- a", "    +++ b", "    @@ -149,8 +149,8 @@"]
    assert "    +key150 = value 150" in text and "    -key151 = value 151" in text
    assert not any("key10 = value 10" in line for line in text)  # not the whole texts


def test_two_long_one_line_commands_are_shown_where_they_differ(store):
    one_line = " && ".join(f"step{i}" for i in range(200)) + " {addr}"
    a, b = synthetic(store, cmd=one_line), synthetic(store, cmd=one_line.replace("step150", "X"))
    text = list(render_text(diff_runs(load_run(a.path), load_run(b.path))))
    at = text.index("  command cmd:")
    assert "step149 && step150 && step151" in text[at + 1] and text[at + 1].startswith("    a: …")
    assert "step149 && X && step151" in text[at + 2] and len(text[at + 2]) < 300


def test_json_output_is_the_documented_structure_and_exit_1(store, capsys):
    a, b = synthetic(store), synthetic(store, exit_code=3, cpus=4, extra_list=True)
    code = main(["--records", str(store.root), "diff", "--json", a.id, b.id])
    assert code == 1
    result = valid("diff", capsys.readouterr().out)  # and its strict schema
    assert result["version"] == 1 and result["same"] is False
    assert result["a"] == {"run": a.id, "digest": a.digest}
    (step,) = result["steps"]
    assert step["method"] == "run"
    assert step["differences"] == [{"kind": "exit_code", "slot": "e1.p1.1", "a": 0, "b": 3}]
    assert result["only_in_a"] == [] and [c["method"] for c in result["only_in_b"]] == ["list"]
    (instance,) = result["instances"]
    assert instance["differences"] == [{"kind": "fact", "name": "cpus", "a": 2, "b": 4}]
    assert result["run"] == []


def test_a_run_that_is_not_intact_exits_3(store, capsys):
    a, b = synthetic(store), synthetic(store)
    log = b.path / "events.jsonl"
    log.chmod(0o644)
    data = bytearray(log.read_bytes())
    data[100] ^= 1
    log.write_bytes(bytes(data))
    assert main(["--records", str(store.root), "diff", a.id, b.id]) == 3
    assert "not intact" in capsys.readouterr().err
    assert main(["--records", str(store.root), "diff", a.id, "nope"]) == 2


def test_durations_outside_the_tolerance_are_reported(store, local_experiment):
    from precip_repro import finish_run

    runs = []
    for seconds in ("0.1", "1.6"):
        exp = local_experiment("sleepy")
        exp.provision("default")
        exp.wait()
        exp.run([], "sleep $1 2>/dev/null || sleep " + seconds)
        exp.deprovision()
        runs.append(exp.run_path)
        finish_run()
    a, b = (load_run(path) for path in runs)
    result = diff_runs(a, b)
    found = [d.kind for s in result.steps for d in s.differences]
    assert "command" in found  # the commands themselves differ (the seconds)
    assert "duration" in found
    assert not [d for s in diff_runs(a, b, tolerance=100).steps for d in s.differences
                if d.kind == "duration"]  # fmt: skip


def test_two_real_runs_of_the_pool_example_are_the_same(store, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).parent.parent / "examples" / "condor_pool.py"
    env = dict(os.environ, PRECIP_RECORDS=str(store.root))
    for _ in range(2):
        done = subprocess.run([sys.executable, str(example)], env=env, capture_output=True)
        assert done.returncode == 0, done.stderr
    a, b = (load_run(path) for path in store.run_dirs())
    assert a.instances["e1.p1.0"].public_address != b.instances["e1.p1.0"].public_address
    result = diff_runs(a, b)
    assert result.same, result.to_json()
