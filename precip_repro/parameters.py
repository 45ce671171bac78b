"""What a run was asked to do: its script's arguments and the parameters it declared
(``exp.param``), and what changed in them between two runs — the first thing ``diff`` and
``report`` say, since it explains the rest ("SORT_N 200000 → 400000").
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Iterator
from typing import Any, Final

import attrs

from precip_repro.record.canonical import JSON
from precip_repro.runview import RunView

__all__ = ["ARGV", "ParameterChange", "declared", "parameter_changes", "shown"]

ARGV: Final = "argv"
"""The kind of a change of the script's arguments (a parameter's kind is ``parameter``)."""


def shown(value: Any) -> str:
    """A parameter's value as a person reads it: text as it is, numbers as Python writes
    them, absence as ``(not declared)``."""
    if value is None:
        return "(not declared)"
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return repr(value) if isinstance(value, float) else json.dumps(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@attrs.frozen(kw_only=True)
class ParameterChange:
    """One change in what the runs were asked to do: the script's arguments (``kind``
    ``argv``, the lists) or one parameter (``kind`` ``parameter``, ``name`` and the values,
    ``null`` where a run did not declare it, and where each value came from)."""

    kind: str
    a: JSON
    b: JSON
    name: str | None = None
    a_source: str | None = None
    b_source: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As ``diff --json`` holds it (docs/differences.md): optional keys only when set."""
        out: dict[str, Any] = {"kind": self.kind, "a": self.a, "b": self.b}
        for key in ("name", "a_source", "b_source"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def line(self) -> str:
        """``SORT_N 200000 → 400000`` (``argv 1000 → 2000``)."""
        if self.kind == ARGV:
            a, b = (_argv(side) for side in (self.a, self.b))
            return f"argv {a} → {b}"
        sources = ""
        if self.a_source != self.b_source and None not in (self.a_source, self.b_source):
            sources = f" ({self.a_source} → {self.b_source})"
        return f"{self.name} {shown(self.a)} → {shown(self.b)}{sources}"


def _argv(value: JSON) -> str:
    if not isinstance(value, list):
        return "(not recorded)"
    return shlex.join(str(arg) for arg in value) if value else "(none)"


def _same(a: JSON, b: JSON) -> bool:
    # 1, 1.0 and True are equal in Python; a parameter that changed type changed.
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def parameter_changes(a: RunView, b: RunView) -> list[ParameterChange]:
    """What changed in what the two runs were asked to do: their arguments first (when both
    ran a script), then each parameter in the order ``a`` declared them, then those only
    ``b`` declared."""
    return list(_changes(a, b))


def _changes(a: RunView, b: RunView) -> Iterator[ParameterChange]:
    args_a, args_b = a.arguments, b.arguments
    if args_a is not None and args_b is not None and args_a != args_b:
        yield ParameterChange(kind=ARGV, a=list(args_a), b=list(args_b))
    names = list(a.parameters) + [name for name in b.parameters if name not in a.parameters]
    for name in names:
        one, other = a.parameters.get(name), b.parameters.get(name)
        value_a = None if one is None else one.value
        value_b = None if other is None else other.value
        if one is not None and other is not None and _same(value_a, value_b):
            continue
        yield ParameterChange(
            kind="parameter",
            name=name,
            a=value_a,
            b=value_b,
            a_source=None if one is None else one.source,
            b_source=None if other is None else other.source,
        )


def declared(view: RunView) -> dict[str, JSON]:
    """A run's arguments (as one shell-quoted string, under ``argv``, when it ran a script)
    and its parameters by name: the columns a table of many runs' results shows them in."""
    out: dict[str, JSON] = {}
    if view.arguments is not None:
        out[ARGV] = shlex.join(view.arguments)
    for name, parameter in view.parameters.items():
        out[name] = parameter.value
    return out
