"""What a cloud says about the instances one ``wait()`` watches, asked for all at once.

Each instance is awaited in a thread of its own; were each to ask the cloud about itself, a
100-instance wait would send DescribeInstances 30 times a second — past EC2's rate limit
for it (a bucket of 100, refilled at 20 a second), so that botocore's retries would stall
the wait and could end it. The board asks about every instance still watched in one call,
at most every :data:`PERIOD` seconds, and each thread reads its instance from the answer.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from typing import Final

from precip_repro.clouds.base import Cloud, CloudInstance

__all__ = ["PERIOD", "StateBoard"]

PERIOD: Final = 0.25
"""Seconds an answer is good for: how late a change of state (pending → running) can be
seen. Logging in over ssh takes about as long."""


class StateBoard:
    """The latest description of the watched instances; thread-safe."""

    def __init__(
        self, cloud: Cloud, instance_ids: Iterable[str], *, period: float = PERIOD
    ) -> None:
        self._cloud = cloud
        self._period = period
        self._lock = threading.Lock()
        self._watched: dict[str, None] = dict.fromkeys(instance_ids)
        self._asked: set[str] = set()
        self._found: dict[str, CloudInstance] = {}
        self._at = -math.inf

    def describe(self, instance_id: str) -> CloudInstance | None:
        """What the cloud said about ``instance_id`` at most ``period`` s ago (asking it
        again when that is older, or when the id is new: a replacement); None when it does
        not list the instance."""
        with self._lock:
            self._watched.setdefault(instance_id)
            if instance_id not in self._asked or time.monotonic() - self._at >= self._period:
                ids = list(self._watched)
                found = self._cloud.describe(ids)
                self._found = {inst.instance_id: inst for inst in found}
                self._asked = set(ids)
                self._at = time.monotonic()
            return self._found.get(instance_id)

    def forget(self, instance_id: str) -> None:
        """Stop asking about an instance (ready, failed, or replaced)."""
        with self._lock:
            self._watched.pop(instance_id, None)
