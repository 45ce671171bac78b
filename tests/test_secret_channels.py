"""One registered secret in every string the API accepts reaches no record, report or log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from precip_repro.cli import main
from tests.helpers import assert_nowhere_in

SECRET = "Sekr1tValue42"

SCRIPT = """
import sys
from precip_repro import ExperimentException, LocalExperiment, register_secret

S = sys.argv[1]
register_secret("TOKEN", S)
here = __import__("pathlib").Path(sys.argv[2])
exp = LocalExperiment(f"lab-{S}")
tag = f"tag-{S}"


def shown(call):
    try:
        call()
    except ExperimentException as exc:
        print(f"{type(exc).__name__}: {exc}", flush=True)


shown(lambda: exp.provision("default", count=S))  # InvalidOption prints the value
exp.provision(str(here / f"img-{S}"), f"type-{S}", 1, [tag])
exp.wait([tag])
exp.run([tag], f"echo out {S}; echo err {S} >&2")
exp.put([tag], str(here / f"in-{S}.txt"), f"/tmp/in-{S}.txt")
exp.get([tag], f"/tmp/in-{S}.txt", str(here / f"out-{S}.txt"))
exp.copy_and_run([tag], str(here / f"job-{S}.sh"), [S])
exp.note(f"note {S}", **{f"k_{S}": S, "nested": {f"n_{S}": [S]}})
print(exp.list([f"none-{S}"]))  # warns naming the tags that matched nothing
shown(lambda: exp.run([f"none-{S}"], "true"))  # NoInstanceMatches names the tags
shown(lambda: exp.run([tag], f"exit 3 # {S}"))  # CommandFailed shows the command
shown(lambda: exp.run([tag], "true", user=f"u{S}"))  # the user does not exist
exp.deprovision([tag])
exp.close()
shown(lambda: exp.run([tag], f"echo {S}"))  # closed, named
"""


def test_a_secret_in_every_string_the_api_takes_is_nowhere_in_store_reports_or_logs(tmp_path):
    store = tmp_path / "records"
    (tmp_path / f"img-{SECRET}" / "opt").mkdir(parents=True)
    (tmp_path / f"in-{SECRET}.txt").write_text("plain data\n")
    job = tmp_path / f"job-{SECRET}.sh"
    job.write_text('#!/bin/sh\necho "job got $1"\n')
    job.chmod(0o755)
    script = tmp_path / f"script-{SECRET}.py"
    script.write_text(SCRIPT)
    console = Path(sys.executable).parent / "precip-repro"

    done = subprocess.run(
        [str(console), "--records", str(store), "run", str(script), SECRET, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, PRECIP_RECORDS=str(store)),
    )

    assert done.returncode == 0, done.stderr
    for name in ("InvalidOption", "NoInstanceMatches", "CommandFailed", "ExperimentClosed"):
        assert f"{name}: " in done.stdout  # each channel was really exercised
    assert "${secret:TOKEN}" in done.stdout and "${secret:TOKEN}" in done.stderr
    assert SECRET not in done.stdout
    assert SECRET not in done.stderr
    (run_dir,) = [p for p in store.iterdir() if p.is_dir()]
    reports = tmp_path / "reports"
    reports.mkdir()
    for fmt in ("html", "md"):
        out = reports / f"report.{fmt}"
        assert (
            main(["--records", str(store), "report", run_dir.name, "--format", fmt, "-o", str(out)])
            == 0
        )
    shown = subprocess.run(
        [str(console), "--records", str(store), "show", run_dir.name],
        capture_output=True,
        text=True,
        check=True,
    )
    assert SECRET not in shown.stdout + shown.stderr
    assert_nowhere_in(store, SECRET)
    assert_nowhere_in(reports, SECRET)
    assert SECRET not in run_dir.name
