"""The recorder's overhead: ``run([...], "true")`` recorded vs unrecorded.

Not a test: prints figures. One local experiment with one instance on an open connection;
batches of calls alternate between recording and not recording on that same instance and
connection (the experiment's run detached, which is exactly what ``record=False`` runs:
every recording step checks for it). Instances differ among themselves by a few per cent,
so comparing two would measure them, not the recorder.
Targets: recorded / unrecorded ≤ 1.05, and one round trip ≤ 4 ms.

Usage: python bench/overhead.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import shutil

from _common import interleaved, scratch  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    root = scratch()

    from precip_repro import LocalExperiment, finish_run

    exp = LocalExperiment("overhead")
    run = exp._run  # the recorder; detached for the unrecorded batches
    try:
        exp.provision("default", tags=["bench"])
        exp.wait()
        exp.run(["bench"], "true")
        batch = max(1, args.calls // args.rounds)

        def calls(recording: bool) -> None:
            exp._run = run if recording else None
            for _ in range(batch):
                exp.run(["bench"], "true")

        medians = interleaved(
            {"recorded": lambda: calls(True), "unrecorded": lambda: calls(False)}, args.rounds
        )
    finally:
        exp._run = run
        exp.deprovision()
        finish_run()
        shutil.rmtree(root, ignore_errors=True)
    per_recorded = medians["recorded"] / batch * 1000
    per_bare = medians["unrecorded"] / batch * 1000
    print(f"run([...], 'true'), {batch} calls per batch, median of {args.rounds} rounds:")
    print(f"  recorded      {per_recorded:.2f} ms per call (target ≤ 4 ms)")
    print(f"  unrecorded    {per_bare:.2f} ms per call (same instance and connection)")
    print(f"  ratio recorded / unrecorded = {per_recorded / per_bare:.3f} (target ≤ 1.05)")
    print(f"  the recorder's cost: {(per_recorded - per_bare) * 1000:.0f} µs per call")


if __name__ == "__main__":
    main()
