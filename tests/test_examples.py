"""Our versions of the seed's three experiments run as they are, and are recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from precip_repro import verify
from precip_repro.record import LogReader, RunStore
from precip_repro.record.store import EVENTS

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str, store: RunStore) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PRECIP_RECORDS=str(store.root))
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "name, expected",
    [
        ("hello_world.py", "Hello world from an experiment instance"),
        ("multicloud.py", "Hello world from cloud two"),
    ],
)
def test_an_example_runs_and_is_recorded_with_its_script(name, expected, store):
    done = run_example(name, store)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    (run_dir,) = list(store.run_dirs())
    verdict = verify(run_dir)
    assert (verdict.state, verdict.status) == ("intact", "ok")
    started = next(iter(LogReader(run_dir / EVENTS))).data
    assert started["script_path"].endswith(name)
    script = run_dir / "objects" / started["script"]["sha256"][:2] / started["script"]["sha256"][2:]
    assert script.read_bytes() == (EXAMPLES / name).read_bytes()


def test_the_pool_workers_reach_the_master_by_its_private_hostname(store):
    done = run_example("condor_pool.py", store)
    assert done.returncode == 0, done.stderr
    (run_dir,) = list(store.run_dirs())
    events = [e.data for e in LogReader(run_dir / EVENTS)]
    hostnames = [e for e in events if e.get("method") == "get_private_hostnames"]
    master_call = hostnames[0]["call"]
    master_addr = next(
        e["result"][0] for e in events if e.get("call") == master_call and "result" in e
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"worker joined {master_addr}: pool master") for line in lines)
    assert verify(run_dir).status == "ok"


def test_precip_repro_run_records_a_script_and_prints_id_and_digest(store):
    cli = Path(sys.executable).parent / "precip-repro"
    done = subprocess.run(
        [str(cli), "--records", str(store.root), "run", str(EXAMPLES / "hello_world.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = list(store.run_dirs())
    assert f"recorded run {run_dir.name} (ok)" in done.stdout
    digest = done.stdout.split("digest  ")[1].split()[0]
    assert verify(run_dir, digest=digest).state == "intact"
