"""Format v2's canonical form: exactly RFC 8785 (JCS), written fast when nothing needs care.

RFC 8785 sorts keys by their UTF-16 code units, writes numbers as ECMAScript does, has no
token for NaN or infinities and no exact one for integers beyond ±(2^53 - 1). For a value
without floats or such integers, whose keys hold no character above U+FFFF (where UTF-16
order and code point order part), orjson writes the same bytes as RFC 8785 several times
faster (a property test holds it to that against the ``rfc8785`` library); everything
else is written by ``rfc8785`` itself. Nothing here converts: a value the canonical form
cannot hold (a float JSON would read back as an integer, a large integer, NaN) is refused,
naming its field — :func:`precip_repro.record.canonical.jsonable` turns a user's values
into their typed encoding (:mod:`precip_repro.record.numbers`) first.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
import rfc8785

from precip_repro.exceptions import UnrecordableValue
from precip_repro.record.numbers import MAX_SAFE, NUMBER, is_plain_number, scan

__all__ = ["check_jcs", "jcs", "jcs_fast", "plain"]

_ORJSON_STRICT: Final = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def plain(value: Any) -> bool:
    """Whether ``value`` holds no float and no integer beyond ±(2^53 - 1): what orjson and
    RFC 8785 write alike, keys aside."""
    if type(value) is not dict and type(value) is not list:
        return type(value) is not float and (
            type(value) is not int or -MAX_SAFE <= value <= MAX_SAFE
        )
    return scan(value) is not NUMBER


def _astral_keys(value: Any) -> bool:
    """Whether a key anywhere in ``value`` holds a character above U+FFFF."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key in item:
                if type(key) is str and not key.isascii() and max(key) > "\uffff":
                    return True
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return False


def jcs_fast(value: Any) -> bytes | None:
    """orjson's bytes for ``value`` when they are its RFC 8785 bytes, else None.

    The caller knows ``value`` is :func:`plain`.
    """
    try:
        out = orjson.dumps(value, option=_ORJSON_STRICT)
    except TypeError:  # orjson.JSONEncodeError included: a subclass, a lone surrogate
        return None
    if out.isascii() or not _astral_keys(value):
        return out
    return None


def jcs(value: Any, *, field: str = "") -> bytes:
    """The RFC 8785 bytes of ``value``; :class:`UnrecordableValue` naming the field for what
    the canonical form cannot hold."""
    if plain(value):
        out = jcs_fast(value)
        if out is not None:
            return out
    check_jcs(value, field)
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError) as exc:  # pragma: no cover - checked
        raise UnrecordableValue(f"{_name(field)} cannot be written: {exc}", field=field) from None


def check_jcs(value: Any, field: str = "") -> None:
    """Raise :class:`UnrecordableValue` naming the first field RFC 8785 cannot hold exactly,
    or that is not JSON."""
    stack: list[tuple[Any, str]] = [(value, field)]
    while stack:
        item, path = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, int):
            if not -MAX_SAFE <= item <= MAX_SAFE:
                raise UnrecordableValue(
                    f"{_name(path)} is {item}, beyond ±(2^53 - 1): JSON readers cannot hold "
                    'it exactly; pass it through jsonable() to write it as {"$int": …}',
                    field=path,
                )
        elif isinstance(item, float):
            if not is_plain_number(item):
                raise UnrecordableValue(
                    f"{_name(path)} is {item!r}, which a JSON number cannot carry as a float; "
                    'pass it through jsonable() to write it as {"$float": …}',
                    field=path,
                )
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    raise UnrecordableValue(
                        f"{_name(path)} has a key {key!r} of type {type(key).__name__}; "
                        "record keys must be strings",
                        field=path,
                    )
                _check_text(key, path)
                stack.append((inner, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            stack.extend((inner, f"{path}[{i}]") for i, inner in enumerate(item))
        else:
            raise UnrecordableValue(
                f"{_name(path)} has type {type(item).__name__}, which is not JSON "
                "(use str, int, float, bool, None, list or dict with str keys)",
                field=path,
            )


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnrecordableValue(
            f"{_name(path)} holds a lone surrogate ({exc.reason}); "
            "record strings must be valid Unicode",
            field=path,
        ) from None


def _name(path: str) -> str:
    return f"field {path!r}" if path else "the value"
