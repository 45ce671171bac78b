"""Doing one thing for each instance, in turn or on threads, outcomes in instance order."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

__all__ = ["MAX_WORKERS", "fan_out"]

T = TypeVar("T")
R = TypeVar("R")

MAX_WORKERS: Final = 32


def fan_out(
    func: Callable[[T], R], items: Sequence[T], *, parallel: bool, workers: int = MAX_WORKERS
) -> list[tuple[R | None, BaseException | None]]:
    """Apply ``func`` to each item, in order or on daemon threads; outcomes in item order.

    Daemon threads, not an executor: at interpreter exit an executor joins its workers
    before atexit runs, and a long command would hold up deprovisioning.
    """
    outcomes: list[tuple[R | None, BaseException | None]] = [(None, None)] * len(items)
    if not parallel or len(items) <= 1:
        for index, item in enumerate(items):
            try:
                outcomes[index] = (func(item), None)
            except Exception as exc:
                outcomes[index] = (None, exc)
        return outcomes
    pending = iter(range(len(items)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                index = next(pending, None)
            if index is None:
                return
            try:
                outcomes[index] = (func(items[index]), None)
            except BaseException as exc:
                outcomes[index] = (None, exc)

    threads = [
        threading.Thread(target=worker, daemon=True, name="precip-fanout")
        for _ in range(min(workers, len(items)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
