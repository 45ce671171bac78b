"""diff and report over large runs. Not a test: prints figures.

1. ``precip-repro diff`` of two 100,000-event runs (verifying both, as the command does),
   in a fresh process: wall time of the command (and of the whole process, start-up and
   imports included) and peak RSS. Targets: < 2 s and < 200 MB. The in-process
   cost of ``diff_runs`` alone is printed too.
2. ``precip-repro report`` of a run of 10,000 commands: wall time (target < 5 s).

Usage: python bench/diff.py [--events N] [--commands N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import command_call, provisioned_run, scratch  # type: ignore[import-not-found]


def record(store: Path, events: int, *, variant: int) -> str:
    ids = [f"i-{variant:04d}{n:012d}" for n in range(2)]
    run = provisioned_run(store, f"big-{variant}", ids, block=130 + variant)
    call = 1
    while run.events < events - 4:
        call += 1
        out = run.add_blob(f"{ids[call % 2]} did step {call}\n".encode(), inline=True)
        command_call(run, call, ids, out)
    run.finish()
    return run.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = scratch()
    store = root / "records"
    try:
        a = record(store, args.events, variant=1)
        b = record(store, args.events, variant=2)
        code = (
            "import sys, time\n"
            "from precip_repro.cli import main\n"
            "start = time.perf_counter()\n"
            "status = main(['--records', sys.argv[1], 'diff', sys.argv[2], sys.argv[3]])\n"
            "elapsed = time.perf_counter() - start\n"
            "hwm = next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
            "import resource\n"
            "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "print('BENCH', status, elapsed, hwm, kids, file=sys.stderr)\n"
        )
        runs = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", code, str(store), a, b],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            whole = time.perf_counter() - started
            line = next(x for x in done.stderr.splitlines() if x.startswith("BENCH"))
            _, status, seconds, peak, children = line.split()
            assert status == "0", done.stdout[-2000:]
            runs.append((float(seconds), int(peak), int(children), whole))
        elapsed, hwm, kids, whole = sorted(runs)[len(runs) // 2]

        from precip_repro.diff import diff_runs
        from precip_repro.loading import _read_unchecked, collection_paused
        from precip_repro.record import verify

        # The command's CPU, piece by piece: each verifying child runs `verify` on one run;
        # the parent reads both without checks, then compares.
        start = time.perf_counter()
        with collection_paused():
            assert verify(store / a).intact
        verified = time.perf_counter() - start
        start = time.perf_counter()
        with collection_paused():
            view_a, view_b = _read_unchecked(store / a), _read_unchecked(store / b)
        loaded = (time.perf_counter() - start) / 2
        start = time.perf_counter()
        result = diff_runs(view_a, view_b)
        compared = time.perf_counter() - start
        assert result.same
        print(
            f"diff of two {args.events:,}-event runs (the CLI, verifying both; median of "
            f"{args.rounds} on {os.cpu_count()} cores): {elapsed:.2f} s (target < 2 s; "
            f"{whole:.2f} s with the interpreter's start and imports), peak RSS "
            f"{hwm / 1024:.0f} MB (target < 200 MB; each verifying child {kids / 1024:.0f} MB); "
            f"CPU per piece: verify {verified:.2f} s a run (in each child), unchecked read "
            f"{loaded:.2f} s a run + compare {compared:.2f} s (in the parent)"
        )

        from precip_repro.report import write_report

        c = record(store, args.commands * 3 + 6, variant=3)
        start = time.perf_counter()
        write_report(store / c, root / "report.html")
        rendered = time.perf_counter() - start
        size = (root / "report.html").stat().st_size
        print(
            f"report of a run of {args.commands:,} commands: {rendered:.2f} s (target < 5 s), "
            f"{size / 1e6:.1f} MB of HTML"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
