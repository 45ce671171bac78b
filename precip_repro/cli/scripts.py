"""The commands that run a script: demo, and run (recording, or played back with
--playback)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from precip_repro.cli.core import (
    EXIT_BAD,
    EXIT_OK,
    Usage,
    intact_views,
    store_of,
)
from precip_repro.commandline import showing_progress
from precip_repro.record.store import RunStore

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


def cmd_run(args: argparse.Namespace) -> int:
    import runpy

    from precip_repro.session import finish_run, session

    script = Path(args.script)
    if not script.is_file():
        what = "is a directory, not a Python file" if script.is_dir() else "does not exist"
        raise Usage(f"script {script} {what}")
    store = store_of(args)
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
        with showing_progress(quiet=args.quiet):
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
    if run.signature is not None:
        print(f"  signed  {run.signature.fingerprint}")
    elif run.signing_problem is not None:
        print(f"  unsigned  {run.signing_problem}")
    print(f"  verify  precip-repro --records {store.root} verify {run.id} --digest {digest}")
    return code


def _playback(args: argparse.Namespace, store: RunStore, script: Path) -> int:
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
