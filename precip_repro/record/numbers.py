"""Format v2's typed encoding: the numbers a JSON number cannot carry exactly, as objects.

A free-form value the user passes (a note's fields, a call's arguments and result) may hold
any float or integer. RFC 8785 writes a float by ECMAScript's rules — ``2.0`` as ``2``,
``-0.0`` as ``0`` — and has no token for NaN, infinities or integers beyond ±(2^53 - 1), so
those are written as one-member objects instead, decided here once:

=================== ================================ ====================================
key                 value                            stands for
=================== ================================ ====================================
``$float``          ``"2"``, ``"-0"``, ``"NaN"``,    a float JSON would read back as an
                    ``"Infinity"``, ``"-Infinity"``  integer (integral, -0) or cannot hold
``$int``            ``"9007199254740993"``           an integer beyond ±(2^53 - 1)
``$object``         ``{"$float": "x"}``              a user's own one-member object whose
                                                     key is one of these three, kept as is
=================== ================================ ====================================

Every other float is a plain JSON number (``4.919``), read back as a float; a number token
without fraction or exponent reads back as an integer. Each value has exactly one encoding:
a ``$float`` that a plain number could carry, or an ``$int`` within ±(2^53 - 1), is not one
(readers refuse it), so the bytes of a record stay canonical in meaning too.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

import rfc8785

from precip_repro.exceptions import UnrecordableValue

__all__ = [
    "FLOAT",
    "INT",
    "MAX_SAFE",
    "NOTHING",
    "NUMBER",
    "OBJECT",
    "RESERVED",
    "TYPED_LOOKING",
    "decode",
    "decoded_or_as_is",
    "encode_float",
    "encode_int",
    "escape_object",
    "escape_reserved",
    "is_plain_number",
    "needs_encoding",
    "scan",
]

MAX_SAFE: Final = 2**53 - 1
"""The largest integer every JSON reader holds exactly (ECMAScript's ``MAX_SAFE_INTEGER``)."""

FLOAT: Final = "$float"
INT: Final = "$int"
OBJECT: Final = "$object"
RESERVED: Final = frozenset({FLOAT, INT, OBJECT})

_FLOAT_WORDS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_INT_TEXT: Final = re.compile(r"-?[1-9][0-9]*")


def is_plain_number(value: float) -> bool:
    """Whether a float is written as a plain JSON number: finite, and ECMAScript writes it
    with a fraction or an exponent (so it reads back as a float)."""
    return math.isfinite(value) and (not value.is_integer() or abs(value) >= 1e21)


def encode_float(value: float) -> Any:
    """The recorded form of a float: itself, or ``{"$float": text}``."""
    if is_plain_number(value):
        return value
    if math.isnan(value):
        text = "NaN"
    elif math.isinf(value):
        text = "Infinity" if value > 0 else "-Infinity"
    elif value == 0 and math.copysign(1.0, value) < 0:
        text = "-0"
    else:
        text = rfc8785.dumps(value).decode("ascii")
    return {FLOAT: text}


def encode_int(value: int) -> Any:
    """The recorded form of an integer: itself within ±(2^53 - 1), else ``{"$int": text}``."""
    if -MAX_SAFE <= value <= MAX_SAFE:
        return value
    return {INT: str(value)}


def escape_object(value: dict[str, Any]) -> dict[str, Any]:
    """A user's object as recorded: wrapped in ``$object`` when it looks like a typed value."""
    if len(value) == 1 and next(iter(value)) in RESERVED:
        return {OBJECT: value}
    return value


def escape_reserved(value: Any) -> Any:
    """``value`` with every object that looks like a typed value wrapped in ``$object``: what
    a v1 record's data means in v2 terms (v1 had no typed values; ``UPGRADES[1]``). The same
    object when nothing in it looks typed (nearly every event: reading a v1 run upgrades each
    one, and rebuilding them all was most of the cost)."""
    if not _holds_typed(value):
        return value
    return _escaped(value)


def _escaped(value: Any) -> Any:
    if type(value) is dict:
        out = {key: _escaped(item) for key, item in value.items()}
        return escape_object(out)
    if type(value) is list:
        return [_escaped(item) for item in value]
    return value


_INF: Final = math.inf


NOTHING: Final = "nothing"
TYPED_LOOKING: Final = "typed-looking"
NUMBER: Final = "number"


def scan(value: Any, *, any_float: bool = True) -> str:
    """What needs care in ``value`` (plain JSON types), in one walk over its values: a float
    (with ``any_float`` False: only one a plain number cannot carry) or an integer beyond
    ±(2^53 - 1) — :data:`NUMBER`, found first; else a one-member object whose key is
    reserved — :data:`TYPED_LOOKING`; else :data:`NOTHING`. On the hot paths of every
    append and read (a loop per container: most values are scalars)."""
    found = NOTHING
    stack = [value]
    while stack:
        container = stack.pop()
        if type(container) is dict:
            if len(container) == 1 and next(iter(container)) in RESERVED:
                found = TYPED_LOOKING
            items: Any = container.values()
        elif type(container) is list:
            items = container
        else:
            items = (container,)
        for item in items:
            kind = type(item)
            if kind is str or kind is bool or item is None:
                continue
            if kind is int:
                if not -MAX_SAFE <= item <= MAX_SAFE:
                    return NUMBER
            elif kind is dict or kind is list:
                if item:  # (an empty one holds nothing to find)
                    stack.append(item)
            elif kind is float and (
                any_float
                or item != item
                or item == _INF
                or item == -_INF
                or (item.is_integer() and -1e21 < item < 1e21)
            ):
                return NUMBER
    return found


def needs_encoding(value: Any, *, any_float: bool = False) -> bool:
    """Whether anything in ``value`` (plain JSON types) is written otherwise than itself: a
    float a plain number cannot carry, an integer beyond ±(2^53 - 1), a one-member object
    whose key is reserved — or, with ``any_float``, any float."""
    return scan(value, any_float=any_float) is not NOTHING


def _holds_typed(value: Any) -> bool:
    # Readers walk every call's arguments with this: scalars and empty containers are
    # passed over where they are met, never pushed (most values are scalars).
    if type(value) is not dict and type(value) is not list:
        return False
    stack: list[Any] = [value]
    while stack:
        container = stack.pop()
        items: Any = container
        if type(container) is dict:
            if len(container) == 1 and next(iter(container)) in RESERVED:
                return True
            items = container.values()
        for item in items:
            if (type(item) is dict or type(item) is list) and item:
                stack.append(item)
    return False


def decode(value: Any, field: str = "") -> Any:
    """A recorded free-form value as the user passed it: typed values back to floats and
    integers, ``$object`` unwrapped. The same object when nothing in it is typed.

    Raises :class:`UnrecordableValue` naming the field for a typed value that is not one
    the writer writes (the record was edited).
    """
    if not _holds_typed(value):
        return value
    return _decode(value, field)


def decoded_or_as_is(value: Any) -> Any:
    """:func:`decode`, or ``value`` as it is when a typed value in it is malformed: for
    readers of runs not verified (``verify`` says what is wrong with them)."""
    if not _holds_typed(value):
        return value
    try:
        return _decode(value, "")
    except UnrecordableValue:
        return value


def _decode(value: Any, field: str) -> Any:
    kind = type(value)
    if kind is list:
        return [_decode(item, f"{field}[{i}]") for i, item in enumerate(value)]
    if kind is not dict:
        return value
    if len(value) == 1:
        ((key, item),) = value.items()
        if key == FLOAT:
            return _decoded_float(item, field)
        if key == INT:
            return _decoded_int(item, field)
        if key == OBJECT:
            if type(item) is not dict or len(item) != 1 or next(iter(item)) not in RESERVED:
                raise _bad(field, f"{OBJECT} wraps {item!r}, not a one-member object "
                           f"whose key is one of {sorted(RESERVED)}")  # fmt: skip
            ((inner, inner_item),) = item.items()
            return {inner: _decode(inner_item, _join(field, inner))}
    return {key: _decode(item, _join(field, key)) for key, item in value.items()}


def _decoded_float(text: Any, field: str) -> float:
    if type(text) is not str:
        raise _bad(field, f"{FLOAT} holds {text!r}, not a string")
    if text in _FLOAT_WORDS:
        return _FLOAT_WORDS[text]
    if text == "-0":
        return -0.0
    try:
        number = float(text)
    except ValueError:
        raise _bad(field, f"{FLOAT} holds {text!r}, not a number") from None
    if is_plain_number(number) or encode_float(number) != {FLOAT: text}:
        raise _bad(field, f"{FLOAT} holds {text!r}, which is written otherwise "
                   "(a plain number, or ECMAScript's form of it)")  # fmt: skip
    return number


def _decoded_int(text: Any, field: str) -> int:
    if type(text) is not str or not _INT_TEXT.fullmatch(text):
        raise _bad(field, f"{INT} holds {text!r}, not an integer's decimal digits")
    number = int(text)
    if -MAX_SAFE <= number <= MAX_SAFE:
        raise _bad(field, f"{INT} holds {text}, which is written as a plain number")
    return number


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _bad(field: str, reason: str) -> UnrecordableValue:
    where = f"field {field!r}" if field else "the value"
    return UnrecordableValue(f"{where}: {reason}", field=field)
