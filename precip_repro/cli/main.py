"""``precip-repro``: list, show, verify, recover and read recorded runs; run scripts and the
demo; diff, report, gc.

The CLI is thin: each command calls the library and turns its answer into lines and an exit
status. Errors are one line on stderr, never a traceback. Each command lives in the module
named for what it does; the parser and ``main`` are here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Final

from precip_repro.cli.compare import cmd_diff, cmd_report
from precip_repro.cli.core import (
    EXIT_BAD,
    EXIT_OK,
    Parser,
    configure_logging,
    exit_for,
    quiet_stdout,
)
from precip_repro.cli.leaks import cmd_gc
from precip_repro.cli.records import cmd_cat, cmd_ls, cmd_recover, cmd_show, cmd_verify
from precip_repro.cli.scripts import cmd_demo, cmd_run
from precip_repro.exceptions import (
    ExperimentException,
)
from precip_repro.record.recorder import tool_version

__all__ = ["main"]


_EPILOG: Final = """\
exit status:
  0  success; for verify: the run is intact
  1  corrupt: an event, the checkpoint or a blob does not check (named in the message);
     for diff: the runs differ; for gc: instances still leak
  2  usage error: bad arguments, no such run, an ambiguous prefix, an unreadable format
  3  incomplete: the run is open (being written) or abandoned (run `recover`);
     for diff and report --vs: an input run is not intact;
     for recover: the run could not be written (read-only?) and stays as it was;
     for gc: nothing found to leak, but a --cloud could not be checked

RUN is a run directory, a run id, `latest`, or a unique prefix of an id, looked up in
--records DIR (default: $PRECIP_RECORDS, else ./records).
"""


def _parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--records",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the store of runs (default: $PRECIP_RECORDS, else ./records)",
    )
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log more"
    )
    parser = Parser(
        prog="precip-repro",
        description="Record, audit and inspect precip experiment runs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {tool_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        cmd = sub.add_parser(
            name,
            help=help,
            description=help,
            parents=[common],
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.set_defaults(func=func)
        return cmd

    add("ls", cmd_ls, "list runs, newest first: id, status, events, duration")
    show = add("show", cmd_show, "print a run's timeline, one line per event")
    show.add_argument("run", metavar="RUN")
    check = add("verify", cmd_verify, "check a run's hash chain, checkpoint and blobs")
    check.add_argument("run", metavar="RUN")
    check.add_argument("--digest", metavar="HEX", help="also require this digest (64 hex)")
    cat = add("cat", cmd_cat, "write a blob's bytes (checked) to stdout")
    cat.add_argument("run", metavar="RUN")
    cat.add_argument("sha256", metavar="SHA256", help="the blob's sha256, or a unique prefix")
    rec = add("recover", cmd_recover, "finish an abandoned run as interrupted")
    rec.add_argument("run", metavar="RUN")
    add("demo", cmd_demo, "record the hello-world run on the local cloud, verify it, print it")
    diff = add(
        "diff",
        cmd_diff,
        "what changed between two runs (exit 0 same, 1 different, 2 usage, 3 not intact)",
    )
    diff.add_argument("a", metavar="A")
    diff.add_argument("b", metavar="B")
    diff.add_argument("--json", action="store_true", help="the documented JSON form")
    diff.add_argument(
        "--tolerance",
        type=float,
        default=50.0,
        metavar="PCT",
        help="report durations that change by more than PCT %% (and at least 1 s); default 50",
    )
    report = add("report", cmd_report, "write a self-contained HTML (or Markdown) report")
    report.add_argument("run", metavar="RUN")
    report.add_argument("--vs", metavar="B", help="also show the diff against run B")
    report.add_argument(
        "-o", "--output", metavar="FILE", help="default: STORE/reports/RUN.html (or .md)"
    )
    report.add_argument("--format", choices=("html", "md"), default="html")
    gc = add(
        "gc",
        cmd_gc,
        "list instances left running (the leak ledger); --terminate ends them. "
        "Exit 0 when nothing is left, 1 when something still leaks",
    )
    gc.add_argument("--terminate", action="store_true", help="end them, recorded in a run")
    gc.add_argument(
        "--cloud",
        action="append",
        metavar="[KIND=]URL",
        help="also check this EC2-compatible endpoint (credentials from the environment), "
        "or openstack-native[=ENTRY]: native OpenStack, a clouds.yaml entry (else OS_*)",
    )
    gc.add_argument("--region", default="us-east-1", help="region of --cloud endpoints")
    run = add("run", cmd_run, "run an experiment script and record it (the script too)")
    run.add_argument(
        "--playback",
        metavar="RUN",
        help="answer every call from RUN's recording instead: no cloud, nothing recorded",
    )
    run.add_argument("script", metavar="SCRIPT")
    run.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.records = getattr(args, "records", None)
    configure_logging(getattr(args, "verbose", 0))
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ExperimentException as exc:
        print(f"precip-repro {args.command}: error: {exc}", file=sys.stderr)
        return exit_for(exc)
    except BrokenPipeError:  # piped into `head`: the reader has had enough
        quiet_stdout()
        return EXIT_OK
    except OSError as exc:
        print(f"precip-repro {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD
    except KeyboardInterrupt:
        print(f"precip-repro {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
