"""precip-repro run --playback: a script's logic tested against a recording, no cloud."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from precip_repro.cli import main
from precip_repro.clouds.local import live_local_instances
from precip_repro.record import RunStore
from tests.helpers import record_stopped

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


LONG_COMMAND = """\
import sys
from precip_repro import LocalExperiment
exp = LocalExperiment("long")
exp.provision("default")
exp.wait()
lines = [f"line {i} of a generated config" for i in range(300)]
lines[int(sys.argv[1]) if len(sys.argv) > 1 else 0] = "a CHANGED line"
exp.run([], "cat > /tmp/conf <<'EOF'\\n" + "\\n".join(lines) + "\\nEOF")
exp.deprovision()
"""


def test_a_long_command_that_changed_is_shown_where_it_changed(store, tmp_path, capsys):
    script = tmp_path / "long.py"
    script.write_text(LONG_COMMAND)
    subprocess.run([sys.executable, str(script), "150"], check=True, capture_output=True,
                   env=dict(os.environ, PRECIP_RECORDS=str(store.root)))  # fmt: skip
    (run_dir,) = store.run_dirs()
    with mock.patch.object(sys, "argv", [str(script), "151"]):
        code = main(["--records", str(store.root), "run", "--playback", run_dir.name,
                     str(script), "151"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1 and "call #3 does not match the recording" in out
    recorded = next(line for line in out.splitlines() if "recorded:" in line)
    attempted = next(line for line in out.splitlines() if "attempted:" in line)
    assert len(recorded) < 600 and len(attempted) < 600
    assert "line 149 of a generated config\\na CHANGED line\\nline 151" in recorded
    assert "line 149 of a generated config\\nline 150 of a generated config\\na CHANGED" in (
        attempted
    )
    assert "characters…" in recorded and "tags=[]" in recorded


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


def record_and_play(
    store: RunStore, tmp_path: Path, capsys: Any, name: str, code: str, **env: str
) -> tuple[int, str]:
    """Record ``code`` as a script (in a process of its own), then play it back here; the
    ``env`` variables are set for both."""
    script = tmp_path / name
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=dict(os.environ, PRECIP_RECORDS=str(store.root), **env),
        capture_output=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = store.run_dirs()
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with contextlib.chdir(tmp_path):  # where the recording ran: its relative paths there
            status = main(["--records", str(store.root), "run", "--playback", run_dir.name,
                           str(script)])  # fmt: skip
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return status, capsys.readouterr().out


CATCHING_SCRIPT = """\
from precip_repro import CommandFailed, LocalExperiment, RemoteFileMissing
exp = LocalExperiment("catching")
exp.provision("default", count=2)
exp.wait()
try:
    exp.run([], "echo oops >&2; exit 3", parallel=True)
except CommandFailed as failed:
    print("caught", failed.exit_code, failed.slot, failed.stderr_tail.strip(), len(failed.failed))
try:
    exp.get(["e1.p1.0"], "/no/such/file", "got")
except RemoteFileMissing as missing:
    print("missing", missing.slot)
exp.deprovision()
"""


def test_the_exceptions_a_script_catches_are_played_back_of_their_class(store, tmp_path, capsys):
    status, out = record_and_play(store, tmp_path, capsys, "catching.py", CATCHING_SCRIPT)
    assert status == 0, out
    assert "caught 3 e1.p1.0 oops 2" in out  # what the recorded run printed, attributes too
    assert "missing e1.p1.0" in out
    assert "all 5 recorded calls matched" in out


ENV_CREDENTIAL_SCRIPT = """\
import os
from precip_repro import LocalExperiment
exp = LocalExperiment("env")
exp.provision("default")
exp.wait()
print(exp.run([], "echo key=" + os.environ["WANDB_API_KEY"])[1][0], end="")
exp.deprovision()
"""


def test_a_script_passing_a_credential_of_its_environment_plays_back_with_its_value(
    store, tmp_path, capsys
):
    status, out = record_and_play(
        store, tmp_path, capsys, "env.py", ENV_CREDENTIAL_SCRIPT, WANDB_API_KEY="wandb-5e6f7a8b9c"
    )
    assert status == 0, out
    assert "key=wandb-5e6f7a8b9c\n" in out  # the value, as the recorded run printed it
    assert "all 4 recorded calls matched" in out


SECRET_SCRIPT = """\
import os
from precip_repro import LocalExperiment
with LocalExperiment('secretive') as exp:
    token = os.environ['PRECIP_TEST_TOKEN']
    exp.secret('PRECIP_TEST_TOKEN', token)
    exp.provision('default')
    exp.wait()
{body}
"""


def test_a_file_got_holding_a_secret_plays_back_from_the_copy_the_get_wrote(
    store, tmp_path, capsys
):
    body = (
        "    exp.run([], f'echo token={token} > /root/token.txt')\n"
        "    exp.get([], '/root/token.txt', 'token.txt')"
    )
    script = SECRET_SCRIPT.format(body=body)
    code, out = record_and_play(
        store, tmp_path, capsys, "got_secret.py", script, PRECIP_TEST_TOKEN="tok-24680"
    )
    assert code == 0, out  # kept by hash only in the record, and still here, unchanged
    assert (tmp_path / "token.txt").read_text() == "token=tok-24680\n"


def test_a_get_into_the_home_directory_plays_back_there(store, tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    script = (
        "import os\n"
        "from precip_repro import LocalExperiment\n"
        "exp = LocalExperiment('home')\n"
        "exp.provision('default')\n"
        "exp.wait()\n"
        "exp.run([], 'echo results > /tmp/r.txt')\n"
        "target = os.path.expanduser('~/r.txt')\n"
        "if os.path.exists(target):\n"
        "    os.remove(target)\n"
        "exp.get([], '/tmp/r.txt', '~/r.txt')\n"
        "print('got', open(target).read().strip())\n"
    )
    code, out = record_and_play(store, tmp_path, capsys, "home.py", script, HOME=str(home))
    assert code == 0, out
    assert "got results" in out and (home / "r.txt").read_text() == "results\n"
    assert not (tmp_path / "~").exists()


def test_a_script_using_a_secret_plays_back_and_gets_its_outputs_with_the_value(
    store, tmp_path, capsys
):
    body = (
        "    _, outs, _ = exp.run([], f'echo token={token}')\n"
        "    print('checked', outs == [f'token={token}\\n'])"
    )
    script = SECRET_SCRIPT.format(body=body)
    code, out = record_and_play(
        store, tmp_path, capsys, "uses_secret.py", script, PRECIP_TEST_TOKEN="tok-13579"
    )
    assert code == 0, out
    assert "checked True" in out and "all 4 recorded calls matched" in out


def test_instances_a_script_leaves_running_are_deprovisioned_in_playback_as_when_recorded(
    store, tmp_path, capsys
):
    code, out = record_and_play(
        store,
        tmp_path,
        capsys,
        "leaves_running.py",
        "import sys\n"
        "from precip_repro import LocalExperiment\n"
        "exp = LocalExperiment('left')\n"
        "exp.provision('default')\n"
        "exp.wait()\n"
        "sys.exit(0)\n",
    )
    assert code == 0, out
    assert "all 3 recorded calls matched" in out  # provision, wait, and the deprovision at exit


def test_float_arguments_match_their_recorded_decimal_strings(store, tmp_path, capsys):
    code, out = record_and_play(
        store,
        tmp_path,
        capsys,
        "floats.py",
        "from precip_repro import LocalExperiment\n"
        "with LocalExperiment('floats') as exp:\n"
        "    exp.provision('default')\n"
        "    exp.wait(timeout=30.5)\n"
        "    exp.run([], 'echo ok', timeout=2.5)\n",
    )
    assert code == 0, out
    assert "all 4 recorded calls matched" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_recording_stopped_mid_call_plays_back_up_to_that_call(store, tmp_path, capsys, sig):
    run_id = record_stopped(store, tmp_path, sig)
    capsys.readouterr()
    code = main(["--records", str(store.root), "run", "--playback", run_id,
                 str(tmp_path / "stopped.py")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "every call matched up to call #4 e1.run, where the recording was stopped" in out


def test_a_script_that_exits_non_zero_in_playback_says_how_the_recording_ended(
    store, tmp_path, capsys
):
    script = tmp_path / "exits.py"
    script.write_text(
        "import sys\n"
        "from precip_repro import LocalExperiment\n"
        "exp = LocalExperiment('exits')\n"
        "exp.provision('default')\n"
        "exp.wait()\n"
        "codes, _, _ = exp.run([], 'exit 5', check_exit_code=False)\n"
        "sys.exit(codes[0] - 2)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        env=dict(os.environ, PRECIP_RECORDS=str(store.root)),
        capture_output=True,
    )
    assert done.returncode == 3
    (run_dir,) = store.run_dirs()
    status = main(["--records", str(store.root), "run", "--playback", run_dir.name, str(script)])
    assert status == 3
    out = capsys.readouterr().out
    assert "the script exited with 3; the recording ended failed: the script exited with " in out


KEY_SCRIPT = """\
from precip_repro import LocalExperiment
exp = LocalExperiment("keys")
exp.provision("default")
exp.wait()
exp.put([], "id_ed25519", "/root/.ssh/id_ed25519")
exp.get([], "/root/.ssh/id_ed25519", "back")
print(open("back").read().splitlines()[0])
exp.deprovision()
"""


def test_a_file_kept_by_hash_only_plays_back_from_the_copy_the_run_moved(store, tmp_path, capsys):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    status, out = record_and_play(store, tmp_path, capsys, "keys.py", KEY_SCRIPT)
    assert status == 0, out
    assert "-----BEGIN OPENSSH PRIVATE KEY-----" in out  # the file got, given back
    assert (tmp_path / "back").read_bytes() == key.read_bytes()
    (run_dir,) = store.run_dirs()
    key.unlink()
    (tmp_path / "back").unlink()
    with contextlib.chdir(tmp_path):
        status = main(["--records", str(store.root), "run", "--playback", run_dir.name,
                       str(tmp_path / "keys.py")])  # fmt: skip
    assert status == 1
    err = capsys.readouterr().err
    assert f"(nor is it at {key} or {tmp_path / 'back'} any more)" in err
    assert "by hash only (holds a private key)" in err


FLOATS = """\
from precip_repro import LocalExperiment
exp = LocalExperiment("floats")
exp.provision("default")
exp.wait(timeout=30.5)
codes, outs, _ = exp.run([], "echo ok", timeout=2.0)
exp.note("played", outs=outs)
exp.deprovision()
"""


def test_a_script_with_float_arguments_plays_back_its_recording(store, tmp_path, capsys):
    # v2 records the floats as numbers (2.0 typed): playback matches them all the same
    script = tmp_path / "floats.py"
    script.write_text(FLOATS)
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True,
                   env=dict(os.environ, PRECIP_RECORDS=str(store.root)))  # fmt: skip
    (run_dir,) = store.run_dirs()
    code = main(["--records", str(store.root), "run", "--playback", run_dir.name, str(script)])
    assert code == 0, capsys.readouterr().out


def test_float_arguments_compare_by_their_decimal_text_as_v1_recorded_them():
    from precip_repro import METHODS
    from precip_repro.playback import _comparable

    run = METHODS["run"]
    assert _comparable(run, {"timeout": 2.5, "n": [0.1]}) == _comparable(
        run, {"timeout": "2.5", "n": ["0.1"]}
    )
    assert _comparable(run, {"timeout": 2.0}) == _comparable(run, {"timeout": "2.0"})


def test_playback_never_writes_over_a_result_changed_since_the_recording(
    local_experiment, store, tmp_path
):
    from precip_repro import LocalExperiment, PlaybackMismatch, finish_run
    from precip_repro.testing import playback

    results = tmp_path / "results"
    results.mkdir()
    out = results / "out.txt"

    def experiment(exp: Any) -> None:
        exp.provision("default")
        exp.wait()
        exp.run([], "echo 42 > /tmp/out.txt")
        exp.get([], "/tmp/out.txt", out)
        exp.deprovision()

    exp = local_experiment("results")
    experiment(exp)
    run_id = exp.run_id
    finish_run()
    assert out.read_text() == "42\n"
    out.write_text("43\n")  # a newer result of the user's, after the recording
    refused = pytest.raises(PlaybackMismatch, match=f"would write over {out}, which changed after")
    with refused, playback(run_id, records=store.root):
        experiment(LocalExperiment("results"))
    assert out.read_text() == "43\n"  # left as it was
    os.utime(out, ns=(0, 0))  # older than the recording: what the recording replaces
    with playback(run_id, records=store.root):
        experiment(LocalExperiment("results"))
    assert out.read_text() == "42\n"


DECLARING = """\
from precip_repro import LocalExperiment, Rule

with LocalExperiment("declares") as exp:
    exp.expect(Rule.numbers(relative=0.1, pattern=r"in ([0-9.]+) s", name="timings"))
    exp.provision("default")
    exp.wait()
    exp.run([], "echo done in 1.0 s", expect=Rule.ignore("done", name="word"))
    exp.run([], "echo plain")
"""


def test_declared_expectations_play_back_and_a_changed_one_is_a_mismatch(store, tmp_path, capsys):
    script = tmp_path / "declares.py"
    script.write_text(DECLARING)
    env = dict(os.environ, PRECIP_RECORDS=str(store.root))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (run_id,) = [p.name for p in store.run_dirs()]
    records = ["--records", str(store.root)]
    assert main([*records, "run", "--playback", run_id, str(script)]) == 0
    assert "all 6 recorded calls matched" in capsys.readouterr().out
    script.write_text(DECLARING.replace('name="word"', 'name="another"'))
    assert main([*records, "run", "--playback", run_id, str(script)]) == 1
    out = capsys.readouterr().out
    assert "call #4 does not match the recording" in out, out
    assert "'name': 'word'" in out and "'name': 'another'" in out
