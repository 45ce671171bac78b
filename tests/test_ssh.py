"""The ssh layer against real sshd instances: commands get a closed stdin, and quick
commands on a connection shared by many threads never make sshd drop it."""

from __future__ import annotations

from precip_repro import CommandTimeout
from tests.helpers import in_threads


def test_a_command_reading_stdin_sees_it_closed_at_once(local_experiment):
    exp = local_experiment("stdin")
    exp.provision("default")
    exp.wait()
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
    exp = local_experiment("quick")
    exp.provision("default")
    exp.wait()
    data = tmp_path / "data"
    data.write_bytes(b"x" * 100_000)

    def quick() -> None:
        for _ in range(40):
            assert exp.run([], "true")[0] == [0]

    def moving() -> None:
        for n in range(20):
            exp.put([], data, f"/tmp/data-{n}")

    assert in_threads(*[quick] * 8, moving, timeout=120) == []
