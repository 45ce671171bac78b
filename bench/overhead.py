"""The recorder's overhead: ``run([...], "true")`` recorded vs unrecorded.

Not a test: prints figures. One local experiment with one instance on an open connection;
batches of calls alternate between recording and not recording on that same instance and
connection (the experiment's run detached, which is exactly what ``record=False`` runs:
every recording step checks for it). Instances differ among themselves by a few per cent,
so comparing two would measure them, not the recorder.

The ratio moves by several per cent from one process to the next on 2 cores (where the
main and paramiko's threads land, not the recorder: it is a few dozen µs of a 3 ms call),
so it is measured in several processes and their median reported, with the spread. The
recorder's own cost is measured apart too: the same calls with the ssh round trip stubbed
out, so that only the recording differs.
Targets: recorded / unrecorded ≤ 1.05, and one round trip ≤ 4 ms.

With ``--records s3://BUCKET/PREFIX`` the run is recorded for an S3 store (into its local
cache, pushed at the end): bench/s3.py runs it so, against a moto server of its own.

Usage: python bench/overhead.py [--calls N] [--rounds R] [--processes P] [--records STORE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from typing import Any

from _common import interleaved, scratch  # type: ignore[import-not-found]


def measure(calls: int, rounds: int, records: str | None = None) -> dict[str, float]:
    """In this process: ms per call recorded and unrecorded, and µs of recording alone."""
    root = scratch()
    if records:
        import os

        os.environ["PRECIP_RECORDS"] = records

    from precip_repro import LocalExperiment, finish_run, ssh

    exp = LocalExperiment("overhead")
    recording = exp._calls  # the call recording; its run detached for the unrecorded batches
    run = recording.run
    try:
        exp.provision("default", tags=["bench"])
        exp.wait()
        exp.run(["bench"], "true")
        batch = max(1, calls // rounds)

        def calls_of(recorded: bool) -> None:
            recording.run = run if recorded else None
            for _ in range(batch):
                exp.run(["bench"], "true")

        medians = interleaved(
            {"recorded": lambda: calls_of(True), "unrecorded": lambda: calls_of(False)}, rounds
        )
        done = ssh.ExecResult(exit_code=0, stdout=b"", stderr=b"", duration_ns=1)
        real_exec = ssh.Connection.exec
        ssh.Connection.exec = lambda self, cmd, **_: done  # type: ignore[method-assign]
        try:
            stubbed = interleaved(
                {"recorded": lambda: calls_of(True), "unrecorded": lambda: calls_of(False)},
                rounds,
            )
        finally:
            ssh.Connection.exec = real_exec  # type: ignore[method-assign]
    finally:
        recording.run = run
        exp.deprovision()
        finish_run()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "recorded_ms": medians["recorded"] / batch * 1000,
        "unrecorded_ms": medians["unrecorded"] / batch * 1000,
        "recording_us": (stubbed["recorded"] - stubbed["unrecorded"]) / batch * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--records", help="the store to record for (default: a scratch dir)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.calls, args.rounds, args.records)))
        return
    results: list[dict[str, Any]] = []
    for _ in range(args.processes):
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--calls", str(args.calls),
             "--rounds", str(args.rounds), *(["--records", args.records] if args.records else [])],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results.append(json.loads(done.stdout.splitlines()[-1]))
    ratios = sorted(r["recorded_ms"] / r["unrecorded_ms"] for r in results)
    recorded = statistics.median(r["recorded_ms"] for r in results)
    unrecorded = statistics.median(r["unrecorded_ms"] for r in results)
    own = statistics.median(r["recording_us"] for r in results)
    batch = max(1, args.calls // args.rounds)
    print(
        f"run([...], 'true'), {batch} calls per batch, median of {args.rounds} rounds in each "
        f"of {args.processes} processes, recorded for {args.records or 'a directory'}:"
    )
    print(f"  recorded      {recorded:.2f} ms per call (target ≤ 4 ms)")
    print(f"  unrecorded    {unrecorded:.2f} ms per call (same instance and connection)")
    print(
        f"  ratio recorded / unrecorded = {statistics.median(ratios):.3f} (target ≤ 1.05); "
        f"per process {', '.join(f'{r:.3f}' for r in ratios)}"
    )
    print(
        f"  the recorder's own cost (ssh round trip stubbed out): {own:.0f} µs per call "
        f"= {own / 1000 / unrecorded:.1%} of a round trip"
    )


if __name__ == "__main__":
    main()
