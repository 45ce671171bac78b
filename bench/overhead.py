"""The recorder's overhead: ``run([...], "true")`` recorded vs ``record=False``.

Not a test: prints figures. Three local experiments in one process (one recording, two
not), each with one instance on an open connection; batches of calls alternate between
them, and the unrecorded time is the mean of the two (instances differ by a few per cent
among themselves).
Targets: recorded / unrecorded ≤ 1.05, and one round trip ≤ 4 ms.

Usage: python bench/overhead.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import shutil

from _common import interleaved, scratch  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    root = scratch()

    from precip_repro import LocalExperiment, finish_run

    # Two unrecorded instances: instances differ by a few per cent among themselves (their
    # sshd, their address), which would otherwise pass for the recorder's cost.
    recorded = LocalExperiment("overhead-recorded")
    bare = [LocalExperiment(f"overhead-bare-{n}", record=False) for n in (1, 2)]
    try:
        for exp in (recorded, *bare):
            exp.provision("default", tags=["bench"])
            exp.wait()
            exp.run(["bench"], "true")
        batch = max(1, args.calls // args.rounds)

        def calls(exp: LocalExperiment) -> None:
            for _ in range(batch):
                exp.run(["bench"], "true")

        medians = interleaved(
            {
                "recorded": lambda: calls(recorded),
                "bare1": lambda: calls(bare[0]),
                "bare2": lambda: calls(bare[1]),
            },
            args.rounds,
        )
    finally:
        for exp in (recorded, *bare):
            exp.deprovision()
        finish_run()
        shutil.rmtree(root, ignore_errors=True)
    per_recorded = medians["recorded"] / batch * 1000
    per_bare = (medians["bare1"] + medians["bare2"]) / 2 / batch * 1000
    spread = abs(medians["bare1"] - medians["bare2"]) / min(medians["bare1"], medians["bare2"])
    print(f"run([...], 'true'), {batch} calls per round, median of {args.rounds} rounds:")
    print(f"  recorded      {per_recorded:.2f} ms per call (target ≤ 4 ms)")
    print(f"  record=False  {per_bare:.2f} ms per call (two instances, {spread:.1%} apart)")
    print(f"  ratio recorded / unrecorded = {per_recorded / per_bare:.3f} (target ≤ 1.05)")


if __name__ == "__main__":
    main()
