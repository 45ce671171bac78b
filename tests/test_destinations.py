"""A path the user names for output is written through what it is, never replaced by it."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from precip_repro import TransferFailed
from precip_repro.cli import main
from precip_repro.destinations import write_bytes
from tests.helpers import ready, record_sample_run


@pytest.fixture
def null_device(tmp_path):
    """A character device node of the test's own: /dev/null's numbers (1, 3)."""
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return node


def test_a_regular_file_is_replaced_whole_keeping_its_mode(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old")
    out.chmod(0o640)
    write_bytes(out, b"new")
    assert out.read_bytes() == b"new"
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_link_is_followed_and_stays_a_link(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_bytes(link, b"through the link")
    assert link.is_symlink()
    assert target.read_bytes() == b"through the link"


def test_a_device_is_written_through_and_stays_a_device(null_device):
    write_bytes(null_device, b"discarded")
    assert stat.S_ISCHR(null_device.stat().st_mode)


def test_a_full_device_says_so_naming_the_path(tmp_path):
    full = tmp_path / "full"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # /dev/full's numbers
    with pytest.raises(OSError, match="No space left on device") as raised:
        write_bytes(full, b"x")
    assert raised.value.filename == str(full)
    assert stat.S_ISCHR(full.stat().st_mode)


def test_a_named_pipe_is_written_through_to_its_reader(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_bytes()))
    reader.start()
    write_bytes(pipe, b"to the reader")
    reader.join(timeout=10)
    assert got == [b"to the reader"]
    assert stat.S_ISFIFO(pipe.stat().st_mode)


def test_a_block_device_or_socket_is_refused_untouched(tmp_path):
    disk = tmp_path / "disk"
    os.mknod(disk, stat.S_IFBLK | 0o600, os.makedev(7, 200))  # a loop device's numbers
    with pytest.raises(OSError, match="is a block device"):
        write_bytes(disk, b"x")
    assert stat.S_ISBLK(disk.stat().st_mode)


def test_report_to_a_device_writes_through_it_and_leaves_it_a_device(
    capsys, store, null_device, tmp_path
):
    run = record_sample_run(store)
    code = main(["--records", str(store.root), "report", run.id, "-o", str(null_device)])
    assert code == 0
    assert stat.S_ISCHR(null_device.stat().st_mode)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_bytes()))
    reader.start()
    assert main(["--records", str(store.root), "report", run.id, "-o", str(pipe)]) == 0
    reader.join(timeout=10)
    assert got[0].startswith(b"<!DOCTYPE html>")
    assert stat.S_ISFIFO(pipe.stat().st_mode)


def test_report_to_a_block_device_is_one_clear_line(capsys, store, tmp_path):
    run = record_sample_run(store)
    disk = tmp_path / "disk"
    os.mknod(disk, stat.S_IFBLK | 0o600, os.makedev(7, 200))
    capsys.readouterr()
    code = main(["--records", str(store.root), "report", run.id, "-o", str(disk)])
    _, err = capsys.readouterr()
    assert code == 1
    assert err.count("\n") == 1
    assert f"{disk} is a block device" in err and "choose another file" in err
    assert stat.S_ISBLK(disk.stat().st_mode)


def test_get_to_a_device_is_refused_and_to_a_link_writes_where_it_points(
    local_experiment, null_device, tmp_path
):
    exp = ready(local_experiment, "get-special")
    exp.run([], "echo payload > /tmp/out.txt")
    with pytest.raises(TransferFailed, match="it is a character device, not a file"):
        exp.get([], "/tmp/out.txt", null_device)
    assert stat.S_ISCHR(null_device.stat().st_mode)
    target = tmp_path / "results.txt"
    link = tmp_path / "latest.txt"
    link.symlink_to(target)
    exp.get([], "/tmp/out.txt", link)
    assert link.is_symlink()
    assert target.read_text() == "payload\n"


def test_report_to_dev_stdout_reaches_a_pipe(store, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    run = record_sample_run(store)
    console = Path(sys.executable).parent / "precip-repro"
    done = subprocess.run(
        [str(console), "--records", str(store.root), "report", run.id, "-o", "/dev/stdout"],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"<!DOCTYPE html>")
