"""The canonical JSON form of the record, per format version, and a user's values in it.

A line of ``events.jsonl`` is exactly ``canonical(event, v=event.v)``; an event's hash is the
sha256 of the canonical form of the event without ``"hash"``. Any byte changed on disk
therefore either breaks the re-serialisation check or the hash.

Format v2's canonical form is RFC 8785 (:mod:`precip_repro.record.jcs`); format v1's is
Python's ``json.dumps`` with sorted keys, and holds no floats (the helpers below named for
floats are v1's rules, kept to read and recover v1 runs).
"""

from __future__ import annotations

import decimal
import json
import os
import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from precip_repro.exceptions import UnrecordableValue
from precip_repro.record.jcs import jcs
from precip_repro.record.numbers import decode, encode_float, encode_int, escape_object

__all__ = [
    "JSON",
    "canonical",
    "canonical_v1",
    "check_recordable",
    "dumps_fast",
    "dumps_unchecked",
    "floatish",
    "holds_float",
    "jsonable",
]

JSON = Any
"""A JSON value as the record holds it: None, bool, int, str, list, or dict with str keys."""

_dumps: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


# A float in canonical output is a number token with a fraction or exponent, right after
# ':', ',' or '[' and right before ',', '}' or ']'. String content can look like that too
# (timestamps do not: their fraction ends in 'Z'); a hit only triggers the full walk.
_FLOATISH: Final = re.compile(
    rb"[:,\[]-?[0-9]+(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)[,}\]]"
)


def canonical(obj: JSON, *, field: str = "", v: int = 2) -> bytes:
    """Return the canonical UTF-8 bytes of ``obj`` in format ``v``; refuse what the record
    cannot hold, naming the field (``field`` prefixes the dotted path named).

    v2 (the current format) is RFC 8785: see :func:`precip_repro.record.jcs.jcs`.
    """
    if v != 1:
        return jcs(obj, field=field)
    return canonical_v1(obj, field=field)


def canonical_v1(obj: JSON, *, field: str = "") -> bytes:
    """Return the format-v1 canonical UTF-8 bytes of ``obj``; refuse what v1 cannot hold.

    ``field`` prefixes the dotted path named in an :class:`UnrecordableValue`. Floats, NaN,
    non-JSON types and lone surrogates are refused. This is the hot path of every append,
    so non-string keys are not looked for here (json would turn them into strings):
    user values reach the record through :func:`jsonable`, which refuses them.
    """
    try:
        out = _dumps(obj).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        check_recordable(obj, field)
        _find_surrogate(obj, field)
        raise  # pragma: no cover - one of the two above names the field first
    if _FLOATISH.search(out):
        check_recordable(obj, field)
    return out


def floatish(out: bytes, end: int) -> bool:
    """Whether canonical bytes may hold a float before ``end`` (then walk to be sure)."""
    return _FLOATISH.search(out, 0, end) is not None


def dumps_unchecked(obj: JSON) -> bytes:
    """Canonical bytes of a value already known to be plain JSON (e.g. just parsed)."""
    return _dumps(obj).encode("utf-8")


_ORJSON_STRICT: Final = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def dumps_fast(obj: JSON) -> bytes:
    """The canonical bytes of plain JSON, written by orjson where it can (several times
    faster: every append pays for this), else by json.

    For every value orjson accepts it writes the same bytes as the canonical json encoder
    (a property test holds it to that); what it refuses — integers beyond 64 bits, lone
    surrogates, subclasses, dates — json writes or refuses as ever. Floats are not looked
    for here (the caller's rule, as for :func:`dumps_unchecked`).
    """
    try:
        return orjson.dumps(obj, option=_ORJSON_STRICT)
    except TypeError:  # orjson.JSONEncodeError included
        return _dumps(obj).encode("utf-8")


def holds_float(value: Any) -> bool:
    """Whether a float is anywhere in ``value``: a walk over its values, which costs the same
    whatever the length of the texts in it (a scan of the serialised bytes does not)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            return True
    return False


def check_recordable(obj: JSON, field: str = "") -> None:
    """Raise :class:`UnrecordableValue` naming the first field that is not plain JSON.

    Floats are refused here: the record stores durations as integer nanoseconds and any
    user float as its decimal string (see :func:`jsonable`), so that a value reads back
    exactly as it was written.
    """
    # An explicit stack instead of recursion: records may nest deeper than Python's limit
    # would like, and this runs once per event on the hot path.
    stack: list[tuple[Any, str]] = [(obj, field)]
    while stack:
        value, path = stack.pop()
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            continue
        if kind is dict:
            for key, item in value.items():
                if type(key) is not str:
                    raise UnrecordableValue(
                        f"{_name(path)} has a key {key!r} of type {type(key).__name__}; "
                        "record keys must be strings",
                        field=path,
                    )
                stack.append((item, f"{path}.{key}" if path else key))
        elif kind is list:
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
        elif kind is float:
            raise UnrecordableValue(
                f"{_name(path)} is a float ({value!r}); the record holds no floats: "
                "store durations as integer nanoseconds, sizes as integer bytes, "
                "or pass the value through jsonable() to keep its decimal string",
                field=path,
            )
        else:
            raise UnrecordableValue(
                f"{_name(path)} has type {kind.__name__}, which is not JSON "
                "(use str, int, bool, None, list or dict with str keys)",
                field=path,
            )


def jsonable(value: object, field: str = "", *, typed: bool = True) -> JSON:
    """Turn a user's value into a recordable JSON value (format v2), or say which field
    cannot be.

    Numbers stay numbers: a float or an integer a JSON number carries exactly is itself;
    any other float (``2.0``, ``-0.0``, NaN, infinities) and an integer beyond ±(2^53 - 1)
    takes the typed encoding of :mod:`precip_repro.record.numbers`, as does a user's
    object that looks like one. Decimals become their decimal string, tuples and lists
    become lists, paths become strings, sets become sorted lists. With ``typed=False`` the
    same plain lists and dicts, but numbers as they are and no typed encoding (what a
    payload holds: the user's values, encoded when written).
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return encode_int(int(value)) if typed else int(value)
    if isinstance(value, float):
        return encode_float(float(value)) if typed else float(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise UnrecordableValue(
                f"{_name(field)} is {value!r}; NaN and infinities cannot be recorded",
                field=field,
            )
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    if isinstance(value, Mapping):
        out: dict[str, JSON] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnrecordableValue(
                    f"{_name(field)} has a key {key!r} of type {type(key).__name__}; "
                    "record keys must be strings",
                    field=field,
                )
            out[key] = jsonable(item, f"{field}.{key}" if field else key, typed=typed)
        return escape_object(out) if typed else out
    if isinstance(value, list | tuple):
        return [jsonable(item, f"{field}[{i}]", typed=typed) for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [jsonable(item, f"{field}[]") for item in value]
        ordered = sorted(items, key=lambda item: jcs(item))
        return ordered if typed else [decode(item) for item in ordered]
    raise UnrecordableValue(
        f"{_name(field)} has type {type(value).__name__}, which cannot be recorded "
        "(use str, int, float, bool, None, list, tuple or dict with str keys)",
        field=field,
    )


def _name(path: str) -> str:
    return f"field {path!r}" if path else "the value"


def _find_surrogate(obj: JSON, field: str) -> None:
    stack: list[tuple[Any, str]] = [(obj, field)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise UnrecordableValue(
                    f"{_name(path)} holds a lone surrogate ({exc.reason}); "
                    "record strings must be valid Unicode",
                    field=path,
                ) from None
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.append((key, path))
                stack.append((item, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
