"""The process's session: signals held back while instances are terminated."""

from __future__ import annotations

import subprocess
import sys

HELD_BY_A_WORKER = """
import os, signal, sys, threading, time
from precip_repro import LocalExperiment
from precip_repro.session import session

exp = LocalExperiment("held", records=sys.argv[1])  # installs the signal handlers

def cleaning_up():  # as wait() does when it replaces an instance that did not boot
    with session.shielded():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        print("CLEAN-UP DONE", flush=True)

worker = threading.Thread(target=cleaning_up)
worker.start()
try:
    worker.join()
    time.sleep(2)
    print("NEVER INTERRUPTED", flush=True)
except KeyboardInterrupt:
    print("INTERRUPTED AFTER THE CLEAN-UP", flush=True)
"""


def test_a_signal_held_by_a_worker_threads_clean_up_reaches_the_main_thread_after(tmp_path):
    script = tmp_path / "held.py"
    script.write_text(HELD_BY_A_WORKER)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "records")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.splitlines() == ["CLEAN-UP DONE", "INTERRUPTED AFTER THE CLEAN-UP"]
    assert "still deprovisioning" in done.stderr


EXITING = """
import sys
from precip_repro import LocalExperiment
exp = LocalExperiment("exiting", records=sys.argv[1])
exp.provision("default")
if sys.argv[2] == "inside":
    with exp:
        sys.exit({code})
if sys.argv[2] == "builtin":
    exit({code})
sys.exit({code})
"""


def test_sys_exit_of_a_script_run_directly_decides_how_its_run_ends(tmp_path):
    from precip_repro import verify
    from precip_repro.record import LogReader
    from precip_repro.record.store import EVENTS, RunStore

    for code, status, notes, where in (
        (0, "ok", [], "inside"),
        (0, "ok", [], "outside"),
        (3, "failed", [{"ended": "failed", "exit_status": 3}], "outside"),
        (3, "failed", [{"ended": "failed", "exit_status": 3}], "inside"),
        (3, "failed", [{"ended": "failed", "exit_status": 3}], "builtin"),
        (130, "interrupted", [{"ended": "interrupted", "exit_status": 130}], "outside"),
    ):
        store = RunStore(tmp_path / f"records-{code}-{where}")
        script = tmp_path / f"exiting_{code}.py"
        script.write_text(EXITING.format(code=code))
        done = subprocess.run(
            [sys.executable, str(script), str(store.root), where],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == code
        (run_dir,) = store.run_dirs()
        assert verify(run_dir).status == status
        found = [e.data["fields"] for e in LogReader(run_dir / EVENTS) if e.type == "note"]
        assert found == notes
