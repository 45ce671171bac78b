"""The one walk over a JSON value: every string in it mapped, the structure kept.

Normalising (volatile values → slot names), redacting (secrets → placeholders), replay's
remapping (slot names → the replay's values) and a replay's one-host view of addresses are
all this walk with another function.
"""

from __future__ import annotations

from collections.abc import Callable

from precip_repro.record.canonical import JSON

__all__ = ["map_strings"]


def map_strings(value: JSON, text: Callable[[str], str], *, keys: bool = False) -> JSON:
    """``value`` with ``text`` applied to every string in it — with ``keys``, to the keys of
    its objects too (a note's field may be named after a secret)."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, list):
        return [map_strings(item, text, keys=keys) for item in value]
    if isinstance(value, dict):
        if keys:
            return {text(k): map_strings(item, text, keys=True) for k, item in value.items()}
        return {k: map_strings(item, text) for k, item in value.items()}
    return value
