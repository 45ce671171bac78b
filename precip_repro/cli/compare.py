"""The commands that compare and present runs: diff and report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from precip_repro.diff import DiffResult
    from precip_repro.runview import RunView


from precip_repro.cli.core import (
    EXIT_BAD,
    EXIT_INCOMPLETE,
    EXIT_OK,
    Usage,
    intact_digests,
    store_of,
)
from precip_repro.stores import StoreCapability

__all__ = ["cmd_diff", "cmd_report"]


def cmd_diff(args: argparse.Namespace) -> int:
    import json

    from precip_repro.record.canonical import jsonable

    if not args.tolerance >= 0:  # nan too: it would silently compare no duration
        raise Usage(f"--tolerance must be a percentage of at least 0, not {args.tolerance}")
    if args.rules:  # before anything is read
        from precip_repro.rules_file import load_rules

        rules = load_rules(args.rules)
    else:
        rules = ()
    compared: list[DiffResult] = []

    def compare(views: list[RunView]) -> None:
        # Imported once the runs are read: the processes verifying large runs, started
        # before, need none of it (and the imports would hold them back).
        from precip_repro.diff import diff_runs

        compared[:] = [diff_runs(*views, tolerance=args.tolerance / 100, rules=rules)]

    digest_a, digest_b = intact_digests(args, args.a, args.b, meanwhile=compare)
    from precip_repro.diff import render_text
    from precip_repro.expectations import StepVerdict

    (result,) = compared
    result.a["digest"], result.b["digest"] = digest_a, digest_b
    if args.json:
        # Numbers JSON cannot carry (NaN, infinities, integers beyond 2^53) in the record's
        # typed encoding (records/README.md, "Numbers"): the output is strict JSON.
        document = jsonable(result.to_json())
        print(json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False))
    else:
        for line in render_text(result):
            print(line)
    return EXIT_BAD if result.verdict is StepVerdict.DIVERGED else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from precip_repro.exceptions import InvalidOption
    from precip_repro.report import write_report

    store = store_of(args)
    first, *more = args.runs
    run_dir = store.resolve(first)
    vs = store.resolve(args.vs) if args.vs else None
    others = [store.resolve(spec) for spec in more]
    fmt = args.format
    # Beside the runs, not inside one: a run's directory is its record, left as written.
    # A shared store's runs are in a cache the user never looks in: ./reports then.
    beside = Path() if StoreCapability.SHARED in store.capabilities else store.root
    default = beside / "reports" / f"{run_dir.name}.{fmt}"
    out = Path(args.output) if args.output else default
    if args.plot and vs is None and not others:
        raise Usage("--plot plots a field across runs: give more runs (report RUN B …) or --vs B")
    try:
        written = write_report(run_dir, out, fmt=fmt, vs=vs, others=others, plotted=args.plot or ())
    except InvalidOption as exc:
        raise Usage(str(exc)) from None
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
    if written.left_out:
        print(
            f"precip-repro report: the results of {', '.join(written.left_out)} are not set "
            "beside this run's: a run is not intact (the report says which and why)",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return EXIT_OK
