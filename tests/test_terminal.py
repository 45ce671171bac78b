"""Progress at the terminal: drawn live on a pseudo-terminal, plain lines when piped,
nothing with --quiet; NO_COLOR honoured."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from precip_repro import progress
from precip_repro.terminal import PlainLines, ProgressBoard

SCRIPT = """\
import os
from precip_repro import LocalExperiment

exp = LocalExperiment("shown")
exp.provision("default", count=2)
exp.wait()
with open("data.bin", "wb") as f:
    f.write(os.urandom(2 << 20))
exp.put([], "data.bin", "/tmp/data.bin")
print("the script's own output")
exp.deprovision()
"""
ANSI = re.compile(rb"\x1b\[")
COLOUR = re.compile(rb"\x1b\[[0-9;]*(?:3[0-7]|9[0-7]|38;[0-9;]+)m")


def command(tmp_path: Path, *options: str) -> list[str]:
    script = tmp_path / "shown.py"
    script.write_text(SCRIPT)
    records = str(tmp_path / "records")
    return [sys.executable, "-m", "precip_repro.cli", "--records", records, *options, "run",
            str(script)]  # fmt: skip


def test_piped_progress_is_plain_lines_without_escape_codes(tmp_path):
    done = subprocess.run(command(tmp_path), cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    err = done.stderr.decode()
    assert not ANSI.search(done.stderr)
    for slot in ("e1.p1.0", "e1.p1.1"):
        assert re.search(rf"^{slot} i-\S+: waiting after 0\.0 s \(state \w+\)$", err, re.M), err
        assert re.search(rf"^{slot} i-\S+: ready after \d+\.\d s$", err, re.M), err
        assert re.search(rf"^put {slot} /tmp/data.bin: 2.1 MB in \d+\.\d s \(", err, re.M), err
    assert b"the script's own output" in done.stdout


def test_quiet_shows_no_progress(tmp_path):
    done = subprocess.run(command(tmp_path, "--quiet"), cwd=tmp_path, capture_output=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert b"ready after" not in done.stderr and b"put e1" not in done.stderr


def on_a_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> bytes:
    """What ``args`` writes on stderr when it is a pseudo-terminal (stdout piped)."""
    master, slave = pty.openpty()
    child = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            child.kill()
            pytest.fail("no output from the child for 120 s")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert child.wait(timeout=60) == 0, seen.decode(errors="replace")
    assert child.stdout is not None and b"the script's own output" in child.stdout.read()
    os.close(master)
    return bytes(seen)


def test_on_a_terminal_progress_is_drawn_live_and_no_color_is_honoured(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(TERM="xterm-256color", COLUMNS="120")
    drawn = on_a_terminal(command(tmp_path), tmp_path, env)
    assert b"instances:" in drawn and b"of 2 ready" in drawn
    assert ANSI.search(drawn)  # cursor movement: the table redrawn in place
    plain = on_a_terminal(command(tmp_path), tmp_path, {**env, "NO_COLOR": "1"})
    assert b"instances:" in plain
    assert COLOUR.search(drawn) and not COLOUR.search(plain)


def test_the_board_shows_who_waits_and_transfers_under_way():
    from rich.console import Console

    board = ProgressBoard()
    board(progress.InstanceProgress(slot="e1.p1.0", instance_id="i-1", state="ready",
                                    detail="answers ssh", elapsed_s=3))  # fmt: skip
    board(progress.InstanceProgress(slot="e1.p1.1", instance_id="i-2", state="waiting",
                                    detail="state pending", elapsed_s=4))  # fmt: skip
    board(progress.TransferProgress(slot="e1.p1.0", instance_id="i-1", direction="get",
                                    path="/out.csv", done=5_000_000, total=None,
                                    elapsed_s=2.0))  # fmt: skip
    board(progress.StepProgress(step=3, of=7, call=5, label="e1.run", verdict="reproduced",
                                verdicts={"reproduced": 2, "diverged": 1}))  # fmt: skip
    console = Console(width=120, record=True)
    console.print(board)
    text = console.export_text()
    assert "instances: 1 of 2 ready" in text
    assert "e1.p1.1" in text and "state pending" in text and "i-1 " not in text
    assert "/out.csv" in text and "5.0 MB" in text and "2.5 MB/s" in text
    assert "step 3 of 7 (1 diverged, 2 reproduced)" in text


def test_plain_lines_keep_one_line_per_state_change(tmp_path):
    out = (tmp_path / "log").open("w+")
    lines = PlainLines(out)
    for detail in ("state pending", "last attempt: refused", "last attempt: refused again"):
        lines(progress.InstanceProgress(slot="e1.p1.0", instance_id="i-1", state="waiting",
                                        detail=detail, elapsed_s=1))  # fmt: skip
    lines(progress.InstanceProgress(slot="e1.p1.0", instance_id="i-1", state="ready",
                                    detail="answers ssh", elapsed_s=2))  # fmt: skip
    out.seek(0)
    assert out.read().splitlines() == [
        "e1.p1.0 i-1: waiting after 1.0 s (state pending)",
        "e1.p1.0 i-1: ready after 2.0 s",
    ]


def test_log_lines_are_utc_and_uncoloured_whatever_the_local_zone(tmp_path):
    from datetime import UTC, datetime

    env = dict(os.environ, TZ="Asia/Tokyo")  # nine hours from UTC: local time would show
    env.pop("NO_COLOR", None)
    done = subprocess.run([*command(tmp_path, "-v", "--quiet")], cwd=tmp_path, env=env,
                          capture_output=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert not ANSI.search(done.stderr)
    stamps = re.findall(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z) \[info", done.stderr, re.M)
    assert stamps, done.stderr.decode()
    logged = datetime.fromisoformat(stamps[0].decode().replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - logged).total_seconds()) < 300
