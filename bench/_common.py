"""Shared by the benchmarks: a scratch PRECIP_HOME and records dir, medians, ratios."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def scratch() -> Path:
    """A scratch directory; PRECIP_HOME and PRECIP_RECORDS point inside it."""
    root = Path(tempfile.mkdtemp(prefix="precip-bench-", dir=os.environ.get("BENCH_DIR")))
    os.environ["PRECIP_HOME"] = str(root / "home")
    os.environ["PRECIP_RECORDS"] = str(root / "records")
    return root


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each contender over ``rounds`` interleaved rounds."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, func in contenders.items():
            samples[name].append(timed(func))
    return {name: statistics.median(values) for name, values in samples.items()}


def provisioned_run(store: Path, name: str, ids: list[str], *, block: int, **options: Any) -> Any:
    """A new run in ``store`` that provisioned the instances ``ids`` (call 1, finished) at
    addresses 127.BLOCK.0.2…: where the benchmarks' large runs start."""
    from precip_repro.record import Run, RunStore
    from precip_repro.record.payloads import (
        CallFinished,
        CallStarted,
        InstanceLaunched,
        InstanceReady,
    )

    run = Run.open(RunStore(store), name=name, **options)
    run.append(CallStarted(call=1, exp="e1", method="provision", args={"image_id": "default"}))
    for n, instance_id in enumerate(ids):
        run.append(
            InstanceLaunched(
                call=1, exp="e1", slot=f"e1.p1.{n}", instance_id=instance_id,
                image_id="default", instance_type="m1.small", tags=["precip"],
            )
        )  # fmt: skip
        address = f"127.{block}.0.{n + 2}"
        run.append(
            InstanceReady(
                slot=f"e1.p1.{n}", instance_id=instance_id, facts={"cpus": 2},
                public_address=address, private_address=address,
            )
        )  # fmt: skip
    run.append(CallFinished(call=1, result=ids, duration_ns=1))
    return run


def command_call(run: Any, call: int, ids: list[str], out: Any) -> None:
    """Append one recorded ``run`` call: ``step CALL on $(hostname)`` on instance ``call % 2``
    of ``ids``, printing the blob ``out`` (nothing on stderr), with varying durations."""
    from precip_repro.record.payloads import CallFinished, CallStarted, CommandFinished

    cmd = f"step {call} on $(hostname)"
    run.append(CallStarted(call=call, exp="e1", method="run", args={"cmd": cmd, "tags": []}))
    slot = call % 2
    run.append(
        CommandFinished(
            call=call, slot=f"e1.p1.{slot}", instance_id=ids[slot], user="root", cmd=cmd,
            exit_code=0, stdout=out, stderr=run.add_blob(b"", inline=True),
            duration_ns=2_000_000 + (call * 7919) % 1_000_000,
        )
    )  # fmt: skip
    run.append(CallFinished(call=call, result={"exit_codes": [0]}, duration_ns=3_000_000))
