"""Slots: an instance's place in an experiment (``e1.p2.3``: experiment 1, provision 2,
index 3), which stays when the instance is replaced or the run replayed."""

from __future__ import annotations

import functools
import re
from typing import Final

__all__ = ["slot_order"]

_SLOT: Final = re.compile(r"e(\d+)\.p(\d+)\.(\d+)")


@functools.lru_cache(maxsize=4096)  # a large diff sorts every call's commands by slot
def slot_order(slot: str) -> tuple[int, int, int, int, str]:
    """Where a slot (``e1.p2.3``) comes among others: by experiment, provision, index —
    as launched in turn, whatever order overlapping launches were recorded in."""
    found = _SLOT.fullmatch(slot)
    if found is None:
        return (1, 0, 0, 0, slot)
    return (0, int(found[1]), int(found[2]), int(found[3]), "")
