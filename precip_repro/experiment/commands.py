"""Commands on instances: run in turn (stopping at the first failure, as the seed did) or
fanned out, each recorded with its exact output; and ``copy_and_run``'s script sent, run
and removed."""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path

from precip_repro.exceptions import CommandFailed, CommandTimeout, InvalidOption
from precip_repro.experiment.fanout import fan_out
from precip_repro.experiment.instance import Instance
from precip_repro.experiment.reach import Reacher
from precip_repro.experiment.recording import Call, Calls
from precip_repro.experiment.transfers import Transfers
from precip_repro.messages import NO_EXIT_STATUS, STDERR_TAIL, shown_command
from precip_repro.record.events import CommandFinished
from precip_repro.record.redact import Redactor
from precip_repro.remote_scripts import temp_script_path
from precip_repro.ssh import MAX_COMMAND, ExecResult

__all__ = ["Commands", "Outputs", "check_command", "check_line_endings"]

Outputs = tuple[list[int | None], list[str], list[str]]
"""What run() and copy_and_run() return: exit codes, stdouts and stderrs, in instance order."""


def check_command(cmd: str) -> None:
    """Refuse, before anything is sent, a command no ssh server can run as given."""
    if "\0" in cmd:
        raise InvalidOption(
            "cmd",
            "<a command holding a NUL character>",
            ["a command without NUL characters (ssh passes it as a C string)"],
        )
    size = len(cmd.encode("utf-8", "surrogateescape"))
    if size > MAX_COMMAND:
        raise InvalidOption(
            "cmd",
            f"<{size} bytes>",
            [
                f"at most {MAX_COMMAND} bytes (the remote shell gets the command as one "
                "argument, which Linux caps at 128 KiB): write the commands to a file and "
                "use copy_and_run"
            ],
        )


def check_line_endings(script: Path) -> None:
    """A script saved on Windows (CRLF) fails on every instance with a riddle —
    ``/bin/bash^M: bad interpreter``, ``$'\\r': command not found`` — after it was sent:
    refused before, saying why. Its bytes are not changed behind the user's back."""
    with script.open("rb") as f:
        first = f.readline(4096)
    if first.endswith(b"\r\n"):
        shown = first[:-2].decode("utf-8", "replace")
        raise InvalidOption(
            "local_script",
            str(script),
            [
                "a script whose lines end in LF, as Unix has them (this one's first line, "
                f"{shown!r}, ends in CRLF, Windows' line ending: the instance would look for "
                f"{shown.removeprefix('#!').strip()!r} + '\\r'); convert it: dos2unix {script}"
            ],
        )


class Commands:
    """Runs an experiment's commands."""

    def __init__(
        self, *, reacher: Reacher, calls: Calls, transfers: Transfers, redactor: Redactor
    ) -> None:
        self.reacher = reacher
        self.calls = calls
        self.transfers = transfers
        self.redactor = redactor

    def run(
        self,
        call: Call,
        targets: list[Instance],
        cmd: str,
        user: str,
        check_exit_code: bool,
        timeout: float | None,
        *,
        fan: bool,
        workers: int,
    ) -> Outputs:
        results = self.run_on(
            call, targets, cmd, user, check_exit_code, timeout, fan=fan, workers=workers
        )
        call.result = {"exit_codes": [r.exit_code for _, r in results]}
        return self.unpack(results)

    def copy_and_run(
        self,
        call: Call,
        targets: list[Instance],
        script: Path,
        script_args: list[str],
        user: str,
        check_exit_code: bool,
        timeout: float | None,
        *,
        fan: bool,
        workers: int,
    ) -> Outputs:
        remote = temp_script_path()
        quoted = " ".join(shlex.quote(arg) for arg in script_args)
        cmd = f"{shlex.quote(remote)} {quoted}".strip()

        def put_one(inst: Instance) -> None:
            self.transfers.put_one(call, inst, script, remote, user, temporary=True)
            self.reacher.connection(inst, user).chmod(remote, 0o755)

        try:
            for _, error in fan_out(put_one, targets, parallel=fan, workers=workers):
                if error is not None:
                    raise error
            results = self.run_on(
                call, targets, cmd, user, check_exit_code, timeout, fan=fan, workers=workers
            )
        finally:
            for inst in targets:
                with contextlib.suppress(Exception):
                    self.reacher.connection(inst, user).remove(remote)
        call.result = {"exit_codes": [r.exit_code for _, r in results]}
        return self.unpack(results)

    def run_on(
        self,
        call: Call,
        targets: list[Instance],
        cmd: str,
        user: str,
        check_exit_code: bool,
        timeout: float | None,
        *,
        fan: bool,
        workers: int,
    ) -> list[tuple[Instance, ExecResult]]:
        check_command(cmd)

        def one(inst: Instance) -> ExecResult:
            return self._exec(call, inst, cmd, user, timeout)

        outcomes: list[tuple[ExecResult | None, BaseException | None]] = []
        if fan:
            outcomes = fan_out(one, targets, parallel=True, workers=workers)
        else:
            for inst in targets:
                try:
                    result = one(inst)
                except Exception as exc:
                    outcomes.append((None, exc))
                    break
                outcomes.append((result, None))
                if check_exit_code and result.exit_code != 0:
                    break  # the seed stops at the first failure when running in turn
        failed = {
            inst.instance_id: outcome.exit_code
            for inst, (outcome, _) in zip(targets, outcomes, strict=False)
            if check_exit_code and outcome is not None and outcome.exit_code != 0
        }
        done: list[tuple[Instance, ExecResult]] = []
        for inst, (outcome, error) in zip(targets, outcomes, strict=False):
            if error is not None:
                raise error
            assert outcome is not None
            result = outcome
            if result.timed_out:
                fate = (
                    "could not be ended there: it may still be running until the instance "
                    "is deprovisioned"
                    if result.still_running
                    else "was ended, with everything it started there"
                )
                shown = shown_command(self.redactor.text(cmd))
                raise CommandTimeout(
                    f"{shown} on instance {inst.instance_id} ({inst.slot}) ran past its "
                    f"timeout of {timeout} s and {fate}",
                    instance=inst.instance_id,
                    slot=inst.slot,
                )
            if check_exit_code and result.exit_code != 0:
                tail = result.stderr.decode("utf-8", "replace")[-STDERR_TAIL:]
                exited = (
                    f"exited {result.exit_code}"
                    if result.exit_code not in (None, NO_EXIT_STATUS)
                    else f"ended without an exit status ({NO_EXIT_STATUS}: killed by a signal, "
                    "or its session was ended)"
                )
                # In parallel every instance ran: say which others failed too.
                others = [
                    f"{other.instance_id} ({other.slot}) exited {failed[other.instance_id]}"
                    for other in targets
                    if other is not inst and other.instance_id in failed
                ]
                also = f"; {len(others)} more failed too: {', '.join(others)}" if others else ""
                shown = shown_command(self.redactor.text(cmd))
                raise CommandFailed(
                    f"{shown} {exited} on instance {inst.instance_id} "
                    f"({inst.slot}); stderr ends: {tail.strip() or '(empty)'}{also}",
                    instance=inst.instance_id,
                    slot=inst.slot,
                    cmd=cmd,
                    exit_code=result.exit_code if result.exit_code is not None else -1,
                    stderr_tail=tail,
                    failed=failed,
                )
            done.append((inst, result))
        return done

    def _exec(
        self, call: Call, inst: Instance, cmd: str, user: str, timeout: float | None
    ) -> ExecResult:
        with self.reacher.reaching(inst):
            result = self.reacher.exec(inst, user, cmd, timeout=timeout)
        finished = CommandFinished(
            call=call.number,
            slot=inst.slot,
            instance_id=inst.instance_id,
            user=user,
            cmd=self.redactor.text(cmd),
            exit_code=result.exit_code,
            stdout=self.calls.output(result.stdout),
            stderr=self.calls.output(result.stderr),
            duration_ns=result.duration_ns,
        )
        self.calls.append(finished)
        self.calls.last_commands[inst.slot] = finished
        return result

    @staticmethod
    def unpack(
        results: list[tuple[Instance, ExecResult]],
    ) -> tuple[list[int | None], list[str], list[str]]:
        return (
            [r.exit_code for _, r in results],
            [r.stdout.decode("utf-8", "replace") for _, r in results],
            [r.stderr.decode("utf-8", "replace") for _, r in results],
        )
