"""put and get: what the record says moved is what is there, at both ends."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from precip_repro import TransferFailed, finish_run, verify
from precip_repro.record import LogReader
from precip_repro.record.store import EVENTS
from tests.helpers import in_threads, ready


def of_type(run_path: Path, kind: str) -> list[dict[str, Any]]:
    return [event.data for event in LogReader(run_path / EVENTS) if event.type == kind]


def test_a_put_into_a_full_filesystem_fails_and_records_no_file(local_experiment, tmp_path):
    exp = ready(local_experiment, "put-full")
    # A real tmpfs of 1 MiB inside the instance (its own mount namespace).
    exp.run([], "mkdir -p /mnt/small && mount -t tmpfs -o size=1m tmpfs /mnt/small")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3_000_000))

    with pytest.raises(TransferFailed) as failed:
        exp.put([], big, "/mnt/small/big.bin")

    message = str(failed.value)
    assert "cannot write /mnt/small/big.bin" in message
    assert "full" in message and "of 3000000 bytes" in message
    # Nothing truncated is left for a later command to take for the file sent.
    codes, _, _ = exp.run([], "test -e /mnt/small/big.bin", check_exit_code=False)
    assert codes == [1]
    run_path = exp.run_path
    finish_run()
    assert of_type(run_path, "file.put") == []
    assert [e["error"]["type"] for e in of_type(run_path, "call.failed")] == ["TransferFailed"]
    assert verify(run_path).state == "intact"


def test_a_put_to_a_file_that_takes_no_writes_fails(local_experiment, tmp_path):
    exp = ready(local_experiment, "put-proc")
    data = tmp_path / "data.txt"
    data.write_text("not a kernel version\n")

    with pytest.raises(TransferFailed, match=r"cannot write /proc/version.*refused the write"):
        exp.put([], data, "/proc/version")

    _, outs, _ = exp.run([], "cat /proc/version")
    assert outs[0].startswith("Linux version")


def test_a_put_that_arrives_whole_records_the_bytes_there(local_experiment, tmp_path):
    exp = ready(local_experiment, "put-whole")
    exp.run([], "mkdir -p /mnt/small && mount -t tmpfs -o size=4m tmpfs /mnt/small")
    data = tmp_path / "fits.bin"
    data.write_bytes(os.urandom(3_000_000))

    exp.put([], data, "/mnt/small/fits.bin")

    _, outs, _ = exp.run([], "sha256sum < /mnt/small/fits.bin")
    recorded = of_type(exp.run_path, "file.put")[0]["content"]["sha256"]
    assert outs[0].split()[0] == recorded == hashlib.sha256(data.read_bytes()).hexdigest()


def test_gets_to_one_path_from_threads_leave_the_file_the_record_names_last(
    local_experiment, tmp_path
):
    exp = ready(local_experiment, "get-race")
    exp.run([], "head -c 5000000 /dev/urandom > /tmp/a; head -c 5000000 /dev/urandom > /tmp/b")
    (tmp_path / "results").mkdir()
    target = tmp_path / "results" / "out.bin"

    for _ in range(5):
        errors = in_threads(
            lambda: exp.get([], "/tmp/a", target), lambda: exp.get([], "/tmp/b", target)
        )
        assert errors == []
        on_disk = hashlib.sha256(target.read_bytes()).hexdigest()
        last = of_type(exp.run_path, "file.got")[-1]
        assert last["local_path"] == str(target)
        assert last["content"]["sha256"] == on_disk
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]  # no partial files
    run_path = exp.run_path
    finish_run()
    assert len(of_type(run_path, "file.got")) == 10


GETTER = """
import sys
from precip_repro import LocalExperiment
exp = LocalExperiment("getter", record=False)
exp.provision("default")
exp.wait()
exp.run([], f"head -c 5000000 /dev/urandom > /tmp/src")
print("ready", flush=True)
sys.stdin.readline()
for _ in range(5):
    exp.get([], "/tmp/src", sys.argv[1])
_, outs, _ = exp.run([], "sha256sum < /tmp/src")
print(outs[0].split()[0], flush=True)
exp.deprovision()
"""


def test_gets_to_one_path_from_two_processes_each_write_a_whole_file(tmp_path):
    script = tmp_path / "getter.py"
    script.write_text(textwrap.dedent(GETTER))
    target = tmp_path / "shared.bin"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(target)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:  # both instances booted before either starts getting
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    sources = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        sources.append(out.strip())

    assert hashlib.sha256(target.read_bytes()).hexdigest() in sources
    assert not [p.name for p in tmp_path.iterdir() if "precip-partial" in p.name]
