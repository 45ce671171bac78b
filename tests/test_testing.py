"""precip_repro.testing.playback: a user's own tests answered from a recorded run."""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from precip_repro import LocalExperiment, PlaybackMismatch, RecordCorrupted
from precip_repro.clouds.local import live_local_instances
from precip_repro.record import RunStore
from precip_repro.record.store import EVENTS
from precip_repro.session import session
from precip_repro.testing import playback
from tests.helpers import record_stopped

EXAMPLES = Path(__file__).parent.parent / "examples"

README = Path(__file__).parent.parent / "README.md"


def readme_files() -> dict[str, str]:
    """The files the README's section on precip_repro.testing shows, by the name each
    opens with (``# pipeline.py``): the test runs what a user would copy."""
    from markdown_it import MarkdownIt

    files = {}
    for token in MarkdownIt().parse(README.read_text()):
        if token.type == "fence" and token.info == "python" and token.content.startswith("# "):
            name = token.content.split()[1]
            if name.endswith(".py"):
                files[name] = token.content
    return files


def recorded(store: RunStore, script: Path, cwd: Path | None = None) -> str:
    env = dict(os.environ, PRECIP_RECORDS=str(store.root))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return next(p.name for p in store.run_dirs())


def test_the_readmes_users_pytest_passes_as_recorded_and_fails_at_the_changed_call(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    files = readme_files()
    for name in ("pipeline.py", "test_pipeline.py"):
        (project / name).write_text(files[name])
    # Recorded as the README's comment says.
    env = dict(os.environ, PRECIP_RECORDS="recorded")
    code = "import pipeline; pipeline.greet('world')"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=project, capture_output=True)
    assert done.returncode == 0, done.stderr
    store = RunStore(project / "recorded")
    (run_id,) = [p.name for p in store.run_dirs()]
    before = {s.instance_id for s in live_local_instances()}
    env = {k: v for k, v in os.environ.items() if k != "PRECIP_RECORDS"}
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
         "test_pipeline.py"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = tested.stdout
    assert tested.returncode == 1, out + tested.stderr
    assert "1 failed, 1 passed" in out
    assert "FAILED test_pipeline.py::test_greet_of_another_name_is_not_the_recorded_call" in out
    assert "precip_repro.exceptions.PlaybackMismatch: call #3 does not match the recording" in out
    recorded_line = next(line for line in out.splitlines() if "recorded:  e1.run(" in line)
    attempted_line = next(line for line in out.splitlines() if "attempted: e1.run(" in line)
    assert "cmd='echo hello world'" in recorded_line
    assert "cmd='echo hello moon'" in attempted_line
    # No cloud touched, nothing recorded: not in ./records, not beside the recording.
    assert {s.instance_id for s in live_local_instances()} == before
    made = {p.name for p in project.iterdir()} - {"__pycache__"}
    assert made == {"pipeline.py", "recorded", "test_pipeline.py"}
    assert [p.name for p in store.run_dirs()] == [run_id]


def test_the_example_answers_from_its_recording_with_no_cloud_and_nothing_recorded(
    store, tmp_path, monkeypatch, capsys
):
    run_id = recorded(store, EXAMPLES / "hello_world.py")
    capsys.readouterr()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("PRECIP_RECORDS", raising=False)
    before = {s.instance_id for s in live_local_instances()}
    with playback(store.root / run_id) as view:
        runpy.run_path(str(EXAMPLES / "hello_world.py"))
    assert "Hello world from an experiment instance" in capsys.readouterr().out
    assert view.run == run_id and len(view.calls) == 5
    assert {s.instance_id for s in live_local_instances()} == before
    assert list(work.iterdir()) == [] and [p.name for p in store.run_dirs()] == [run_id]
    assert session.playback is None


def test_a_mismatch_the_code_catches_still_ends_the_block_with_it(store):
    run_id = recorded(store, EXAMPLES / "hello_world.py")
    with pytest.raises(PlaybackMismatch) as info, playback(run_id, records=store.root):
        exp = LocalExperiment("hello-world")
        # Code that carries on regardless must not pass for a match.
        with contextlib.suppress(PlaybackMismatch):
            exp.provision("default", tags=["other"], count=1)
    assert info.value.call == 1
    assert "tags=['test1']" in info.value.recorded and "tags=['other']" in info.value.attempted


def test_an_error_the_mismatch_led_to_is_reported_as_the_mismatch(store):
    run_id = recorded(store, EXAMPLES / "hello_world.py")
    with pytest.raises(PlaybackMismatch) as info, playback(run_id, records=store.root):
        exp = LocalExperiment("hello-world")
        try:
            exp.provision("default", tags=["other"], count=1)
        except PlaybackMismatch:
            raise ValueError("the pipeline gave up") from None
    assert isinstance(info.value.__cause__, ValueError)


def test_recorded_calls_the_code_never_made_are_a_mismatch_at_the_end_of_the_block(store):
    run_id = recorded(store, EXAMPLES / "hello_world.py")
    with (
        pytest.raises(PlaybackMismatch, match=r"4 recorded call\(s\) remain, from #2 e1.wait"),
        playback(run_id, records=store.root),
    ):
        LocalExperiment("hello-world").provision("default", tags=["test1"], count=1)


def test_a_recording_stopped_mid_call_ends_the_block_quietly_at_that_call(store, tmp_path):
    run_id = record_stopped(store, tmp_path, signal.SIGTERM)
    reached = []
    with playback(run_id, records=store.root):
        exp = LocalExperiment("stopped")
        exp.provision("default")
        exp.wait()
        exp.run([], "echo before")
        reached.append("the stopped call")
        exp.run([], "sleep 30")
        reached.append("past it")  # never: the recording has nothing past its last call
    assert reached == ["the stopped call"]


def test_a_run_that_is_not_intact_is_refused_before_the_block_runs(store):
    run_id = recorded(store, EXAMPLES / "hello_world.py")
    log = store.root / run_id / EVENTS
    log.write_bytes(log.read_bytes().replace(b"Hello world", b"Hello WORLD"))
    entered = False
    with (
        pytest.raises(RecordCorrupted, match="cannot be played back: it is corrupt"),
        playback(run_id, records=store.root),
    ):
        entered = True
    assert not entered and session.playback is None


def test_one_playback_at_a_time(store, capsys):
    run_id = recorded(store, EXAMPLES / "hello_world.py")
    with playback(run_id, records=store.root):
        with (
            pytest.raises(RuntimeError, match="one at a time"),
            playback(run_id, records=store.root),
        ):
            pass  # pragma: no cover
        runpy.run_path(str(EXAMPLES / "hello_world.py"))  # the first goes on, to its end
    assert "Hello world from an experiment instance" in capsys.readouterr().out
