"""precip-repro run --playback: a script's logic tested against a recording, no cloud."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from precip_repro.cli import main
from precip_repro.clouds.local import live_local_instances
from precip_repro.record import RunStore

EXAMPLES = Path(__file__).parent.parent / "examples"


def recorded(store: RunStore, name: str) -> str:
    env = dict(os.environ, PRECIP_RECORDS=str(store.root))
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    return next(p.name for p in store.run_dirs())


def test_an_unchanged_script_plays_back_with_the_recorded_answers(store, capsys):
    run_id = recorded(store, "condor_pool.py")
    before = {s.instance_id for s in live_local_instances()}
    code = main(["--records", str(store.root), "run", "--playback", run_id,
                 str(EXAMPLES / "condor_pool.py")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "all 8 recorded calls matched" in out
    assert out.count("worker joined") == 2  # the recorded outputs, printed by the script
    assert {s.instance_id for s in live_local_instances()} == before  # no cloud touched
    assert [p.name for p in store.run_dirs()] == [run_id]  # nothing recorded


def test_a_changed_script_fails_at_the_right_call_side_by_side(store, tmp_path, capsys):
    run_id = recorded(store, "hello_world.py")
    changed = tmp_path / "hello_world.py"
    changed.write_text(
        (EXAMPLES / "hello_world.py").read_text().replace("from an experiment", "from a changed")
    )
    code = main(["--records", str(store.root), "run", "--playback", run_id, str(changed)])
    out = capsys.readouterr().out
    assert code == 1
    assert "call #4 does not match the recording" in out
    assert "recorded:  e1.run(" in out and "from an experiment instance" in out
    assert "attempted: e1.run(" in out and "from a changed instance" in out


def test_a_script_that_stops_early_leaves_calls_unplayed(store, tmp_path, capsys):
    run_id = recorded(store, "hello_world.py")
    short = tmp_path / "short.py"
    short.write_text(
        "from precip_repro import LocalExperiment\n"
        "exp = LocalExperiment('hello-world')\n"
        "exp.provision('default', tags=['test1'], count=1)\n"
    )
    code = main(["--records", str(store.root), "run", "--playback", run_id, str(short)])
    out = capsys.readouterr().out
    assert code == 1 and "4 recorded call(s) remain, from #2 e1.wait" in out
