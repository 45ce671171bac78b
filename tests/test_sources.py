"""What ran besides the calls: the script's own modules are recorded with the run, an
installed launcher is not taken for the script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

USES_ITS_OWN_MODULES = """
import sys
import helper  # beside the script, imported before the run began
from precip_repro import LocalExperiment

with LocalExperiment("modules", records=sys.argv[1]) as exp:
    exp.secret("PRECIP_TEST_MODULE_KEY", "key-in-a-module-0042")
    exp.note(helper.GREETING)
    from analysis import stats  # below the script's directory, imported during the run
    exp.note(str(stats.MEAN))
    import vendored_keyholder  # holds the secret: kept by hash only
"""


def test_a_runs_record_holds_the_scripts_own_modules_and_diff_names_a_changed_one(tmp_path):
    from precip_repro import diff_runs, load_run, render_text, verify
    from precip_repro.record import LogReader
    from precip_repro.record.store import EVENTS

    project = tmp_path / "project"
    (project / "analysis").mkdir(parents=True)
    (project / "analysis" / "__init__.py").write_text("")
    (project / "analysis" / "stats.py").write_text("MEAN = 4\n")
    (project / "vendored_keyholder.py").write_text("KEY = 'key-in-a-module-0042'\n")
    (project / "main.py").write_text(USES_ITS_OWN_MODULES)
    records = tmp_path / "records"
    runs: list[Path] = []
    for greeting in ("hello", "hullo"):
        (project / "helper.py").write_text(f"GREETING = {greeting!r}\n")
        done = subprocess.run(
            [sys.executable, "main.py", str(records)],
            cwd=project, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        (run,) = set(records.iterdir()) - set(runs)
        runs.append(run)
    events = list(LogReader(runs[0] / EVENTS))
    loaded = [(e.seq, e.data["name"]) for e in events if e.type == "module.loaded"]
    assert loaded[0] == (1, "helper")  # right after run.started: imported before the run
    assert [name for _, name in loaded] == [
        "helper", "analysis", "analysis.stats", "vendored_keyholder"
    ]  # fmt: skip
    assert all(not name.startswith(("precip_repro", "site", "_")) for _, name in loaded)
    view = load_run(runs[0])
    content = view.modules["vendored_keyholder"].content
    assert content is not None and content.withheld
    assert "key-in-a-module-0042" not in (runs[0] / EVENTS).read_text()
    assert verify(runs[0]).state == "intact"
    text = "\n".join(render_text(diff_runs(view, load_run(runs[1]))))
    assert "run module helper:" in text
    assert "-GREETING = 'hello'" in text and "+GREETING = 'hullo'" in text
    assert "analysis" not in text and "run script" not in text


def test_an_installed_launcher_running_the_users_code_is_not_recorded_as_their_script(tmp_path):
    from precip_repro.record import LogReader
    from precip_repro.record.store import EVENTS

    # As a notebook runs: the program is ipykernel's launcher, the experiment is the user's.
    launcher = tmp_path / "venv" / "lib" / "site-packages" / "ipykernel_launcher.py"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(
        "import sys\n"
        "from precip_repro import LocalExperiment\n"
        "LocalExperiment('in-a-notebook', records=sys.argv[1]).close()\n"
    )
    records = tmp_path / "records"
    done = subprocess.run(
        [sys.executable, str(launcher), str(records)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (run,) = records.iterdir()
    assert "-in-a-notebook-" in run.name
    started = next(iter(LogReader(run / EVENTS))).data
    assert started["script"] is None and started["script_path"] is None
