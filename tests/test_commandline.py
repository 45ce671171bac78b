"""The command-line core precip-repro and precip-replay share: statuses, one-line errors,
broken pipes, Ctrl-C, the common options and logging."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import sys

import pytest
import structlog

from precip_repro.cli import main as precip_repro
from precip_repro.cli.core import status_of
from precip_repro.commandline import (
    EXIT_BAD,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ErrorStatus,
    Parser,
    common_options,
    parse,
    run_command,
)
from precip_repro.exceptions import ExperimentException, RunNotFound
from precip_repro.record import Run
from precip_repro.record.payloads import Note
from replay.cli import main as precip_replay


def usage_or_cloud(exc: Exception) -> ErrorStatus | None:
    if isinstance(exc, RunNotFound):
        return ErrorStatus(EXIT_USAGE)
    if isinstance(exc, ExperimentException):
        return ErrorStatus(3, "the cloud failed")
    return None


def fails_with(exc: BaseException):
    def command() -> int:
        raise exc

    return command


def test_an_error_the_tool_expects_is_one_line_with_its_status(capsys):
    code = run_command("tool", fails_with(RunNotFound("no run 'x'")), status_of=usage_or_cloud)
    assert code == EXIT_USAGE
    assert capsys.readouterr().err == "tool: error: no run 'x'\n"
    code = run_command("tool", fails_with(ExperimentException("503")), status_of=usage_or_cloud)
    assert code == 3
    assert capsys.readouterr().err == "tool: the cloud failed: 503\n"


def test_a_bug_of_the_tool_shows_its_traceback_then_one_line_asking_for_a_report(capsys):
    code = run_command(
        "tool",
        fails_with(KeyError("slot")),
        status_of=usage_or_cloud,
        internal_status=3,
        after_internal_error="what it had started was stopped",
    )
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("Traceback (most recent call last):")
    assert err.splitlines()[-1] == (
        "tool: internal error (KeyError: 'slot'); what it had started was stopped. "
        "Please report this with the traceback above"
    )


def test_ctrl_c_is_130_and_one_line(capsys):
    code = run_command("tool", fails_with(KeyboardInterrupt()), status_of=usage_or_cloud)
    assert code == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "tool: interrupted\n"


def test_the_common_options_come_before_or_after_a_sub_command():
    parser = Parser(prog="tool", parents=[common_options()])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ls", parents=[common_options()])
    for argv in (["--records", "r", "-v", "ls"], ["ls", "--records", "r", "-v"]):
        args = parse(parser, argv)
        assert (args.records, args.verbose) == ("r", 1)
    args = parse(parser, ["ls"])
    assert (args.records, args.verbose) == (None, 0)


def test_logging_starts_at_the_tools_level_and_each_v_lowers_it(capsys):
    def logged(verbose: int, level: int) -> str:
        parser = Parser(prog="tool", parents=[common_options()])
        parse(parser, ["-v"] * verbose, log_level=level)
        logger = structlog.get_logger("test")
        logger.debug("a debug line")
        logger.info("an info line")
        logger.warning("a warning line")
        captured = capsys.readouterr()
        assert captured.out == ""  # stdout is the command's answer
        return captured.err

    try:
        assert logged(0, logging.WARNING).count("line") == 1
        assert "an info line" in logged(1, logging.WARNING)
        assert "a debug line" in logged(2, logging.WARNING)
        assert "a debug line" in logged(5, logging.WARNING)
        assert logged(0, logging.INFO).count("line") == 2
    finally:
        structlog.reset_defaults()


@pytest.mark.parametrize(
    "tool, argv, prog",
    [
        (precip_repro, ["verify"], "precip-repro verify"),
        (precip_repro, ["frobnicate"], "precip-repro"),
        (precip_replay, ["latest"], "precip-replay"),
        (precip_replay, ["latest", "--to", "local", "--max-gap", "-1"], "precip-replay"),
    ],
)
def test_bad_usage_is_exit_2_and_one_error_line_in_both_tools(capsys, tool, argv, prog):
    with pytest.raises(SystemExit) as info:
        tool(argv)
    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("usage: ")
    assert err[-1].startswith(f"{prog}: error: ")
    assert sum(line.startswith(f"{prog}: error") for line in err) == 1


def test_both_tools_take_records_verbose_and_version(capsys):
    for tool, name in ((precip_repro, "precip-repro"), (precip_replay, "precip-replay")):
        with pytest.raises(SystemExit) as info:
            tool(["--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "--records STORE" in out and "-v, --verbose" in out and "--version" in out
        with pytest.raises(SystemExit) as info:
            tool(["--version"])
        assert info.value.code == 0
        assert capsys.readouterr().out == f"{name} {importlib.metadata.version('precip-repro')}\n"


def test_both_tools_say_a_missing_run_in_one_line_with_exit_2(capsys, store):
    store.root.mkdir(parents=True)
    records = ["--records", str(store.root)]
    assert precip_repro([*records, "show", "nope"]) == EXIT_USAGE
    assert precip_replay(["nope", *records, "--to", "local"]) == EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": error: ")[0] for line in err] == ["precip-repro show", "precip-replay"]
    assert all("no run 'nope'" in line for line in err)


def test_precip_repro_says_a_system_error_in_one_line_with_exit_1(capsys):
    full = OSError(28, "No space left on device")
    assert run_command("precip-repro gc", fails_with(full), status_of=status_of) == EXIT_BAD
    assert capsys.readouterr().err == "precip-repro gc: error: [Errno 28] No space left on device\n"


def test_output_piped_into_head_ends_quietly_with_success(store):
    # More lines than a pipe holds: the command is still writing when `head` has gone.
    run = Run.open(store, name="long")
    for i in range(3000):
        run.append(Note(text=f"note {i} " + "x" * 40, fields={}))
    run.close()
    head = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert head.stdin is not None and head.stdout is not None
    done = subprocess.run(
        [sys.executable, "-m", "precip_repro.cli", "--records", str(store.root), "show", run.id],
        stdout=head.stdin, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    head.stdin.close()
    assert head.stdout.read().decode().startswith(f"run {run.id}")
    head.wait()
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@pytest.mark.parametrize("tool", ["precip_repro.cli", "replay.cli"])
def test_a_console_script_freezes_the_collector_before_its_process_ends(store, tool):
    # The interpreter's exit would walk every object the imports made; frozen, it skips
    # them. The exit status is still the command's.
    store.root.mkdir(parents=True)
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        f"from {tool} import console\n"
        "console()\n"
    )
    argv = [
        "--records",
        str(store.root),
        *(["show", "nope"] if tool == "precip_repro.cli" else ["nope", "--to", "local"]),
    ]
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stdout.splitlines()[-1] == "frozen True"


def test_main_called_in_a_process_leaves_its_collector_as_it_was(store):
    # In a fresh interpreter: this one's collector may hold what earlier tests froze.
    store.root.mkdir(parents=True)
    code = (
        "import gc, sys\n"
        "from precip_repro.cli import main\n"
        "status = main(['--records', sys.argv[1], 'ls'])\n"
        "print(status, gc.get_freeze_count(), gc.isenabled())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, check=False
    )
    assert done.stdout.splitlines()[-1] == "0 0 True", done.stderr
