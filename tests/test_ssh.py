"""The ssh layer against real sshd instances: commands get a closed stdin, and quick
commands on a connection shared by many threads never make sshd drop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from precip_repro import CommandTimeout, InstanceUnreachable, ssh
from tests.helpers import in_threads, ready


def test_a_command_reading_stdin_sees_it_closed_at_once(local_experiment):
    exp = ready(local_experiment, "stdin")
    try:
        codes, outs, _ = exp.run([], "cat; echo read-to-the-end", timeout=10)
    except CommandTimeout as exc:  # stdin left open: cat waits for ever
        raise AssertionError("the command's stdin was not closed") from exc
    assert (codes, outs) == ([0], ["read-to-the-end\n"])


def test_quick_commands_from_many_threads_share_a_connection_without_it_dropping(
    local_experiment, tmp_path
):
    # An EOF sent after paramiko answered the server's CLOSE made sshd drop the connection
    # with every session on it (paramiko#1115): the quicker the command, the likelier.
    exp = ready(local_experiment, "quick")
    data = tmp_path / "data"
    data.write_bytes(b"x" * 100_000)

    def quick() -> None:
        for _ in range(40):
            assert exp.run([], "true")[0] == [0]

    def moving() -> None:
        for n in range(20):
            exp.put([], data, f"/tmp/data-{n}")

    assert in_threads(*[quick] * 8, moving, timeout=120) == []


def test_a_timed_out_command_is_ended_on_the_instance_with_all_it_started(local_experiment):
    exp = ready(local_experiment, "ends")
    started = "trap '' TERM; setsid sleep 2828 >/dev/null 2>&1 & exec sleep 2929"
    with pytest.raises(CommandTimeout, match="was ended, with everything it started there"):
        exp.run([], started, timeout=0.5)  # one ignores TERM, one left the session
    assert exp.run([], "pgrep -c -f 'sleep 2[89]2[89]'", check_exit_code=False)[1] == ["0\n"]


def test_a_timed_out_command_that_cannot_be_ended_says_it_may_still_run(
    local_experiment, monkeypatch
):
    exp = ready(local_experiment, "lingers")
    # As where it cannot be found or ended.
    monkeypatch.setattr(ssh.commands, "_END_MARKED", "exit 1")
    with pytest.raises(CommandTimeout, match="could not be ended there: it may still be"):
        exp.run([], "sleep 3030", timeout=0.5)


def test_a_background_process_holding_the_output_is_waited_for_and_said_why(
    local_experiment, monkeypatch, capsys
):
    monkeypatch.setattr(ssh.commands, "HELD_OUTPUT_WARNING", 0.5)
    exp = ready(local_experiment, "held")
    started = time.monotonic()
    codes, outs, _ = exp.run([], "sleep 3 & echo started")  # the sleep holds stdout
    assert time.monotonic() - started >= 3  # as OpenSSH's ssh: the output ends with it
    assert (codes, outs) == ([0], ["started\n"])
    err = capsys.readouterr().err
    assert "a process it started in the background still holds its output" in err
    assert exp.list()[0]["id"] in err
    exp.run([], "sleep 2 > /dev/null 2>&1 & echo at once")  # its output elsewhere: no word
    assert "background" not in capsys.readouterr().err


def test_more_threads_than_sshd_allows_sessions_share_an_instance_without_refusals(
    local_experiment, tmp_path
):
    exp = ready(local_experiment, "sessions")
    (data := tmp_path / "data").write_bytes(b"x" * 10_000)
    outputs: list[str] = []
    work = [
        *(lambda n=n: outputs.append(exp.run([], f"sleep 0.5; echo {n}")[1][0]) for n in range(16)),
        *(lambda n=n: exp.put([], data, f"/tmp/data-{n}") for n in range(8)),
    ]
    assert in_threads(*work, timeout=120) == []  # sshd allows 10 sessions on a connection
    assert sorted(outputs) == sorted(f"{n}\n" for n in range(16))


def _tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{current}/task/{current}/children").read_text()
            todo += [int(child) for child in children.split()]
    return found


@pytest.mark.parametrize("call", ["a command", "a transfer"])
def test_an_instance_that_stops_answering_fails_what_waits_on_it_naming_it(
    call, local_experiment, monkeypatch, tmp_path
):
    monkeypatch.setattr(ssh.pool, "ALIVE_INTERVAL", 0.2)
    monkeypatch.setattr(ssh.connection, "ALIVE_TIMEOUT", 1.5)
    exp = ready(local_experiment, "frozen")
    (inst,) = exp.list()
    frozen = _tree(exp.cloud._states[inst["id"]].launcher_pid)
    errors: list[BaseException] = []
    data = tmp_path / "data"
    data.write_bytes(b"x" * 1_000_000)

    def long_command() -> None:
        try:
            if call == "a command":
                exp.run([], "sleep 600")  # no timeout: only the dead connection can end it
            else:
                time.sleep(1)  # the instance is frozen by now
                exp.put([], data, "/tmp/data")
        except BaseException as exc:
            errors.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=long_command)
    worker.start()
    time.sleep(0.5)
    try:
        for pid in frozen:  # the whole instance hangs: its sshd answers nothing
            os.kill(pid, signal.SIGSTOP)
        worker.join(timeout=30)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert not worker.is_alive()
    assert time.monotonic() - started < 15
    (error,) = errors
    assert isinstance(error, InstanceUnreachable)
    assert error.instance == inst["id"] and inst["slot"] in str(error)
    assert "it answered nothing for 2 s" in str(error)


def test_a_connection_lost_mid_command_is_unreachable_not_a_failed_command(local_experiment):
    exp = ready(local_experiment, "dropped")
    with pytest.raises(InstanceUnreachable, match="the connection was lost while running"):
        exp.run([], "kill -9 $PPID; sleep 5")  # its sshd session ends: the connection with it
    assert exp.run([], "echo again")[1] == ["again\n"]  # a new connection


def test_paramikos_own_log_lines_stay_out_of_a_script_without_logging_set_up():
    # "Socket exception: Connection reset by peer" from paramiko's transport thread, printed
    # bare by logging's last resort beside our error that names the instance.
    code = (
        "import logging\n"
        "from precip_repro import LocalExperiment\n"
        "logging.getLogger('paramiko.transport').error('Socket exception: reset (104)')\n"
        "logging.getLogger('elsewhere').error('still shown')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Socket exception" not in done.stderr
    assert "still shown" in done.stderr


def test_a_connection_nothing_answers_says_what_may_drop_it():
    import paramiko

    # A listener whose backlog is full drops new SYNs, as a security group does.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = socket.create_connection(("127.0.0.1", port))
    pool = ssh.SshPool(paramiko.RSAKey.generate(1024), connect_timeout=0.5)
    endpoint = ssh.Endpoint(instance_id="i-0dropped", slot="e1.p1.0", host="127.0.0.1", port=port)
    try:
        with pytest.raises(InstanceUnreachable) as info:
            pool.connection(endpoint, "root")
    finally:
        held.close()
        listener.close()
        pool.close()
    assert info.value.instance == "i-0dropped"
    assert "nothing answered within 0.5 s" in str(info.value)
    assert f"a security group or firewall drops tcp/{port} from this machine" in str(info.value)


def test_a_channel_that_cannot_be_closed_on_a_broken_connection_hides_nothing(
    local_experiment, monkeypatch
):
    # When an instance dies mid-command, paramiko may or may not have seen the end before
    # the channel is closed; when it has not, closing raises EOFError. That must not replace
    # the command's outcome (it made test_an_unreachable_instance_raises_… fail at random).
    import paramiko

    exp = local_experiment("closing")
    exp.provision("default")
    exp.wait()

    def broken(self: paramiko.Channel) -> None:
        raise EOFError

    monkeypatch.setattr(paramiko.Channel, "close", broken)
    codes, outs, _ = exp.run([], "echo still here")
    assert codes == [0] and outs == ["still here\n"]
