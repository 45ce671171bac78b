"""Shared by the benchmarks: a scratch PRECIP_HOME and records dir, medians, ratios."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


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
