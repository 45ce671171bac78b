"""The commands that run a script: demo, and run (recording, or played back with
--playback)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from precip_repro.cli.core import (
    EXIT_BAD,
    EXIT_OK,
    Usage,
    intact_views,
    store_of,
)
from precip_repro.commandline import DOCUMENT_VERSION, showing_progress, write_document
from precip_repro.stores import Store, StoreCapability

__all__ = ["cmd_demo", "cmd_run"]


def cmd_demo(args: argparse.Namespace) -> int:
    from precip_repro.demo import record_demo

    store = store_of(args)
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


def _json_target(spec: str | None) -> IO[str] | None:
    """Where ``run --json`` writes its document, opened before the script runs: a file
    that cannot be written is a usage error, not a lost result after a long run."""
    if spec is None or spec == "-":
        return None
    try:
        return open(spec, "w", encoding="utf-8")
    except OSError as exc:
        raise Usage(f"--json {spec}: cannot write there ({exc.strerror or exc})") from exc


@contextlib.contextmanager
def _stdout_to_stderr(moved: bool) -> Iterator[None]:
    """With ``--json -`` the document has stdout to itself: the script's output, and that
    of every process it starts, goes to stderr (file descriptor 1 is pointed at 2)."""
    if not moved:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def cmd_run(args: argparse.Namespace) -> int:
    from precip_repro.session import session

    script = Path(args.script)
    if not script.is_file():
        what = "is a directory, not a Python file" if script.is_dir() else "does not exist"
        raise Usage(f"script {script} {what}")
    store = store_of(args)
    if args.playback:
        if args.json is not None:
            raise Usage("--json reports a recorded run; --playback records nothing")
        return _playback(args, store, script)
    target = _json_target(args.json)
    # Called in a process that goes on (a test, a notebook), it leaves nothing of the
    # script's behind: the next run recorded there is not this script's, nor goes where
    # this one went.
    before = (session.script, session.argv, sys.argv, list(sys.path))
    records = os.environ.get("PRECIP_RECORDS")
    # The script's experiments record into the store this command was given, wherever
    # the script changes directory to.
    os.environ["PRECIP_RECORDS"] = (
        store.location
        if StoreCapability.SHARED in store.capabilities  # recorded in its cache, then pushed
        else str(store.root.absolute())
    )
    session.script = script.absolute()
    session.argv = [str(script), *args.args]
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.resolve().parent))
    try:
        return _run_script(args, store, script, target)
    finally:
        session.script, session.argv, sys.argv, sys.path[:] = before
        if records is None:
            os.environ.pop("PRECIP_RECORDS", None)
        else:
            os.environ["PRECIP_RECORDS"] = records


def _run_script(
    args: argparse.Namespace, store: Store, script: Path, target: IO[str] | None
) -> int:
    import runpy

    from precip_repro.session import finish_run, session

    code = EXIT_OK
    try:
        with _stdout_to_stderr(args.json == "-"), showing_progress(quiet=args.quiet):
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
    with _stdout_to_stderr(args.json == "-"):
        digest = finish_run()
    # With --json the document is the result; these lines are for a person, on stderr.
    out = sys.stderr if args.json is not None else sys.stdout
    if run is None:
        print(
            f"precip-repro run: {script} created no recorded experiment; nothing was recorded",
            file=out,
        )
    elif digest is None:
        print(
            f"precip-repro run: the end of run {run.id} could not be written (see the error "
            f"above); its events so far are intact: `precip-repro recover {run.id}` finishes it",
            file=out,
        )
        code = code or EXIT_BAD
    else:
        print(f"recorded run {run.id} ({run.status})", file=out)
        print(f"  digest  {digest}", file=out)
        if not run.checkpointed:
            print(
                "  checkpoint  not written (the error above says why): "
                f"precip-repro recover {run.id}",
                file=out,
            )
            code = code or EXIT_BAD
        elif run.signature is not None:
            print(f"  signed  {run.signature.fingerprint}", file=out)
        elif run.signing_problem is not None:
            print(f"  unsigned  {run.signing_problem}", file=out)
        if run.checkpointed:
            print(
                f"  verify  precip-repro --records {store.root} verify {run.id} --digest {digest}",
                file=out,
            )
    if args.json is not None:
        document = {
            "version": DOCUMENT_VERSION,
            "script": str(script),
            "exit_status": code,
            "run": None if run is None else run.id,
            "path": None if run is None else str(run.path),
            "status": None if run is None or digest is None else run.status,
            "digest": digest,
            "checkpointed": run is not None and digest is not None and run.checkpointed,
            "signer": None if run is None or run.signature is None else run.signature.fingerprint,
            "signing_problem": None if run is None else run.signing_problem,
        }
        if target is None:
            write_document(document)
        else:
            with target:
                write_document(document, target)
    return code


def _playback(args: argparse.Namespace, store: Store, script: Path) -> int:
    import runpy

    from precip_repro.playback import RecordingStopped
    from precip_repro.session import session

    ((view, _),) = intact_views(args, args.playback)
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.resolve().parent))
    recorded = f"the recording ended {view.ended}"
    exited: SystemExit | None = None
    with session.playing_back(view) as playback:
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
