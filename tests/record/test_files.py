"""A run sent for review is untrusted input: its files are read as regular files, bounded."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from precip_repro.exceptions import RecordCorrupted
from precip_repro.record import verify
from precip_repro.record.files import read_bounded
from precip_repro.record.store import CHECKPOINT, EVENTS
from tests.helpers import record_sample_run


@pytest.fixture
def hostile(store, tmp_path):
    """A copy of a finished run, for a file of it to be replaced by something hostile."""
    run = record_sample_run(store)
    copy = tmp_path / "received" / run.id
    shutil.copytree(run.path, copy)
    return copy


def replace_with_link(path: Path, target: str) -> None:
    path.unlink()
    path.symlink_to(target)


def replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def replace_with_sparse(path: Path) -> None:
    path.unlink()
    with path.open("wb") as f:
        f.truncate(50 << 30)  # 50 GB of holes: nothing on disk, everything to read


@pytest.mark.parametrize("name", [CHECKPOINT, EVENTS])
@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: replace_with_link(p, "/dev/zero"), "is a symbolic link"),
        (replace_with_fifo, "is a named pipe, not a file"),
        (lambda p: replace_with_link(p, "/etc/hostname"), "is a symbolic link"),
    ],
)
def test_a_run_file_that_is_a_link_or_pipe_is_corrupt_at_once(hostile, name, make, says):
    make(hostile / name)
    verdict = run_verify(hostile)
    assert verdict.state == "corrupt"
    assert f"{hostile / name} {says}" in verdict.reason


def test_a_sparse_50_gb_checkpoint_is_corrupt_without_reading_it(hostile):
    replace_with_sparse(hostile / CHECKPOINT)
    verdict = run_verify(hostile)
    assert verdict.state == "corrupt"
    assert "holds more than 4,096 bytes" in verdict.reason


def run_verify(run_dir: Path):
    """verify in a child process with 512 MB of address space and 20 s: a run that makes
    it read without end fails the test instead of the machine."""
    code = (
        "import resource, sys, json\n"
        "resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))\n"
        "from precip_repro.record import verify\n"
        "v = verify(__import__('pathlib').Path(sys.argv[1]))\n"
        "print(json.dumps({'state': v.state, 'reason': v.reason}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(run_dir)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    import json
    from types import SimpleNamespace

    return SimpleNamespace(**json.loads(done.stdout))


def test_the_cli_says_corrupt_and_exits_1_without_a_traceback(hostile):
    replace_with_fifo(hostile / CHECKPOINT)
    console = Path(sys.executable).parent / "precip-repro"
    done = subprocess.run(
        [str(console), "--records", str(hostile.parent), "verify", hostile.name],
        capture_output=True,
        text=True,
        timeout=20,  # a pipe read without a writer would hang: fail instead
        check=False,
    )
    assert done.returncode == 1
    assert "corrupt" in done.stdout and "is a named pipe" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_read_bounded_reads_a_small_regular_file_and_says_none_when_absent(tmp_path):
    small = tmp_path / "small"
    small.write_bytes(b"x" * 10)
    assert read_bounded(small, limit=10, what="file", run=None) == b"x" * 10
    assert read_bounded(tmp_path / "absent", limit=10, what="file", run=None) is None
    with pytest.raises(RecordCorrupted, match="holds more than 9 bytes"):
        read_bounded(small, limit=9, what="file", run=None)
    assert stat.S_ISREG(small.stat().st_mode)


def test_verify_of_the_untouched_copy_is_intact(hostile):
    assert verify(hostile).state == "intact"


def test_a_blob_that_is_a_link_to_a_good_copy_elsewhere_is_corrupt(hostile, tmp_path):
    blob = next(p for p in (hostile / "objects").rglob("*") if p.is_file())
    copy = tmp_path / "elsewhere"
    copy.write_bytes(blob.read_bytes())
    blob.unlink()
    blob.symlink_to(copy)
    verdict = verify(hostile)
    assert verdict.state == "corrupt"
    assert "is a symbolic link" in verdict.reason


def test_a_blob_of_another_size_is_corrupt_without_being_hashed(hostile):
    blob = next(p for p in (hostile / "objects").rglob("*") if p.is_file())
    blob.chmod(0o644)
    with blob.open("ab") as f:
        f.truncate(50 << 30)  # sparse: hashing it would take minutes
    verdict = run_verify(hostile)
    assert verdict.state == "corrupt" and "(not hashed)" in verdict.reason
