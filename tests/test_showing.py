"""``precip-repro show``: ``--json`` against its schema, and ``--follow`` tailing a run that
another process is writing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from precip_repro.cli import main
from precip_repro.record import Run, RunStore
from precip_repro.record.payloads import Note
from precip_repro.record.store import EVENTS
from tests.documents import valid
from tests.helpers import record_sample_run

CONSOLE = Path(sys.executable).parent / "precip-repro"


def show(capsys, store: RunStore, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--records", str(store.root), "show", *args])
    return code, capsys.readouterr().out


def test_show_json_gives_each_event_its_seq_time_type_description_and_data(capsys, store):
    run = record_sample_run(store)
    code, text = show(capsys, store, run.id)
    lines = text.splitlines()[2:]
    code_json, out = show(capsys, store, run.id, "--json")
    assert code == code_json == 0
    document = valid("show", out)
    assert document["run"] == run.id
    assert document["signature"]["state"] == "signed"
    assert document["signature"]["signer"] == run.signature.fingerprint  # type: ignore[union-attr]
    events = document["events"]
    assert [e["seq"] for e in events] == list(range(len(lines)))
    # The same description as the text timeline's, and the data as recorded.
    for event, line in zip(events, lines, strict=True):
        assert line.endswith(f" {event['type']:<21} {event['description']}")
    assert events[-1]["type"] == "run.finished"
    assert events[-1]["data"]["status"] == "ok"
    assert events[0]["offset_s"] == 0
    assert document["torn"] is None and document["stopped"] is None


def test_show_json_of_a_damaged_run_says_where_it_stopped_and_exits_1(capsys, store):
    run = record_sample_run(store)
    log = store.root / run.id / EVENTS
    lines = log.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"seq":3', b'"seq":9')
    log.write_bytes(b"".join(lines))
    code, out = show(capsys, store, run.id, "--json")
    assert code == 1
    document = valid("show", out)
    assert [e["seq"] for e in document["events"]] == [0, 1, 2]
    assert "line 4" in document["stopped"]


def test_show_follow_prints_each_event_as_another_process_appends_it(store):
    run = Run.open(store, name="followed")
    follower = subprocess.Popen(
        [str(CONSOLE), "--records", str(store.root), "show", "--follow", run.id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert f"run {run.id}" in follower.stdout.readline()
        assert "run.started" in follower.stdout.readline()
        # Lock-step: each event is appended only once the one before it was printed, so
        # every line below was printed while the run was still being recorded.
        for text in ("one", "two", "three"):
            run.append(Note(text=text, fields={}))
            line = follower.stdout.readline()
            assert f"note: {text}" in line and " note " in line
        run.finish()
        assert "run finished: ok" in follower.stdout.readline()
        assert follower.wait(timeout=30) == 0
        assert follower.stdout.read() == ""
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_show_follow_of_a_finished_run_prints_it_and_ends(capsys, store):
    run = record_sample_run(store)
    code, out = show(capsys, store, run.id, "--follow")
    assert code == 0
    assert out.splitlines()[1:] == show(capsys, store, run.id)[1].splitlines()[2:]


def test_show_follow_ends_when_the_writer_dies_saying_how_to_finish_the_run(store):
    run = Run.open(store, name="doomed")
    run.append(Note(text="before", fields={}))
    # What a killed writer leaves: its lock let go, no run.finished.
    run._journal.close()
    done = subprocess.run(
        [str(CONSOLE), "--records", str(store.root), "show", "--follow", run.id],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3
    assert "note: before" in done.stdout
    assert f"precip-repro recover {run.id}" in done.stdout


def test_show_follow_stops_on_ctrl_c_with_130(store):
    run = Run.open(store, name="watched")
    follower = subprocess.Popen(
        [str(CONSOLE), "--records", str(store.root), "show", "--follow", run.id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    follower.stdout.readline()
    assert "run.started" in follower.stdout.readline()
    follower.send_signal(signal.SIGINT)
    assert follower.wait(timeout=30) == 130
    run.finish()


def test_show_follow_and_json_together_is_a_usage_error(capsys, store):
    run = record_sample_run(store)
    assert main(["--records", str(store.root), "show", run.id, "--follow", "--json"]) == 2
    assert "--follow" in capsys.readouterr().err


def test_show_says_each_parameter_its_value_and_where_it_came_from(capsys):
    sample = Path(__file__).parent / "fixtures" / "records" / "v2"
    (run_dir,) = sample.glob("*-parameters-v2-*")
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "parameter SORT_N = 400000 (from environment)" in out
    assert "parameter RATE = 2.0 (from default)" in out  # a float, as recorded
