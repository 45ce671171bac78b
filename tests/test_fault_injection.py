"""SIGKILL anywhere in a run: nothing announced is lost, recover makes the run intact, and
gc --terminate leaves no instance process behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from precip_repro.cli import main
from precip_repro.clouds.local import live_local_instances
from precip_repro.record import LogReader, RunStore, verify
from precip_repro.record.store import EVENTS

SCRIPT = """
import sys
from pathlib import Path
from precip_repro import LocalExperiment

here = Path(sys.argv[1])
exp = LocalExperiment("killed")
print("run", exp.run_id, flush=True)


def announce(step):
    # What the script told the world it had done: the record must keep at least that.
    print("step", step, exp.digest, flush=True)


announce("start")
exp.provision("default", count=2, tags=["w"])
announce("provision")
exp.wait()
announce("wait")
exp.put(["w"], str(here / "input.bin"), "/tmp/input.bin")
announce("put")
exp.run(["w"], "sha256sum /tmp/input.bin; head -c 300000 /dev/urandom | base64")
announce("run")
exp.get(["w"], "/tmp/input.bin", str(here / "back.bin"))
announce("get")
exp.run(["w"], "sleep 0.2; echo late")
announce("run-late")
exp.deprovision()
announce("deprovision")
"""

STEPS = ("start", "provision", "wait", "put", "run", "get", "run-late")

# Kill points: after which announcement, and how long after it (into the next step).
_RNG = random.Random(20261204)
KILL_POINTS = [(step, round(_RNG.uniform(0.0, 0.25), 3)) for step in STEPS] + [
    ("start", 0.0),
    ("wait", 0.0),
]


@pytest.mark.parametrize("after, delay", KILL_POINTS)
def test_a_run_killed_at_any_point_keeps_what_it_announced_and_recovers(
    tmp_path: Path, after: str, delay: float
) -> None:
    store = RunStore(tmp_path / "records")
    (tmp_path / "input.bin").write_bytes(os.urandom(2_000_000))
    script = tmp_path / "killed.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PRECIP_RECORDS=str(store.root)),
    )
    assert proc.stdout is not None
    announced: dict[str, str] = {}
    run_id = proc.stdout.readline().split()[1]
    while True:
        line = proc.stdout.readline()
        assert line, f"the script ended before announcing {after}"
        _, step, digest = line.split()
        announced[step] = digest
        if step == after:
            break
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    started = [s.instance_id for s in live_local_instances() if s.run == run_id]
    if after in ("provision", "wait", "put", "run", "get"):
        assert len(started) == 2  # killed while both ran: gc must end them

    assert main(["--records", str(store.root), "gc", "--terminate"]) == 0
    assert main(["--records", str(store.root), "recover", run_id]) == 0

    run_dir = store.root / run_id
    verdict = verify(run_dir)
    assert verdict.state == "intact", verdict.reason
    hashes = {event.hash for event in LogReader(run_dir / EVENTS)}
    lost = {step: digest for step, digest in announced.items() if digest not in hashes}
    assert not lost, f"announced but not in the record: {lost}"
    assert not [s for s in live_local_instances() if s.run == run_id]
    for instance in started:  # no process of theirs is left (their paths name them)
        leftover = subprocess.run(
            ["pgrep", "-f", instance], capture_output=True, text=True, check=False
        )
        assert leftover.stdout.strip() == "", f"{instance} left processes behind"
