"""The command that gathers the results of runs: ``results RUN…`` — the notes of many runs as
one table (``--csv`` for a spreadsheet or pandas, ``--json`` documented in docs/json.md)."""

from __future__ import annotations

import argparse
import json
import sys

from precip_repro.cli.core import EXIT_OK, Usage, intact_views

__all__ = ["cmd_results", "results_options"]

RESULTS_HELP = (
    "the notes of runs as one table: a row per note (exp.note), its fields as columns "
    "beside the run and its arguments and parameters; --csv or --json for programs"
)


def results_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("runs", metavar="RUN", nargs="+", help="the runs, in the order wanted")
    form = cmd.add_mutually_exclusive_group()
    form.add_argument("--csv", action="store_true", help="CSV with a header row (RFC 4180)")
    form.add_argument(
        "--json",
        action="store_true",
        help="one JSON document on stdout (docs/json.md); the exit status is unchanged",
    )


def cmd_results(args: argparse.Namespace) -> int:
    from precip_repro.record.canonical import jsonable
    from precip_repro.results import cell_text, is_number, results_of

    if len(set(args.runs)) != len(args.runs):
        twice = sorted({run for run in args.runs if args.runs.count(run) > 1})
        raise Usage(f"run(s) {', '.join(twice)} given more than once: each run is one set of rows")
    found = intact_views(args, *args.runs)
    table = results_of([view for view, _ in found], digests=[digest for _, digest in found])
    if args.json:
        # Numbers JSON cannot carry (NaN, infinities, integers beyond 2^53) in the record's
        # typed encoding, as diff --json writes them: the output is strict JSON.
        document = jsonable(table.to_json())
        print(json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False))
        return EXIT_OK
    if args.csv:
        sys.stdout.write(table.to_csv())
        return EXIT_OK
    if not table.rows:
        print(f"no notes in {len(found)} run(s): the script wrote none (exp.note)")
        return EXIT_OK
    lines = [table.columns] + [
        [cell_text(row.cells.get(column)) for column in table.columns] for row in table.rows
    ]
    numeric = [
        all(is_number(row.cells.get(column)) for row in table.rows if column in row.cells)
        for column in table.columns
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(table.columns))]
    for line in lines:
        cells = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(line, widths, numeric, strict=True)
        ]
        print("  ".join(cells).rstrip())
    return EXIT_OK
