"""The recorder's overhead: ``run([...], "true")`` recorded vs ``record=False``.

Not a test: prints figures. Two local experiments in one process (one recording, one not),
each with one instance on an open connection; batches of calls alternate between them.
Targets: recorded / unrecorded ≤ 1.05, and one round trip ≤ 4 ms.

Usage: python bench/overhead.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import shutil

from _common import interleaved, scratch  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = scratch()

    from precip_repro import LocalExperiment, finish_run

    recorded = LocalExperiment("overhead-recorded")
    bare = LocalExperiment("overhead-bare", record=False)
    try:
        for exp in (recorded, bare):
            exp.provision("default", tags=["bench"])
            exp.wait()
            exp.run(["bench"], "true")
        batch = max(1, args.calls // args.rounds)

        def calls(exp: LocalExperiment) -> None:
            for _ in range(batch):
                exp.run(["bench"], "true")

        medians = interleaved(
            {"recorded": lambda: calls(recorded), "bare": lambda: calls(bare)}, args.rounds
        )
    finally:
        recorded.deprovision()
        bare.deprovision()
        finish_run()
        shutil.rmtree(root, ignore_errors=True)
    per_recorded = medians["recorded"] / batch * 1000
    per_bare = medians["bare"] / batch * 1000
    print(f"run([...], 'true'), {batch} calls per round, median of {args.rounds} rounds:")
    print(f"  recorded      {per_recorded:.2f} ms per call (target ≤ 4 ms)")
    print(f"  record=False  {per_bare:.2f} ms per call")
    print(f"  ratio recorded / unrecorded = {per_recorded / per_bare:.3f} (target ≤ 1.05)")


if __name__ == "__main__":
    main()
