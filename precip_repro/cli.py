"""``precip-repro``: list, show, verify, recover and read recorded runs; record the demo.

The CLI is thin: each command calls the library and turns its answer into lines and an
exit status. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import attrs
import structlog

from precip_repro.exceptions import (
    AmbiguousRun,
    ExperimentException,
    InvalidOption,
    RecordCorrupted,
    RecordIncomplete,
    RecordWriteFailed,
    RunLocked,
    RunNotFound,
    UnsupportedVersion,
)
from precip_repro.record.blobs import BlobStore
from precip_repro.record.events import BlobRef, BlobWithheld
from precip_repro.record.reader import LogReader
from precip_repro.record.recorder import tool_version
from precip_repro.record.store import EVENTS, OBJECTS, RunStore
from precip_repro.record.summary import summarize
from precip_repro.record.verify import blob_refs, recover, verify
from precip_repro.timeline import format_duration, timeline

if TYPE_CHECKING:
    from precip_repro.clouds.base import Cloud
    from precip_repro.clouds.ec2 import EC2Cloud
    from precip_repro.leaks import Leak
    from precip_repro.runview import RunView

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_BAD: Final = 1
EXIT_USAGE: Final = 2
EXIT_INCOMPLETE: Final = 3

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

_HEX_RE: Final = re.compile(r"[0-9a-f]{4,64}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # sys.stderr looked up per logger, not bound once: it may be replaced later.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )


def _store(args: argparse.Namespace) -> RunStore:
    return RunStore(args.records)


def _resolve(args: argparse.Namespace) -> Path:
    return _store(args).resolve(args.run)


# --- commands ------------------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = [summarize(path) for path in store.run_dirs()]
    if not rows:
        print(f"no runs in {store.root}")
        return EXIT_OK
    rows.reverse()
    width = max(len(row.run) for row in rows)
    print(f"{'RUN':<{width}}  {'STATUS':<11} {'EVENTS':>8}  DURATION")
    for row in rows:
        events = "?" if row.events is None else str(row.events)
        print(
            f"{row.run:<{width}}  {row.status:<11} {events:>8}  {format_duration(row.duration_ns)}"
        )
    hints = {
        "abandoned": "`precip-repro recover RUN` finishes an abandoned run as interrupted",
        "unreadable": "`precip-repro verify RUN` says what is wrong with an unreadable run",
    }
    for status in sorted({row.status for row in rows} & hints.keys()):
        print(hints[status])
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    run_dir = _resolve(args)
    reader = LogReader(run_dir / EVENTS, run=run_dir.name)
    print(f"run {run_dir.name}  ({run_dir})")
    try:
        for line in timeline(reader):
            print(line)
    except RecordCorrupted as exc:
        print(f"!! stopped: {exc}")
        print(f"   run `precip-repro verify {run_dir}` for the full check")
        return EXIT_BAD
    if reader.torn is not None:
        print(
            f"!! torn tail at line {reader.torn.line} ({reader.torn.size} bytes): the writer "
            f"was cut off; `precip-repro recover {run_dir.name}` finishes the run"
        )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    if args.digest is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", args.digest):
        raise _Usage(f"--digest must be 64 hex digits (a run's full digest), not {args.digest!r}")
    run_dir = _resolve(args)
    verdict = verify(run_dir, digest=args.digest)
    print(f"{verdict.run}: {verdict.state}")
    print(f"  {verdict.reason}")
    if verdict.digest is not None:
        label = "digest" if verdict.state == "intact" else "last intact event"
        print(f"  {label}: {verdict.digest}")
    if verdict.state == "corrupt":
        print(
            f"  what to do: the run's record was altered or damaged after it was written; "
            f"restore {verdict.path} from a copy (verify the copy the same way)"
        )
    return verdict.exit_status


def cmd_recover(args: argparse.Namespace) -> int:
    run_dir = _resolve(args)
    try:
        done = recover(run_dir)
    except RecordWriteFailed as exc:
        print(f"precip-repro recover: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE  # nothing was written: the run is as incomplete as it was
    if done.action == "nothing":
        print(f"{done.run}: already finished and intact; nothing to do")
    elif done.action == "checkpoint":
        print(f"{done.run}: the run had finished; its missing checkpoint was written")
    else:
        print(f"{done.run}: finished as interrupted after {done.events - 1} intact events")
        if done.torn_tail is not None:
            print(
                f"  the torn tail ({done.torn_tail.size} bytes) is kept as blob "
                f"{done.torn_tail.sha256}"
            )
    print(f"  digest: {done.digest}")
    return EXIT_OK


def cmd_cat(args: argparse.Namespace) -> int:
    run_dir = _resolve(args)
    wanted = args.sha256.lower()
    if not _HEX_RE.fullmatch(wanted):
        raise _Usage(f"{args.sha256!r} is not a sha256 (or a prefix of at least 4 hex digits)")
    blobs = BlobStore(run_dir / OBJECTS, run=run_dir.name)
    ref = _find_ref(run_dir, wanted)
    out = sys.stdout.buffer
    for chunk in blobs.iter_verified(ref):
        out.write(chunk)
    out.flush()
    return EXIT_OK


def _find_ref(run_dir: Path, wanted: str) -> BlobRef:
    """The one blob reference in the run's log whose sha256 starts with ``wanted``."""
    found: dict[str, BlobRef] = {}
    for event in LogReader(run_dir / EVENTS, run=run_dir.name):
        if event.type == BlobWithheld.TYPE and str(event.data.get("sha256")) in found:
            sha = str(event.data["sha256"])
            found[sha] = attrs.evolve(found[sha], withheld=str(event.data.get("reason")))
        for ref in blob_refs(event, run=run_dir.name, withheld=True):
            if ref.sha256.startswith(wanted):
                previous = found.get(ref.sha256)
                if previous is None or (previous.text is None and ref.text is not None):
                    found[ref.sha256] = ref
    if not found:
        raise RunNotFound(
            f"run {run_dir.name} refers to no blob {wanted}; `precip-repro show "
            f"{run_dir.name}` lists what it holds",
            run=run_dir.name,
            blob=wanted,
        )
    if len(found) > 1:
        raise AmbiguousRun(
            f"{wanted!r} matches {len(found)} blobs of run {run_dir.name}: "
            f"{', '.join(sorted(found))}; give more digits",
            candidates=sorted(found),
            run=run_dir.name,
        )
    return next(iter(found.values()))


def cmd_demo(args: argparse.Namespace) -> int:
    from precip_repro.demo import record_demo

    store = _store(args)
    run_id, path, digest = record_demo(store.root)
    from precip_repro.report import write_report

    written = write_report(path, store.root / "reports" / f"{run_id}.html")
    verdict, report = written.verdict, written.path
    prog = sys.argv[0] if "/" in sys.argv[0] else "precip-repro"
    print(f"recorded run {run_id}")
    print(f"  in      {store.root / run_id}")
    print(f"  verify  {verdict.state}: {verdict.reason}")
    print(f"  digest  {digest}")
    print(f"  report  {report}")
    print("next:")
    print(f"  {prog} --records {store.root} show {run_id}")
    print(f"  {prog} --records {store.root} verify {run_id} --digest {digest}")
    print(f"  {prog} --records {store.root} ls")
    return verdict.exit_status


def _print_script_error(exc: BaseException, script: Path) -> None:
    """The script's traceback as Python would print it: from the script's own frame, not
    through this command and runpy."""
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != str(script):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)


def cmd_run(args: argparse.Namespace) -> int:
    import os
    import runpy

    from precip_repro.session import finish_run, session

    script = Path(args.script)
    if not script.is_file():
        what = "is a directory, not a Python file" if script.is_dir() else "does not exist"
        raise _Usage(f"script {script} {what}")
    store = _store(args)
    if args.playback:
        return _playback(args, store, script)
    # The script's experiments record into the store this command was given, wherever
    # the script changes directory to.
    os.environ["PRECIP_RECORDS"] = str(store.root.absolute())
    session.script = script.absolute()
    session.argv = [str(script), *args.args]
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.resolve().parent))
    code = EXIT_OK
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        session.mark_ending(exc)
        if exc.code not in (None, 0):
            code = exc.code if isinstance(exc.code, int) else EXIT_BAD
            if not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)  # as Python prints sys.exit("message")
    except KeyboardInterrupt as exc:
        session.mark_ending(exc)
        code = 130
    except BaseException as exc:
        _print_script_error(exc, script)
        session.mark_ending(exc)
        code = EXIT_BAD
    run = session.run
    digest = finish_run()
    if run is None:
        print(f"precip-repro run: {script} created no recorded experiment; nothing was recorded")
        return code
    if digest is None:
        print(
            f"precip-repro run: the end of run {run.id} could not be written (see the error "
            f"above); its events so far are intact: `precip-repro recover {run.id}` finishes it"
        )
        return code or EXIT_BAD
    print(f"recorded run {run.id} ({run.status})")
    print(f"  digest  {digest}")
    if not run.checkpointed:
        print(
            f"  checkpoint  not written (the error above says why): precip-repro recover {run.id}"
        )
        return code or EXIT_BAD
    print(f"  verify  precip-repro --records {store.root} verify {run.id} --digest {digest}")
    return code


def _intact_views(
    args: argparse.Namespace,
    *specs: str,
    meanwhile: Callable[[list[RunView]], object] | None = None,
) -> list[tuple[RunView, str | None]]:
    from precip_repro.runview import load_verified

    def frozen_then(views: list[RunView]) -> None:
        # A large view is hundreds of thousands of objects in no cycle; the collector's
        # walks over them cost more than a diff of them. The command ends soon: the views
        # are frozen out of its way before anything works on them.
        gc.freeze()
        if meanwhile is not None:
            meanwhile(views)

    store = _store(args)
    found: list[tuple[RunView, str | None]] = []
    loaded = load_verified([store.resolve(spec) for spec in specs], meanwhile=frozen_then)
    for view, verdict in loaded:
        if view is None:
            raise _NotIntact(
                f"run {verdict.run} is {verdict.state}, not intact: {verdict.reason}; "
                f"`precip-repro verify {verdict.run}` says more"
            )
        found.append((view, verdict.digest))
    return found


def cmd_diff(args: argparse.Namespace) -> int:
    import json

    from precip_repro.diff import DiffResult, diff_runs, render_text

    if not args.tolerance >= 0:  # nan too: it would silently compare no duration
        raise _Usage(f"--tolerance must be a percentage of at least 0, not {args.tolerance}")
    compared: list[DiffResult] = []

    def compare(views: list[RunView]) -> None:
        compared[:] = [diff_runs(*views, tolerance=args.tolerance / 100)]

    (_, digest_a), (_, digest_b) = _intact_views(args, args.a, args.b, meanwhile=compare)
    (result,) = compared
    result.a["digest"], result.b["digest"] = digest_a, digest_b
    if args.json:
        print(json.dumps(result.to_json(), indent=1, sort_keys=True, ensure_ascii=False))
    else:
        for line in render_text(result):
            print(line)
    return EXIT_OK if result.same else EXIT_BAD


def cmd_report(args: argparse.Namespace) -> int:
    from precip_repro.report import write_report

    store = _store(args)
    run_dir = store.resolve(args.run)
    vs = store.resolve(args.vs) if args.vs else None
    fmt = args.format
    # Beside the runs, not inside one: a run's directory is its record, left as written.
    default = store.root / "reports" / f"{run_dir.name}.{fmt}"
    out = Path(args.output) if args.output else default
    try:
        written = write_report(run_dir, out, fmt=fmt, vs=vs)
    except OSError as exc:
        if exc.filename != str(out):
            raise
        where = "another file" if args.output else "where, with -o FILE"
        print(f"precip-repro report: error: {exc.strerror}; choose {where}", file=sys.stderr)
        return EXIT_BAD
    print(f"report of {run_dir.name} ({written.verdict.state}): {written.path}")
    if vs is not None and not written.compared:
        print(
            f"precip-repro report: not compared with {vs.name}: an input run is not intact "
            "(the report says which and why; `precip-repro verify` says more)",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return EXIT_OK


def _playback(args: argparse.Namespace, store: RunStore, script: Path) -> int:
    import runpy

    from precip_repro.playback import Playback, RecordingStopped
    from precip_repro.session import session

    ((view, _),) = _intact_views(args, args.playback)
    session.add_environment_credentials()  # as when recorded: outputs get their values
    playback = Playback(view, secrets=session.redactor)
    session.playback = playback
    session.restart_numbering()
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.resolve().parent))
    recorded = f"the recording ended {view.ended}"
    exited: SystemExit | None = None
    try:
        try:
            runpy.run_path(str(script), run_name="__main__")
        except RecordingStopped:
            pass
        except SystemExit as exc:
            exited = exc if exc.code not in (None, 0) else None
        # What the recording process did at exit: close what the script left open.
        for experiment in playback.experiments:
            experiment.close()
    except BaseException as exc:
        if playback.failed is None:
            _print_script_error(exc, script)
            print(f"precip-repro run --playback: the script failed: {exc}; {recorded}")
            return EXIT_BAD
    finally:
        session.playback = None
    if exited is not None and playback.failed is None:
        print(f"playback of {view.run}: the script exited with {exited.code!r}; {recorded}")
        return exited.code if isinstance(exited.code, int) else EXIT_BAD
    if playback.failed is not None:
        print(f"playback of {view.run} FAILED: {playback.failed}")
        return EXIT_BAD
    if playback.stopped is not None:
        call = playback.stopped
        print(
            f"playback of {view.run}: every call matched up to call #{call.number} "
            f"{call.exp}.{call.method}, where the recording was stopped ({call.how_stopped()})"
        )
        return EXIT_OK
    if playback.remaining:
        left = playback.remaining[0]
        print(
            f"playback of {view.run} FAILED: the script ended, but {len(playback.remaining)} "
            f"recorded call(s) remain, from #{left.number} {left.exp}.{left.method}"
        )
        return EXIT_BAD
    print(f"playback of {view.run}: all {len(view.calls)} recorded calls matched")
    return EXIT_OK


def _leaks_counted(leaks: Sequence[Leak]) -> str:
    instances = sum(1 for leak in leaks if leak.kind == "instance")
    addresses = len(leaks) - instances
    parts = [f"{instances} instance(s)"] if instances or not addresses else []
    return " and ".join([*parts, *([f"{addresses} floating address(es)"] if addresses else [])])


def _gc_clouds(args: argparse.Namespace) -> list[EC2Cloud]:
    import os

    from precip_repro.clouds.ec2 import KINDS, EC2Cloud

    if not args.cloud:
        return []
    access = os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("EC2_ACCESS_KEY")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY") or os.environ.get("EC2_SECRET_KEY")
    if not access or not secret:
        raise _Usage(
            "--cloud needs credentials in the environment: AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or EC2_ACCESS_KEY and EC2_SECRET_KEY)"
        )
    clouds = []
    for spec in args.cloud:
        kind, _, url = spec.rpartition("=") if "=" in spec.split("://")[0] else ("", "", spec)
        kind = kind or "ec2"
        if kind not in KINDS:
            raise InvalidOption("--cloud kind", kind, KINDS)
        clouds.append(
            EC2Cloud(
                kind=kind, endpoint=url, region=args.region, access_key=access, secret_key=secret
            )
        )
    return clouds


def cmd_gc(args: argparse.Namespace) -> int:
    from precip_repro.clouds.local import LocalCloud
    from precip_repro.leaks import collect, terminate

    store = _store(args)
    clouds: list[Cloud] = [LocalCloud(lists_only=True), *_gc_clouds(args)]
    collected = collect(store, clouds=clouds)
    leaks, runs = collected.leaks, collected.runs
    for label, why in collected.unchecked.items():
        print(f"precip-repro gc: could not check {label}: {why}", file=sys.stderr)
    if not leaks and collected.unchecked:
        print(
            "no leak found, but not every cloud could be checked (above): "
            "run gc again once it answers"
        )
        return EXIT_INCOMPLETE
    if not leaks:
        print("nothing leaks: every instance the record and the clouds know of is terminated")
        return EXIT_OK
    print(f"{'INSTANCE':<20} {'CLOUD':<10} {'RUN':<40} {'SLOT':<9} {'ADDRESS':<15} {'AGE':>8}")
    # A floating address shows its allocation id where an instance shows its id.
    for leak in leaks:
        age = format_duration(int(leak.age_s * 1e9)) if leak.age_s is not None else "-"
        print(
            f"{leak.instance_id:<20} {leak.cloud.split()[0]:<10} {leak.run or '-':<40} "
            f"{leak.slot or '-':<9} {leak.address or '-':<15} {age:>8}"
        )
        print(f"    {leak.reason} (run {leak.run_state})")
    if not args.terminate:
        print(f"{_leaks_counted(leaks)} leak; `precip-repro gc --terminate` ends them")
        return EXIT_BAD
    outcome = terminate(store, leaks, runs, clouds=clouds)
    run = outcome.run
    for handle, why in outcome.failed.items():
        print(f"precip-repro gc: could not end {handle}: {why}", file=sys.stderr)
    ended = [leak for leak in leaks if leak.actionable and leak.instance_id not in outcome.failed]
    if run is not None:
        addresses = sum(1 for leak in ended if leak.kind == "address")
        done = f"terminated {len(ended) - addresses} instance(s)" + (
            f" and released {addresses} floating address(es)" if addresses else ""
        )
        print(f"{done}; recorded in run {run.id} (digest {run.digest})")
    untouched = [leak for leak in leaks if not leak.actionable]
    if untouched:
        print(f"{_leaks_counted(untouched)} not touched (see why above)")
    refused = [leak for leak in leaks if leak.instance_id in outcome.failed]
    if refused:
        print(f"{_leaks_counted(refused)} could not be ended (see why above): run gc again")
    return EXIT_BAD if untouched or refused else EXIT_OK


# --- plumbing ------------------------------------------------------------------------------


class _Usage(ExperimentException):
    pass


class _NotIntact(ExperimentException):
    pass


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--records",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the store of runs (default: $PRECIP_RECORDS, else ./records)",
    )
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log more"
    )
    parser = _Parser(
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
        help="also check this EC2-compatible endpoint (credentials from the environment)",
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


def _exit_for(exc: ExperimentException) -> int:
    if isinstance(exc, UnsupportedVersion | RunNotFound | _Usage):
        return EXIT_USAGE
    if isinstance(exc, _NotIntact):
        return EXIT_INCOMPLETE
    if isinstance(exc, RunLocked | RecordIncomplete):
        return EXIT_INCOMPLETE
    return EXIT_BAD


def quiet_stdout() -> None:
    """Send what is still to be written to stdout nowhere: its reader is gone, and Python
    would otherwise complain of the broken pipe when it flushes at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.records = getattr(args, "records", None)
    _configure_logging(getattr(args, "verbose", 0))
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ExperimentException as exc:
        print(f"precip-repro {args.command}: error: {exc}", file=sys.stderr)
        return _exit_for(exc)
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
