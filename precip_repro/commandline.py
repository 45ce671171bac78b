"""The command-line core precip-repro's tools share — ``precip-repro`` and ``precip-replay``,
and any tool built on precip-repro the same way.

What they share: the exit statuses, the parser (bad usage exits 2 with one line), the
common options (``--records STORE``, ``-v``), logging set-up, the store of runs, and
:func:`run_command`, which runs a command so that every error it raises is one line on
stderr and an exit status, output piped into ``head`` ends quietly, and Ctrl-C is 130. A
bug of the tool's own is the one case that shows a traceback, asking for a report.

A public module (as :mod:`precip_repro.testing` is): ``replay`` uses it as any tool would.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import IO, Any, Final, NoReturn

import attrs
import structlog

from precip_repro.logs import processors
from precip_repro.record.recorder import tool_version
from precip_repro.stores import Store, open_store
from precip_repro.terminal import showing_progress

__all__ = [
    "DOCUMENT_VERSION",
    "EXIT_BAD",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ErrorStatus",
    "Parser",
    "add_version",
    "common_options",
    "configure_logging",
    "exit_process",
    "line_buffered_stdout",
    "parse",
    "quiet_stdout",
    "run_command",
    "showing_progress",
    "store_of",
    "write_document",
]

# One meaning per status across the tools: 0 yes, 1 no (corrupt, different, diverged),
# 2 the command was wrong, 3 the answer could not be had (incomplete, not intact, failed).
EXIT_OK: Final = 0
EXIT_BAD: Final = 1
EXIT_USAGE: Final = 2
EXIT_INCOMPLETE: Final = 3
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it

DOCUMENT_VERSION: Final = 1
"""The version of the documents the tools print with ``--json`` (docs/json.md; ``diff``'s
and ``ls``'s have their own): a change that removes or retypes a key makes the next."""

RECORDS_HELP: Final = (
    "the store of runs: a directory or s3://BUCKET/PREFIX (default: $PRECIP_RECORDS, else "
    "./records)"
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit 2 (as argparse's do) after one line, and
    whose help keeps the epilog's layout (the exit statuses are a table)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def common_options(*, records_help: str = RECORDS_HELP) -> Parser:
    """The options every tool takes, as a parent parser: ``--records STORE`` and ``-v``.
    Their defaults are left unset, so that given as parents to a tool and to each of its
    sub-commands they may come before or after the sub-command; :func:`parse` fills them."""
    common = Parser(add_help=False)
    common.add_argument("--records", metavar="STORE", default=argparse.SUPPRESS, help=records_help)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log more (each -v more, to debug)",
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress on stderr (errors still)",
    )
    return common


class _Version(argparse.Action):
    # argparse's own "version" action wants the text up front; finding the installed
    # version (importlib.metadata) costs a tenth of a record command's start-up, so it is
    # looked up only when asked for.
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(f"{parser.prog} {tool_version()}\n")
        parser.exit()


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the tool's name and precip-repro's version."""
    parser.add_argument("--version", action=_Version, help="show the version and exit")


def parse(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, log_level: int = logging.WARNING
) -> argparse.Namespace:
    """``argv`` parsed (``--records`` None and ``-v`` 0 when not given), and logging set up
    at ``log_level``, lowered a step by each ``-v``."""
    args = parser.parse_args(argv)
    args.records = getattr(args, "records", None)
    args.verbose = getattr(args, "verbose", 0)
    args.quiet = getattr(args, "quiet", False)
    configure_logging(args.verbose, level=log_level)
    return args


def configure_logging(verbose: int, *, level: int = logging.WARNING) -> None:
    """Log lines to stderr (stdout is the command's answer), as a script's are, from
    ``level`` down a step for each ``verbose`` (at most to DEBUG)."""
    level = max(level - 10 * verbose, logging.DEBUG)
    structlog.configure(
        processors=processors(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # sys.stderr looked up per logger, not bound once: it may be replaced later.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )


def store_of(args: argparse.Namespace) -> Store:
    """The store ``--records`` names: a directory or ``s3://bucket/prefix`` (default:
    ``$PRECIP_RECORDS``, else ``./records``)."""
    return open_store(args.records)


def quiet_stdout() -> None:
    """Send what is still to be written to stdout nowhere: its reader is gone, and Python
    would otherwise complain of the broken pipe when it flushes at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def line_buffered_stdout() -> None:
    """Each line out as it is printed, through ``tee`` too (a long command's progress)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)


@attrs.frozen
class ErrorStatus:
    """How a tool answers an error: its exit status, and the word before the message
    (``precip-replay: the target cloud failed: …`` rather than ``…: error: …``)."""

    status: int
    label: str = "error"


def exit_process(status: int) -> NoReturn:
    """End a console script's process with ``status``.

    The collector's objects are frozen first: the interpreter's exit otherwise walks every
    object of every module imported (rich, cryptography, …) — a fifth of a short command's
    time, and spent after its work is done. Only for the process's own end: a library or a
    test calling ``main`` keeps its collector as it was."""
    gc.freeze()
    sys.exit(status)


def run_command(
    prog: str,
    command: Callable[[], int],
    *,
    status_of: Callable[[Exception], ErrorStatus | None],
    broken_pipe: int = EXIT_OK,
    interrupted: str = "interrupted",
    internal_status: int = EXIT_BAD,
    after_internal_error: str | None = None,
) -> int:
    """Run ``command``; its exit status, or the one its error maps to.

    ``status_of`` maps an error the tool expects to its status (one line on stderr:
    ``PROG: error: MESSAGE``); an error it maps to None is a bug of the tool's: its
    traceback, then one line saying so (``after_internal_error``: what became of the work
    under way) and ``internal_status``. A closed stdout (``head``) ends the command with
    ``broken_pipe``, silently; Ctrl-C with 130 and ``PROG: interrupted``."""
    try:
        return command()
    except BrokenPipeError:  # piped into `head`: the reader has had enough
        quiet_stdout()
        return broken_pipe
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        answer = status_of(exc)
        if answer is not None:
            print(f"{prog}: {answer.label}: {exc}", file=sys.stderr)
            return answer.status
        traceback.print_exc()
        aftermath = f"; {after_internal_error}" if after_internal_error else ""
        print(
            f"{prog}: internal error ({type(exc).__name__}: {exc}){aftermath}. "
            "Please report this with the traceback above",
            file=sys.stderr,
        )
        return internal_status


def write_document(document: dict[str, Any], out: IO[str] | None = None) -> None:
    """A ``--json`` document, indented, and a newline on ``out`` (stdout), flushed."""
    out = out or sys.stdout
    json.dump(document, out, indent=2, ensure_ascii=False)
    out.write("\n")
    out.flush()
