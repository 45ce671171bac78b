"""A parameter of the experiment (``exp.param``): the value of the environment variable of
its name, typed as the script asked, else the script's default — or, played back, the
value the recording used.

Only the choosing is here; the experiment records what was chosen (a ``parameter`` event).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from precip_repro.exceptions import InvalidOption, ParameterInvalid
from precip_repro.record.canonical import JSON

__all__ = ["KINDS", "Chosen", "Value", "choose", "kind_of", "parse"]

Value = int | float | str | bool
"""What a parameter holds."""

KINDS: Final[Mapping[str, type[Value]]] = {"int": int, "float": float, "str": str, "bool": bool}
"""The types a parameter may have, by name."""

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


@attrs.frozen(kw_only=True)
class Chosen:
    """The value a parameter takes and where it came from (``environment``, ``default``,
    ``recording``)."""

    value: Value
    source: str


def kind_of(name: str, default: Value | None, kind: type[Value] | None) -> type[Value]:
    """The parameter's type: the one given, else its default's, else ``str``."""
    if kind is None:
        kind = str if default is None else type(default)
    if kind not in KINDS.values():
        raise InvalidOption(f"type of parameter {name}", getattr(kind, "__name__", kind), KINDS)
    widened = kind is float and type(default) is int  # default=2 of a float parameter
    if default is not None and not isinstance(default, kind) and not widened:
        raise ParameterInvalid(
            f"parameter {name}: default {default!r} is of type {type(default).__name__}, "
            f"and the parameter is declared {kind.__name__}",
            name=name,
            text=None,
            expected=kind.__name__,
        )
    return kind


def parse(name: str, text: str, kind: type[Value]) -> Value:
    """The environment's text as a value of ``kind``, or :class:`ParameterInvalid`."""
    try:
        if kind is bool:
            word = text.strip().lower()
            if word in _TRUE | _FALSE:
                return word in _TRUE
            raise ValueError(text)
        if kind is int:
            return int(text.strip(), 10)
        if kind is float:
            return float(text.strip())
    except ValueError:
        words = {
            bool: f"one of {', '.join(sorted(_TRUE | _FALSE))}",
            int: "an int (decimal digits)",
            float: "a float",
        }[kind]
        raise ParameterInvalid(
            f"parameter {name}: the environment variable {name}={text!r} is not {words} "
            f"(the script declared {name} a {kind.__name__}); set it to one, or unset it to "
            "use the default",
            name=name,
            text=text,
            expected=kind.__name__,
        ) from None
    return text


def choose(
    name: str,
    default: Value | None,
    kind: type[Value],
    *,
    environ: Mapping[str, str],
    recorded: JSON | None = None,
) -> Chosen:
    """The value of parameter ``name``: ``recorded`` when a playback gives one, else the
    environment's, else ``default``."""
    if recorded is not None and isinstance(recorded, int | float | str | bool):
        return Chosen(value=recorded, source="recording")
    text = environ.get(name)
    if text is not None:
        return Chosen(value=parse(name, text, kind), source="environment")
    if default is None:
        raise ParameterInvalid(
            f"parameter {name} is not set: set the environment variable {name} (a "
            f"{kind.__name__}), or give exp.param({name!r}, default=…)",
            name=name,
            text=None,
            expected=kind.__name__,
        )
    return Chosen(value=kind(default) if kind is float else default, source="default")
